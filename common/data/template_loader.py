"""The template a registration-based generator warps: T1 plus tissue maps on the bundle's working grid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import ResizeWithPadOrCrop, ScaleIntensity

from common.data.template import load_mni152

__all__ = ["load_template"]


def _load_files(files: dict[str, Path], spatial_size: Sequence[int]) -> MetaTensor:
    """The template files, keyed by what they hold (``"template T1"`` first, then tissue maps), read through
    :class:`common.transforms.LoadVolumesd` (one 3D volume each, finite, the T1 not constant, every map on the T1's
    grid; RAS; cropped or padded to ``spatial_size``; the T1 min-max scaled to [0, 1]), as (C, X, Y, Z).

    Raises:
        FileNotFoundError / InputError: naming the file that is missing, unreadable, not one 3D volume, or on another
            grid than the T1.
    """
    from common.transforms import LoadVolumesd  # common.transforms imports common.data: import it when used

    for what, path in files.items():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: {what} file not found")
    load = LoadVolumesd(list(files), num_channels=[1] * len(files), spatial_size=spatial_size, intensity_range=(0, 1))
    volumes = load.read(files)
    return torch.cat([volumes[what] for what in files])


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
    in that order), read through the load chain of the subjects (:class:`common.transforms.LoadVolumesd`: checked,
    RAS-oriented). Then every channel is centre-cropped or padded to ``spatial_size`` (``ResizeWithPadOrCrop``, as
    the subjects are), the T1 is min-max scaled to [0, 1] and the tissue maps are clipped to [0, 1]. The affine
    (``.affine``) follows the crop, so the template's grid is the one the subjects must share (the paper registers
    every MRI affinely to the template first).

    Raises:
        FileNotFoundError / InputError (a ``ValueError``): naming the template file that is missing, unreadable, not
            one 3D volume, or whose grid differs from the T1's.
    """
    if path is None:
        if gm is not None or wm is not None:
            raise ValueError("tissue maps (gm, wm) need the template T1 file (path) they belong to")
        mni = load_mni152(max(spatial_size))
        volumes = MetaTensor(
            torch.as_tensor(np.stack([mni.t1, mni.gm, mni.wm])), affine=torch.as_tensor(np.array(mni.affine))
        )
        volumes = ResizeWithPadOrCrop(spatial_size)(volumes.float())
        volumes[:1] = ScaleIntensity(minv=0.0, maxv=1.0)(volumes[:1])
    else:
        maps = {f"template {name} map": Path(p) for name, p in (("gm", gm), ("wm", wm)) if p is not None}
        volumes = _load_files({"template T1": Path(path), **maps}, spatial_size).float()
    volumes[1:] = volumes[1:].clip(0.0, 1.0)
    return volumes
