from .datalist import load_datalist, mask_items

__all__ = ["load_datalist", "mask_items"]
