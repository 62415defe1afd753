"""A 3D diffusion U-Net factorised into in-plane and depth operations (Ho et al. 2022, "Video Diffusion Models").

Used by Medical Diffusion's latent DDPM (Khader et al. 2023) and DiffuseMorph's deformation-field DDPM
(Nadeem et al. 2024): convolutions act on the high-resolution plane only, spatial attention runs over that plane
with depth folded into the batch, and attention along depth runs with the plane folded into the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets.diffusion_model_unet import AttnDownBlock, AttnUpBlock
from torch import nn

from common.networks.slice_attention import SliceAttentionBlock, SliceLayout, add_slice_attention
from common.networks.unet2d import diffusion_unet_2d


class FactorisedDiffusionUNet(nn.Module):
    """Predict the noise of a 3D volume (B, C, X, Y, Z) with in-plane convolutions and factorised attention.

    Depth is the last spatial axis Z (the axial slice axis of a RAS volume). The Z slices of every volume are
    folded into the batch and run through MONAI's 2D ``DiffusionModelUNet``: its 3x3 convolutions are exactly
    3x3x1 kernels of a 3D network, its down- and upsampling halve and double X and Y only (depth is never
    resampled), and its spatial attention attends over the X·Y plane of each slice. Each of those attention blocks
    is followed by a :class:`~common.networks.SliceAttentionBlock` in which, at every in-plane position, the Z
    slices of a volume attend to each other with learned relative-position embeddings of their distance
    (Shaw et al. 2018). Depth attention is therefore the only path between slices: a change to one input slice
    reaches the other slices through it alone (group normalisation is per slice).

    Attention is placed as in the video-diffusion U-Net of the Medical Diffusion reference code: one spatial + depth
    attention pair per level with attention, after that level's last residual block (MONAI's blocks would attend
    after every residual block), one pair in the middle block, and one depth attention right after the input
    convolution. With the default arguments that is 9 spatial and 10 depth attention blocks, the reference's count.

    Args:
        in_channels: channels of the noisy input (8 for a VQ-GAN latent, 3 for a displacement field).
        out_channels: channels of the prediction.
        channels / attention_levels / num_res_blocks / num_head_channels / norm_num_groups: the U-Net's, as in
            ``monai.networks.nets.DiffusionModelUNet``; depth attention is added wherever spatial attention is
            (the levels with attention and the middle block), with as many heads, and after the input convolution
            (``channels[0] / num_head_channels[0]`` heads).
        max_distance: largest slice distance told apart by the relative positions (depth - 1 covers every pair).
        use_flash_attention: run the spatial attention through PyTorch's ``scaled_dot_product_attention`` (MONAI's
            option; the same computation with fused, memory-efficient kernels).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (32, 64, 128, 256),
        attention_levels: Sequence[bool] = (True, True, True, True),
        num_res_blocks: int | Sequence[int] = 2,
        num_head_channels: int | Sequence[int] = 32,
        norm_num_groups: int = 8,
        max_distance: int = 63,
        use_flash_attention: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.downsampling = 2 ** (len(channels) - 1)
        self.unet = diffusion_unet_2d(
            in_channels, out_channels, channels, attention_levels, num_res_blocks, num_head_channels, norm_num_groups,
            use_flash_attention,
        )  # fmt: skip
        for block in (*self.unet.down_blocks, *self.unet.up_blocks):
            if isinstance(block, (AttnDownBlock, AttnUpBlock)):  # attend after the level's last residual block only
                for index in range(len(block.attentions) - 1):
                    block.attentions[index] = nn.Identity()
        self.layout = SliceLayout()
        add_slice_attention(self.unet, self.layout, max_distance, norm_num_groups, slice_first=False)
        input_heads = channels[0] // _first(num_head_channels)
        # conv_in is a MONAI Convolution (an nn.Sequential): the depth attention runs after its convolution and the
        # convolution keeps its state-dict name
        self.unet.conv_in.add_module(
            "depth_attention", SliceAttentionBlock(channels[0], input_heads, self.layout, max_distance, norm_num_groups)
        )

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            x: (B, in_channels, X, Y, Z) noisy volume; X and Y divisible by ``2 ** (len(channels) - 1)``.
            timesteps: (B,) diffusion timesteps.
            context: unused; accepted because ``monai.inferers.DiffusionInferer`` passes it.

        Returns:
            (B, out_channels, X, Y, Z) prediction.
        """
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected a volume (B, {self.in_channels}, X, Y, Z), got {tuple(x.shape)}")
        batch, _, size_x, size_y, depth = x.shape
        if size_x % self.downsampling or size_y % self.downsampling:
            raise ValueError(
                f"the in-plane size {size_x}x{size_y} must be divisible by {self.downsampling} (the U-Net halves X and"
                f" Y {self.downsampling.bit_length() - 1} times); pad or crop the volume"
            )
        slices = x.permute(0, 4, 1, 2, 3).flatten(0, 1)  # (B·Z, C, X, Y)
        self.layout.indices = torch.arange(depth, device=x.device).expand(batch, depth)
        self.layout.valid = torch.ones(batch, depth, dtype=torch.bool, device=x.device)
        try:
            # DiffusionInferer.sample passes one timestep (1,) for the whole batch
            prediction = self.unet(slices, timesteps.expand(batch).repeat_interleave(depth))
        finally:
            self.layout.indices = self.layout.valid = None
        return prediction.unflatten(0, (batch, depth)).permute(0, 2, 3, 4, 1)


def _first(value: int | Sequence[int]) -> int:
    """The first level's value of a per-level argument given as one number or a sequence."""
    return value if isinstance(value, int) else value[0]
