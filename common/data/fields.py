"""Displacement fields on disk: NIfTI files in voxels and the datalist that lists them for the field DDPM."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from common.data.files import write_atomically

__all__ = ["FIELD_DESCRIPTION", "load_field_scale", "record_field_scale", "save_field", "write_fields_datalist"]

FIELD_DESCRIPTION = "displacement in voxels, components X Y Z"
"""NIfTI header description of every field written by the bundles (at most 80 characters)."""


def save_field(field: torch.Tensor | np.ndarray, affine: np.ndarray | torch.Tensor, path: str | Path) -> Path:
    """Write a field (3, X, Y, Z) as a float32 NIfTI of shape (X, Y, Z, 3) on the grid ``affine``.

    Components are displacements in voxels along the array axes X, Y, Z (RAS), the description field says so,
    and the intent is NIfTI's "vector". ``monai.transforms.LoadImage`` + ``EnsureChannelFirst`` read it back as
    (3, X, Y, Z).
    """
    array = torch.as_tensor(field).detach().cpu().float().numpy()
    if array.ndim != 4 or array.shape[0] != 3:
        raise ValueError(f"expected a field (3, X, Y, Z), got {array.shape}")
    image = nib.Nifti1Image(np.ascontiguousarray(np.moveaxis(array, 0, -1)), np.asarray(affine, dtype=np.float64))
    image.header.set_intent("vector")
    image.header["descrip"] = FIELD_DESCRIPTION.encode()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))
    return path


def write_fields_datalist(fields: Sequence[str | Path], field_scale: float, path: str | Path) -> Path:
    """Write a decathlon-style datalist ``{"field_scale", "unit", "training": [{"field": relative path}]}``.

    ``field_scale`` is the largest absolute displacement (voxels) over all fields: the field DDPM divides fields by
    it so that they lie in [-1, 1].
    """
    path = Path(path)
    items = [{"field": str(Path(f).resolve().relative_to(path.parent.resolve()))} for f in fields]
    content = {"field_scale": float(field_scale), "unit": "voxel", "training": items}
    path.write_text(json.dumps(content, indent=2) + "\n")
    return path


def load_field_scale(datalist: str | Path) -> float:
    """The ``field_scale`` (voxels) of a fields datalist written by :func:`write_fields_datalist`.

    Raises:
        FileNotFoundError / ValueError: naming the datalist when it is missing or has no positive ``field_scale``.
    """
    datalist = Path(datalist)
    if not datalist.is_file():
        raise FileNotFoundError(
            f"{datalist}: field scale not found; it is written by configs/export_fields.json (the fields datalist)"
            " and recorded in models/field_scale.json by configs/train_diffusion.json"
        )
    scale = json.loads(datalist.read_text()).get("field_scale")
    if not isinstance(scale, (int, float)) or scale <= 0:
        raise ValueError(f"{datalist}: needs a positive 'field_scale' (voxels), got {scale!r}")
    return float(scale)


def record_field_scale(field_scale: float, path: str | Path) -> float:
    """Write the ``field_scale`` (voxels) a field DDPM trains with to ``path`` (``{"field_scale", "unit"}``).

    Stage-2 training records it next to the weights (``models/field_scale.json``, an ``initialize`` step of
    ``train_diffusion.json``) so that inference, and a packaged bundle, need the weights folder only, not the
    exported fields; :func:`load_field_scale` reads it back. Written atomically (:func:`write_atomically`), so the
    processes of a multi-GPU run may all write it.

    Returns:
        ``field_scale``.

    Raises:
        ValueError: ``field_scale`` is not positive.
    """
    if not field_scale > 0:
        raise ValueError(f"field_scale must be positive (voxels), got {field_scale!r}")
    text = json.dumps({"field_scale": float(field_scale), "unit": "voxel"}, indent=2) + "\n"
    write_atomically(path, lambda file: file.write(text.encode()))
    return float(field_scale)
