from .factorised_unet import FactorisedDiffusionUNet
from .slice_attention import FactorisedAttention, SliceAttentionBlock, SliceLayout, add_slice_attention
from .slice_unet import SliceDiffusionUNet

__all__ = [
    "FactorisedAttention",
    "FactorisedDiffusionUNet",
    "SliceAttentionBlock",
    "SliceDiffusionUNet",
    "SliceLayout",
    "add_slice_attention",
]
