"""Fail early, naming the file, when a loaded volume cannot be what a bundle expects."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform

from common.data.nifti import source_name


class CheckVolumesd(MapTransform):
    """Check channel-first volumes right after loading: channel count, finite values, matching geometry.

    Place it after ``LoadImaged`` + ``EnsureChannelFirstd``. A 4D file loaded where a 3D volume is expected
    shows up as extra channels and is reported as such.

    Args:
        keys: keys to check, each (C, X, Y, Z); the first one is the reference for shape and affine.
        num_channels: expected channel count per key (e.g. ``[1, 1]`` for image and mask, ``[4, 1]`` for BraTS).

    Raises:
        ValueError: naming the file, for a wrong channel count, NaN/Inf values, or a shape or affine that differs
            from the first key's.
    """

    def __init__(self, keys: Sequence[Hashable], num_channels: Sequence[int]) -> None:
        super().__init__(keys)
        if len(num_channels) != len(self.keys):
            raise ValueError(f"give one channel count per key: {len(self.keys)} keys, {len(num_channels)} counts")
        self.num_channels = list(num_channels)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        reference = d[self.keys[0]]
        for key, channels in zip(self.keys, self.num_channels, strict=True):
            volume = d[key]
            name = source_name(volume)
            if volume.ndim != 4 or volume.shape[0] != channels:
                raise ValueError(
                    f"{name}: expected {channels} channel(s) of a 3D volume, got shape {tuple(volume.shape)} after "
                    "loading (a 4D file where a 3D volume belongs?)"
                )
            if not torch.isfinite(torch.as_tensor(volume)).all():
                raise ValueError(f"{name}: contains NaN or infinite values")
            if volume.shape[1:] != reference.shape[1:]:
                raise ValueError(
                    f"{name}: shape {tuple(volume.shape[1:])} does not match {tuple(reference.shape[1:])} "
                    f"of {source_name(reference)}"
                )
            if isinstance(volume, MetaTensor) and isinstance(reference, MetaTensor):
                if not torch.allclose(volume.affine.double(), reference.affine.double(), atol=1e-3):
                    raise ValueError(f"{name}: affine differs from that of {source_name(reference)}")
        return d
