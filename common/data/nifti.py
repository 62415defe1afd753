"""NIfTI file naming shared by ``prepare``, datalists and output writers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor

NIFTI_EXTENSIONS = (".nii.gz", ".nii")


def nifti_stem(path: str | Path) -> str | None:
    """File name without its NIfTI extension (``sub-01.nii.gz`` -> ``sub-01``), or None for other files."""
    name = Path(path).name
    for extension in NIFTI_EXTENSIONS:
        if name.endswith(extension) and len(name) > len(extension):
            return name[: -len(extension)]
    return None


def nifti_files(folder: str | Path) -> list[Path]:
    """The NIfTI files directly in ``folder``, sorted by name; hidden files are skipped."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".") and nifti_stem(p))


def source_name(tensor: torch.Tensor) -> str:
    """The file a (Meta)Tensor was loaded from, for error messages; ``"<in-memory>"`` if unknown."""
    if isinstance(tensor, MetaTensor):
        return str(tensor.meta.get("filename_or_obj", "<in-memory>"))
    return "<in-memory>"


def centred_affine(spatial_size: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """RAS voxel-to-world affine of a volume with ``spacing`` (mm) whose centre is at the world origin.

    The affine of volumes generated without an input volume: their arrays are RAS-oriented like the training
    data (MONAI ``Orientationd("RAS")``), so axis i runs along +R, +A, +S with spacing[i] mm per voxel.
    """
    if len(spatial_size) != 3 or len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"need 3 sizes and 3 positive spacings, got {list(spatial_size)} and {list(spacing)}")
    affine = np.diag([*map(float, spacing), 1.0])
    affine[:3, 3] = -(np.asarray(spatial_size, dtype=float) - 1) / 2 * np.asarray(spacing, dtype=float)
    return affine
