from .preview import load_ras, save_triplanar_preview, triplanar_grid, triplanar_image

__all__ = ["load_ras", "save_triplanar_preview", "triplanar_grid", "triplanar_image"]
