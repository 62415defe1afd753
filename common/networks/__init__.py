from .checkpointing import checkpoint_blocks
from .diffusemorph import DiffuseMorph
from .factorised_unet import FactorisedDiffusionUNet
from .perceptual import make_perceptual_loss
from .slice_attention import FactorisedAttention, SliceAttentionBlock, SliceLayout, add_slice_attention
from .slice_unet import SliceDiffusionUNet, SlicePositionEmbedding
from .vqgan import RestartingEMAQuantizer, make_vqgan_autoencoder

__all__ = [
    "DiffuseMorph",
    "FactorisedAttention",
    "FactorisedDiffusionUNet",
    "RestartingEMAQuantizer",
    "SliceAttentionBlock",
    "SliceDiffusionUNet",
    "SliceLayout",
    "SlicePositionEmbedding",
    "add_slice_attention",
    "checkpoint_blocks",
    "make_perceptual_loss",
    "make_vqgan_autoencoder",
]
