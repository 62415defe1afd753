"""MONAI's 2D diffusion U-Net as the per-slice backbone of the slice-set and factorised 3D networks."""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.nets import DiffusionModelUNet


def diffusion_unet_2d(
    in_channels: int,
    out_channels: int,
    channels: Sequence[int],
    attention_levels: Sequence[bool],
    num_res_blocks: int | Sequence[int],
    num_head_channels: int | Sequence[int],
    norm_num_groups: int,
    use_flash_attention: bool = False,
) -> DiffusionModelUNet:
    """Build ``monai.networks.nets.DiffusionModelUNet(spatial_dims=2, ...)`` after checking ``attention_levels``.

    ``use_flash_attention`` runs MONAI's spatial attention through ``torch.nn.functional.scaled_dot_product_attention``
    (the same computation, with PyTorch's fused and memory-efficient kernels).

    Raises:
        TypeError: if an attention level is not a boolean: ``"[false,true]"`` on a fire command line arrives as
            strings, which would all read as True.
    """
    if not all(isinstance(level, bool) for level in attention_levels):
        raise TypeError(f"attention_levels must be booleans, got {list(attention_levels)!r}")
    return DiffusionModelUNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=channels,
        attention_levels=attention_levels,
        num_res_blocks=num_res_blocks,
        num_head_channels=num_head_channels,
        norm_num_groups=norm_num_groups,
        use_flash_attention=use_flash_attention,
    )
