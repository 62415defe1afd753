"""Fail early, naming the file, when a loaded volume cannot be what a bundle expects."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform

from common.data.nifti import source_name
from common.errors import InputError


class CheckVolumesd(MapTransform):
    """Check channel-first volumes right after loading: channel count, finite values, not constant, matching geometry.

    Place it after ``LoadImaged`` + ``EnsureChannelFirstd``. A 4D file loaded where a 3D volume is expected
    shows up as extra channels and is reported as such.

    Args:
        keys: keys to check, each (C, X, Y, Z); the first one is the reference for shape and affine.
        num_channels: expected channel count per key (e.g. ``[1, 1]`` for image and mask, ``[4, 1]`` for BraTS).
        constant_keys: keys whose volume must not be constant; default the first key (the image, or the mask that
            conditions a generation): a label map beside an image may be empty (a subject without tumour).

    Raises:
        InputError: (a ``ValueError``) naming the file, for a wrong channel count, NaN/Inf values, a constant volume
            (every voxel the same value, e.g. an all-zero image or an empty mask), or a shape or affine that differs
            from the first key's.
    """

    def __init__(
        self, keys: Sequence[Hashable], num_channels: Sequence[int], constant_keys: Sequence[Hashable] | None = None
    ) -> None:
        super().__init__(keys)
        if len(num_channels) != len(self.keys):
            raise ValueError(f"give one channel count per key: {len(self.keys)} keys, {len(num_channels)} counts")
        self.num_channels = list(num_channels)
        self.constant_keys = set(self.keys[:1] if constant_keys is None else constant_keys)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        reference = d[self.keys[0]]
        for key, channels in zip(self.keys, self.num_channels, strict=True):
            volume = d[key]
            name = source_name(volume)
            if volume.ndim != 4 or volume.shape[0] != channels:
                raise InputError(
                    f"{name}: expected {channels} channel(s) of a 3D volume, got shape {tuple(volume.shape)} after "
                    "loading (a 4D file where a 3D volume belongs?)"
                )
            values = torch.as_tensor(volume)
            if not torch.isfinite(values).all():
                raise InputError(f"{name}: contains NaN or infinite values")
            if key in self.constant_keys and values.numel() and bool((values == values.flatten()[0]).all()):
                raise InputError(
                    f"{name}: constant volume (every voxel is {values.flatten()[0].item():g}): an empty mask, or an "
                    "empty or failed export?"
                )
            if volume.shape[1:] != reference.shape[1:]:
                raise InputError(
                    f"{name}: shape {tuple(volume.shape[1:])} does not match {tuple(reference.shape[1:])} "
                    f"of {source_name(reference)}"
                )
            if isinstance(volume, MetaTensor) and isinstance(reference, MetaTensor):
                if not torch.allclose(volume.affine.double(), reference.affine.double(), atol=1e-3):
                    raise InputError(f"{name}: affine differs from that of {source_name(reference)}")
        return d
