"""The template a registration-based generator warps: T1 plus tissue maps on the bundle's working grid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirst, LoadImage, Orientation, ResizeWithPadOrCrop, ScaleIntensity

from common.data.template import load_mni152

__all__ = ["load_template"]


def _load_file(path: str | Path, what: str) -> MetaTensor:
    """One 3D volume as a RAS MetaTensor (1, X, Y, Z); a clear error naming the file otherwise."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: {what} file not found")
    try:
        volume = Compose([LoadImage(image_only=True), EnsureChannelFirst(), Orientation(axcodes="RAS")])(str(path))
    except Exception as error:
        raise ValueError(f"{path}: cannot read the {what} ({error})") from error
    if volume.ndim != 4 or volume.shape[0] != 1:
        raise ValueError(f"{path}: the {what} must be one 3D volume, got shape {tuple(volume.shape)}")
    return volume


def load_template(
    spatial_size: Sequence[int],
    path: str | Path | None = None,
    gm: str | Path | None = None,
    wm: str | Path | None = None,
) -> MetaTensor:
    """Template volumes (C, X, Y, Z) on the working grid: channel 0 the T1 scaled to [0, 1], then tissue maps.

    By default the MNI152 2009a template shipped with nilearn (:func:`common.data.load_mni152`), resampled to a
    cube of ``max(spatial_size)`` voxels over 192 mm, with its grey- and white-matter maps: channels [t1, gm, wm].
    With ``path``, that T1 file and the optional ``gm`` / ``wm`` probability maps (channels [t1] plus those given,
    in that order), RAS-oriented like the subjects. Then every channel is centre-cropped or padded to
    ``spatial_size`` (``ResizeWithPadOrCrop``, as the subjects are), the T1 is min-max scaled to [0, 1] and the
    tissue maps are clipped to [0, 1]. The affine (``.affine``) follows the crop, so the template's grid is the
    one the subjects must share (the paper registers every MRI affinely to the template first).

    Raises:
        FileNotFoundError / ValueError: naming the template file that is missing, unreadable, not 3D, or whose grid
            differs from the T1's.
    """
    if path is None:
        if gm is not None or wm is not None:
            raise ValueError("tissue maps (gm, wm) need the template T1 file (path) they belong to")
        mni = load_mni152(max(spatial_size))
        volumes = MetaTensor(
            torch.as_tensor(np.stack([mni.t1, mni.gm, mni.wm])), affine=torch.as_tensor(np.array(mni.affine))
        )
    else:
        t1 = _load_file(path, "template T1")
        maps = [_load_file(p, f"template {name} map") for name, p in (("gm", gm), ("wm", wm)) if p is not None]
        for volume in maps:
            if volume.shape != t1.shape or not torch.allclose(volume.affine, t1.affine, atol=1e-3):
                raise ValueError(f"{volume.meta['filename_or_obj']}: grid differs from that of the template {path}")
        volumes = torch.cat([t1, *maps])
    volumes = ResizeWithPadOrCrop(spatial_size)(volumes.float())
    volumes[:1] = ScaleIntensity(minv=0.0, maxv=1.0)(volumes[:1])
    volumes[1:] = volumes[1:].clip(0.0, 1.0)
    return volumes
