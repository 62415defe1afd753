"""NIfTI file naming shared by ``prepare``, datalists and output writers."""

from __future__ import annotations

from pathlib import Path

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
