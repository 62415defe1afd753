"""The load chain every pipeline starts with: read, check, orient, size and scale NIfTI volumes."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.transforms import (
    Compose,
    CropForegroundd,
    EnsureChannelFirstd,
    LoadImaged,
    Orientationd,
    Resized,
    ResizeWithPadOrCropd,
    ScaleIntensityd,
)

from common.errors import InputError, find_user_error, root_cause

from .validation import CheckVolumesd

__all__ = ["SIZE_MODES", "LoadVolumesd"]


#: ``size_mode`` values of :class:`LoadVolumesd`: how volumes are resampled to ``spatial_size`` (MONAI's ``Resized``).
SIZE_MODES = ("longest", "all")


class LoadVolumesd(Compose):
    """``LoadImaged`` → ``EnsureChannelFirstd`` → :class:`CheckVolumesd` → ``Orientationd`` → (``CropForegroundd``)
    → (``Resized``) → (``ResizeWithPadOrCropd``) → (``ScaleIntensityd``), as one transform.

    Bundle configs (training, inference, export) and Python code (evaluation, the downstream task, the template
    loader) read volumes through this one chain, so a file is checked and oriented the same way wherever it enters.
    Each key holds a path; afterwards it holds a channel-first ``MetaTensor`` (C, X, Y, Z) in RAS.

    Args:
        keys: keys of the files to load, e.g. ``["image", "label"]``; the first one is the reference that the others
            must match in shape and affine.
        num_channels: expected channel count per key (``[1, 1]`` for image and mask, ``[4, 1]`` for BraTS).
        spatial_size: centre-crop or zero-pad every key to (X, Y, Z) (after the resampling of ``size_mode``);
            ``None`` keeps the file's grid.
        axcodes: orientation, RAS by default (axis i runs along +R, +A, +S).
        intensity_range: ``(min, max)`` to min-max scale ``scale_keys`` to, e.g. ``(-1.0, 1.0)`` for diffusion
            models; ``None`` leaves intensities as read.
        scale_keys: keys to scale; default the first key (the image; label maps are never scaled).
        channel_wise: scale each channel on its own (each modality of a multi-modal image).
        constant_keys: keys whose volume must not be constant (:class:`CheckVolumesd`); default the first key.
        crop_foreground: after orienting, crop every key to the box of the first key's positive voxels (the brain of
            a skull-stripped volume; ``CropForegroundd(allow_smaller=True)``).
        size_mode: resample every key (trilinear, anti-aliased: meant for images, not label maps) before the crop
            or pad: ``"longest"`` scales the volume, keeping its aspect ratio, so that its longest side is
            ``max(spatial_size)`` (the crop or pad then fits it to ``spatial_size``); ``"all"`` resizes each axis to
            ``spatial_size``; ``None`` (default) does not resample.

    Raises:
        InputError: from :class:`CheckVolumesd`, naming the file (wrapped by MONAI in a ``RuntimeError`` when the
            chain is applied; :meth:`read` unwraps it).
    """

    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable,
        num_channels: Sequence[int],
        spatial_size: Sequence[int] | None = None,
        axcodes: str = "RAS",
        intensity_range: Sequence[float] | None = None,
        scale_keys: Sequence[Hashable] | Hashable | None = None,
        channel_wise: bool = True,
        constant_keys: Sequence[Hashable] | None = None,
        crop_foreground: bool = False,
        size_mode: str | None = None,
    ) -> None:
        keys = [keys] if isinstance(keys, (str, int)) else list(keys)
        if size_mode is not None and (size_mode not in SIZE_MODES or spatial_size is None):
            raise InputError(f"size_mode must be one of {SIZE_MODES} (with a spatial_size) or None, got {size_mode!r}")
        transforms = [
            LoadImaged(keys, image_only=True),
            EnsureChannelFirstd(keys),
            CheckVolumesd(keys, num_channels=num_channels, constant_keys=constant_keys),
            Orientationd(keys, axcodes=axcodes),
        ]
        if crop_foreground:
            transforms.append(CropForegroundd(keys, source_key=keys[0], allow_smaller=True))
        if size_mode is not None:
            size = max(spatial_size) if size_mode == "longest" else spatial_size
            transforms.append(Resized(keys, size, size_mode=size_mode, mode="trilinear", anti_aliasing=True))
        if spatial_size is not None and size_mode != "all":  # "all" already gives spatial_size
            transforms.append(ResizeWithPadOrCropd(keys, spatial_size=spatial_size))
        if intensity_range is not None:
            minv, maxv = intensity_range
            scale = keys[:1] if scale_keys is None else scale_keys
            transforms.append(ScaleIntensityd(scale, minv=minv, maxv=maxv, channel_wise=channel_wise))
        super().__init__(transforms)

    def read(self, files: Mapping[Hashable, str | Path]) -> dict[Hashable, Any]:
        """Apply the chain to one item of file paths outside a ``Dataset`` (evaluation, the template loader), with
        the error a user can act on.

        Raises:
            InputError: the check's own message (it names the file), or, when a file cannot be read, one naming
                the files with the reader's message.
        """
        try:
            return self({key: str(path) for key, path in files.items()})
        except Exception as error:  # MONAI wraps a transform's error in RuntimeError, a reader's in several types
            found = find_user_error(error)
            if isinstance(found, InputError):
                raise found from error
            if found is not None:
                raise InputError(str(found)) from error
            names = ", ".join(str(path) for path in files.values())
            raise InputError(f"{names}: cannot read as NIfTI volume(s) ({root_cause(error)})") from error
