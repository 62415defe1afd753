"""Self-attention across the slices of a slice set, with relative slice-index positions (Shaw et al. 2018)."""

from __future__ import annotations

import torch
from monai.networks.blocks.spatialattention import SpatialAttentionBlock
from monai.networks.nets.diffusion_model_unet import zero_module
from torch import nn


class SliceLayout:
    """Which slices a batch of 2D feature maps came from; set by the network, read by its slice-attention blocks.

    The 2D U-Net sees B·K slices as one batch of (B·K, C, H, W) maps; ``indices`` (B, K) gives each slot's slice
    index in its volume and ``valid`` (B, K) marks the slots that hold a condition or target slice (unused slots of
    a smaller set are padding that no slice may attend to).
    """

    def __init__(self) -> None:
        self.indices: torch.Tensor | None = None
        self.valid: torch.Tensor | None = None

    def require(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.indices is None or self.valid is None:
            raise RuntimeError("slice attention called outside SliceDiffusionUNet.forward: no slice layout is set")
        return self.indices, self.valid


class SliceAttentionBlock(nn.Module):
    """Multi-head self-attention along the slice axis at every pixel, aware of the slices' relative positions.

    Input and output are (B·K, C, H, W); at each of the H·W positions the K slices of a sample attend to each
    other. The attention logit of slice i to slice j is ``q_i · (k_j + a^K_ij) / sqrt(d)`` and the output adds
    ``a^V_ij`` to the values, where ``a^K``/``a^V`` are learned embeddings of the index distance ``j - i`` clipped to
    ``[-max_distance, max_distance]`` (relative position representations, Shaw et al. 2018). The block is
    residual with a zero-initialised output projection, so a new block starts as the identity.

    Args:
        num_channels: C.
        num_heads: attention heads; C must be divisible by it.
        layout: the :class:`SliceLayout` shared with the owning network.
        max_distance: largest distinguished index distance (the volume depth minus one covers every pair).
        norm_num_groups: groups of the GroupNorm applied before attention.
    """

    def __init__(
        self, num_channels: int, num_heads: int, layout: SliceLayout, max_distance: int = 127, norm_num_groups: int = 32
    ) -> None:
        super().__init__()
        if num_channels % num_heads:
            raise ValueError(f"num_channels {num_channels} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim, self.max_distance = num_heads, num_channels // num_heads, max_distance
        self.layout = layout
        self.norm = nn.GroupNorm(norm_num_groups, num_channels, eps=1e-6)
        self.to_qkv = nn.Linear(num_channels, 3 * num_channels)
        self.relative_keys = nn.Embedding(2 * max_distance + 1, self.head_dim)
        self.relative_values = nn.Embedding(2 * max_distance + 1, self.head_dim)
        self.out_proj = zero_module(nn.Linear(num_channels, num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        indices, valid = self.layout.require()
        (batch, slices), (_, channels, height, width) = indices.shape, x.shape
        pixels = height * width
        sequences = self.norm(x).reshape(batch, slices, channels, pixels).permute(0, 3, 1, 2)  # (B, HW, K, C)
        qkv = self.to_qkv(sequences).reshape(batch, pixels, slices, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(3, 0, 1, 4, 2, 5)  # each (B, HW, heads, K, d)
        distance = indices[:, None, :] - indices[:, :, None]  # (B, K_i, K_j): j - i
        bucket = distance.clamp(-self.max_distance, self.max_distance) + self.max_distance
        logits = query @ key.transpose(-1, -2) + torch.einsum("bphid,bijd->bphij", query, self.relative_keys(bucket))
        logits = (logits * self.head_dim**-0.5).masked_fill(~valid[:, None, None, None, :], float("-inf"))
        weights = logits.softmax(dim=-1)
        attended = weights @ value + torch.einsum("bphij,bijd->bphid", weights, self.relative_values(bucket))
        attended = attended.permute(0, 1, 3, 2, 4).reshape(batch, pixels, slices, channels)
        return x + self.out_proj(attended).permute(0, 2, 3, 1).reshape(x.shape)


class FactorisedAttention(nn.Module):
    """Attention of a stack of 2D maps factorised into two blocks: across slices and within each slice.

    ``slice_first=True`` runs the slice attention first (cDPM); ``False`` runs MONAI's spatial attention first and
    then attention across slices (the video-diffusion U-Net of Ho et al. 2022 used by Medical Diffusion and
    DiffuseMorph's deformation DDPM).
    """

    def __init__(self, slice_attention: SliceAttentionBlock, spatial_attention: nn.Module, slice_first: bool) -> None:
        super().__init__()
        self.slice_attention = slice_attention
        self.spatial_attention = spatial_attention
        self.slice_first = slice_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.slice_first:
            return self.spatial_attention(self.slice_attention(x))
        return self.slice_attention(self.spatial_attention(x))


def add_slice_attention(
    unet: nn.Module, layout: SliceLayout, max_distance: int, norm_num_groups: int, slice_first: bool
) -> None:
    """Pair every ``SpatialAttentionBlock`` of a 2D MONAI U-Net with a :class:`SliceAttentionBlock`, in place.

    Each spatial attention block is replaced by a :class:`FactorisedAttention` whose slice attention has as many
    heads as the spatial one and reads the slice positions from ``layout``.
    """
    for name, module in list(unet.named_modules()):
        if isinstance(module, SpatialAttentionBlock):
            parent_name, _, child_name = name.rpartition(".")
            slice_attention = SliceAttentionBlock(
                module.norm.num_channels, module.attn.num_heads, layout, max_distance, norm_num_groups
            )
            factorised = FactorisedAttention(slice_attention, module, slice_first)
            setattr(unet.get_submodule(parent_name), child_name, factorised)
