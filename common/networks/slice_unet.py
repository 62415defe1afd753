"""cDPM's network: a 2D diffusion U-Net over a set of slices that attend to each other (Peng et al. 2023, Fig. 2)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from common.networks.slice_attention import SliceLayout, add_slice_attention
from common.networks.unet2d import diffusion_unet_2d
from common.transforms.slice_sets import CONDITION, PADDING


class SliceDiffusionUNet(nn.Module):
    """Predict the noise of the target slices of a slice set from the noisy targets and the clean conditions.

    The backbone is MONAI's 2D ``DiffusionModelUNet`` (time embedding, residual blocks, spatial self-attention)
    applied to the B·K slices as one batch. Every one of its spatial attention blocks is preceded by a
    :class:`SliceAttentionBlock`, so at those resolutions each slice attends to the other slices of its set,
    knowing their relative slice indices. A condition slice is told apart from a target slice by an indicator
    channel (1 for conditions) concatenated to its image; unused (padding) slots are zeroed and masked out of
    the slice attention. All slices of one sample share the diffusion timestep of its targets.

    Args:
        image_channels: channels of one slice (1 for T1).
        channels / attention_levels / num_res_blocks / num_head_channels / norm_num_groups: the U-Net's, as in
            ``monai.networks.nets.DiffusionModelUNet``; slice attention is added at the levels with attention and
            in the middle block, with as many heads as the spatial attention there.
        max_distance: largest slice-index distance told apart by the relative positions (depth - 1 covers all).
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
    ) -> None:
        super().__init__()
        self.image_channels = image_channels
        self.unet = diffusion_unet_2d(
            image_channels + 1, image_channels, channels, attention_levels, num_res_blocks, num_head_channels,
            norm_num_groups,
        )  # fmt: skip
        self.layout = SliceLayout()
        add_slice_attention(self.unet, self.layout, max_distance, norm_num_groups, slice_first=True)

    def forward(
        self, x: torch.Tensor, timesteps: torch.Tensor, slice_indices: torch.Tensor, slice_roles: torch.Tensor
    ) -> torch.Tensor:
        """
        Args:
            x: (B, K, C, H, W) slices: clean condition slices and noisy target slices (padding slots are ignored).
            timesteps: (B,) diffusion timestep of each sample's targets.
            slice_indices: (B, K) integer slice index of each slot in its volume.
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
        try:
            noise = self.unet(inputs, timesteps.repeat_interleave(slices))
        finally:
            self.layout.indices = self.layout.valid = None
        return noise.unflatten(0, (batch, slices))
