"""cDPM's network: a 2D diffusion U-Net over a set of slices that attend to each other (Peng et al. 2023, Fig. 2)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.nets.diffusion_model_unet import get_timestep_embedding, zero_module
from torch import nn

from common.networks.slice_attention import SliceLayout, add_slice_attention
from common.networks.unet2d import diffusion_unet_2d
from common.slice_roles import CONDITION, PADDING


class SlicePositionEmbedding(nn.Module):
    """Embedding of the absolute slice index of every slice, to be added to its time embedding.

    Indices (N,) are encoded with the sinusoids of the diffusion time embedding
    (``monai.networks.nets.diffusion_model_unet.get_timestep_embedding``) at periods from 2 slices to 2·``depth``
    slices, i.e. of the fraction ``index / depth`` of the volume's depth at every scale from the whole volume down
    to one slice, then projected by a linear layer to (N, ``embedding_dim``). The projection starts at zero, so a
    new embedding adds nothing.

    Args:
        depth: slices of a volume along the slice axis.
        num_frequencies: sinusoid features (the U-Net's first channel count, as for its time embedding).
        embedding_dim: size of the time embedding it is added to.
    """

    def __init__(self, depth: int, num_frequencies: int, embedding_dim: int) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.depth, self.num_frequencies = depth, num_frequencies
        self.proj = zero_module(nn.Linear(num_frequencies, embedding_dim))

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        """(N,) slice indices -> (N, embedding_dim) position embeddings."""
        features = get_timestep_embedding(math.pi * indices.float(), self.num_frequencies, max_period=self.depth)
        return self.proj(features.to(self.proj.weight.dtype))


class SliceDiffusionUNet(nn.Module):
    """Predict the noise of the target slices of a slice set from the noisy targets and the clean conditions.

    The backbone is MONAI's 2D ``DiffusionModelUNet`` (time embedding, residual blocks, spatial self-attention)
    applied to the B·K slices as one batch. Every one of its spatial attention blocks is preceded by a
    :class:`SliceAttentionBlock`, so at those resolutions each slice attends to the other slices of its set,
    knowing their relative slice indices. A condition slice is told apart from a target slice by an indicator
    channel (1 for conditions) concatenated to its image; unused (padding) slots are zeroed and masked out of
    the slice attention. All slices of one sample share the diffusion timestep of its targets.

    The slice attention sees only index differences, so by default the network is shift-invariant: without
    conditions (the first generation stage) it cannot tell which part of the volume it is asked for. With
    ``absolute_position`` each slice's absolute index also enters, through a :class:`SlicePositionEmbedding` added
    to that slice's time embedding (it takes the place of the class embedding of MONAI's U-Net, which is added
    there).

    Args:
        image_channels: channels of one slice (1 for T1).
        channels / attention_levels / num_res_blocks / num_head_channels / norm_num_groups: the U-Net's, as in
            ``monai.networks.nets.DiffusionModelUNet``; slice attention is added at the levels with attention and
            in the middle block, with as many heads as the spatial attention there.
        max_distance: largest slice-index distance told apart by the relative positions (depth - 1 covers all).
        absolute_position: also embed each slice's absolute index (needs ``depth``); its projection starts at zero,
            so a new network computes what it would without it.
        depth: slices of a volume along the slice axis, the scale of the absolute positions.
        use_flash_attention: run the spatial attention through PyTorch's ``scaled_dot_product_attention`` (MONAI's
            option; the same computation with fused, memory-efficient kernels).
    """

    def __init__(
        self,
        image_channels: int = 1,
        channels: Sequence[int] = (128, 128, 256, 384, 512),
        attention_levels: Sequence[bool] = (False, False, False, True, True),
        num_res_blocks: int | Sequence[int] = 2,
        num_head_channels: int | Sequence[int] = (32, 32, 64, 96, 128),
        norm_num_groups: int = 32,
        max_distance: int = 127,
        absolute_position: bool = False,
        depth: int | None = None,
        use_flash_attention: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(absolute_position, bool):  # "false" from a fire command line would read as True
            raise TypeError(f"absolute_position must be a boolean, got {absolute_position!r}")
        if absolute_position and depth is None:
            raise ValueError("absolute_position needs the volume depth: pass depth")
        self.image_channels, self.absolute_position = image_channels, absolute_position
        self.unet = diffusion_unet_2d(
            image_channels + 1, image_channels, channels, attention_levels, num_res_blocks, num_head_channels,
            norm_num_groups, use_flash_attention,
        )  # fmt: skip
        if absolute_position:
            self.unet.num_class_embeds = depth  # the U-Net adds class_embedding(class_labels) to the time embedding
            time_embed_dim = self.unet.time_embed[-1].out_features
            self.unet.class_embedding = SlicePositionEmbedding(depth, channels[0], time_embed_dim)
        self.layout = SliceLayout()
        add_slice_attention(self.unet, self.layout, max_distance, norm_num_groups, slice_first=True)

    def forward(
        self, x: torch.Tensor, timesteps: torch.Tensor, slice_indices: torch.Tensor, slice_roles: torch.Tensor
    ) -> torch.Tensor:
        """
        Args:
            x: (B, K, C, H, W) slices: clean condition slices and noisy target slices (padding slots are ignored).
            timesteps: (B,) diffusion timestep of each sample's targets.
            slice_indices: (B, K) integer slice index of each slot in its volume, in ``[0, depth)``.
            slice_roles: (B, K) ``CONDITION``, ``TARGET`` or ``PADDING`` per slot.

        Returns:
            (B, K, C, H, W) predicted noise; only the target slots are meaningful.
        """
        batch, slices = x.shape[:2]
        if x.ndim != 5 or x.shape[2] != self.image_channels:
            raise ValueError(f"expected slices (B, K, {self.image_channels}, H, W), got {tuple(x.shape)}")
        valid = slice_roles != PADDING
        indicator = (slice_roles == CONDITION).to(x.dtype)[:, :, None, None, None].expand(-1, -1, 1, *x.shape[3:])
        inputs = torch.cat([x * valid[:, :, None, None, None], indicator], dim=2).flatten(0, 1)
        self.layout.indices, self.layout.valid = slice_indices.long(), valid
        positions = slice_indices.flatten() if self.absolute_position else None
        try:
            noise = self.unet(inputs, timesteps.repeat_interleave(slices), class_labels=positions)
        finally:
            self.layout.indices = self.layout.valid = None
        return noise.unflatten(0, (batch, slices))
