from .slice_attention import SliceAttentionBlock, SliceLayout, SliceThenSpatialAttention
from .slice_unet import SliceDiffusionUNet

__all__ = ["SliceAttentionBlock", "SliceDiffusionUNet", "SliceLayout", "SliceThenSpatialAttention"]
