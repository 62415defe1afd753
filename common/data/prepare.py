"""Turn folders of NIfTI volumes into validated MONAI decathlon-style datalists.

Each ``prepare_*`` function checks every file first, collects all problems and raises one
:class:`DatasetValidationError` listing them, so that a dataset can be fixed in one go. The inputs are only read;
the one file written is the output JSON::

    {"description": "...", "training": [{"image": ..., "label": ...}, ...], "validation": [...]}

Paths are written relative to the JSON file's folder, which is the default ``base_dir`` of
:func:`monai.data.load_decathlon_datalist`, so the dataset and its datalist can be moved together.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from tqdm import tqdm

from common.data.nifti import NIFTI_EXTENSIONS, nifti_files, nifti_stem
from common.errors import InputError

__all__ = [
    "BRATS_MODALITIES",
    "DatasetValidationError",
    "prepare_brats",
    "prepare_images",
    "prepare_paired",
    "validate_volume",
]

BRATS_MODALITIES = ("t1", "t1ce", "t2", "flair")
"""BraTS modalities in the channel order of the ``"image"`` lists written by :func:`prepare_brats`."""

MASK_SUFFIXES = ("", "_mask", "_seg", "_label")
"""Accepted mask names for an image ``<stem>.nii[.gz]``: ``<stem><suffix>.nii[.gz]``."""

_AFFINE_ATOL = 1e-3


class DatasetValidationError(InputError):
    """A dataset failed validation; ``problems`` holds one ``"<path>: <problem>"`` string per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} problem(s) found in the dataset:\n" + "\n".join(self.problems))


@dataclass(frozen=True)
class _Header:
    """Geometry of a readable 3D volume, used for image/mask consistency checks."""

    path: Path
    shape: tuple[int, ...]
    affine: np.ndarray


def _format_values(values: Iterable[float]) -> str:
    """``[0, 1, 2.5]``: integer-valued numbers without a decimal point."""
    return "[" + ", ".join(str(int(v)) if float(v).is_integer() else f"{v:g}" for v in values) + "]"


def _check_volume(
    path: Path, *, is_label: bool, allowed_labels: Sequence[int] | None, allow_empty_label: bool = False
) -> tuple[_Header | None, list[str]]:
    """Validate one volume; returns its geometry (None when unreadable or not 3D) and its problems.

    A constant image (every voxel the same value, e.g. all zero) is refused, and so is an empty label map (every
    voxel 0) unless ``allow_empty_label``.
    """
    try:
        image = nib.load(path)
        shape = tuple(int(n) for n in image.shape)
        if len(shape) == 4 and shape[3] == 1:
            shape = shape[:3]
        if len(shape) != 3:
            return None, [f"{path}: {len(shape)}D volume of shape {image.shape}; expected a 3D volume"]
        data = np.asanyarray(image.dataobj)
    except Exception as error:  # nibabel raises many types (ImageFileError, EOFError, zlib.error, OSError, ...)
        return None, [f"{path}: unreadable or corrupt NIfTI file ({type(error).__name__}: {error})"]

    problems = []
    finite = np.isfinite(data)
    if not finite.all():
        problems.append(
            f"{path}: contains non-finite values ({int(np.isnan(data).sum())} NaN, {int(np.isinf(data).sum())} Inf)"
        )
    elif is_label and not allow_empty_label and not data.any():
        problems.append(f"{path}: empty label map (every voxel is 0); a mask needs its head/brain label")
    elif not is_label and data.min() == data.max():
        value = _format_values([data.flat[0]])[1:-1]
        problems.append(f"{path}: constant volume (every voxel is {value}): an empty or failed export?")
    if is_label:
        values = np.unique(data[finite])
        fractional = values[values != np.round(values)]
        if fractional.size:
            problems.append(f"{path}: non-integer label values {_format_values(fractional[:5])}")
        if allowed_labels is not None:
            unexpected = sorted(set(values[values == np.round(values)].tolist()) - set(allowed_labels))
            if unexpected:
                problems.append(
                    f"{path}: unexpected labels {_format_values(unexpected)}; allowed {_format_values(allowed_labels)}"
                )
    return _Header(path=path, shape=shape, affine=np.asarray(image.affine, dtype=np.float64)), problems


def validate_volume(
    path: str | Path, *, is_label: bool, allowed_labels: Sequence[int] | None = None, allow_empty_label: bool = False
) -> list[str]:
    """Check that ``path`` is a readable 3D NIfTI volume with finite values (and valid labels if ``is_label``).

    A 4D volume with a trailing singleton dimension, shape (X, Y, Z, 1), counts as 3D. An image must not be
    constant (every voxel the same value, e.g. all zero), a label map not empty (all zero).

    Args:
        path: NIfTI file to check.
        is_label: whether the volume is a label map: its values must then be integers, and in ``allowed_labels``
            when that is given.
        allowed_labels: permitted label values (only used when ``is_label``); None accepts any integer.
        allow_empty_label: accept a label map that is all zero (a BraTS segmentation of a case without tumour).

    Returns:
        One ``"<path>: <problem>"`` string per problem found; empty when the volume is valid.
    """
    return _check_volume(
        Path(path), is_label=is_label, allowed_labels=allowed_labels, allow_empty_label=allow_empty_label
    )[1]


def _check_same_geometry(reference: _Header, other: _Header) -> list[str]:
    """Problems, reported against ``other``, if its shape or affine differ from ``reference``'s."""
    problems = []
    name = reference.path.name
    if other.shape != reference.shape:
        problems.append(f"{other.path}: shape {other.shape} does not match {name} shape {reference.shape}")
    if not np.allclose(other.affine, reference.affine, atol=_AFFINE_ATOL):
        difference = float(np.abs(other.affine - reference.affine).max())
        problems.append(f"{other.path}: affine does not match {name} (max abs difference {difference:g})")
    return problems


def _validate_groups(
    groups: Sequence[Sequence[tuple[Path, bool]]], allowed_labels: Sequence[int] | None, allow_empty_label: bool = False
) -> list[str]:
    """Validate each ``(path, is_label)`` file of each group and check that files of a group share their geometry."""
    problems = []
    progress = tqdm(total=sum(len(group) for group in groups), desc="Validating NIfTI files", unit="file")
    with progress:
        for group in groups:
            headers = []
            for path, is_label in group:
                header, volume_problems = _check_volume(
                    path, is_label=is_label, allowed_labels=allowed_labels, allow_empty_label=allow_empty_label
                )
                problems += volume_problems
                if header is not None:
                    headers.append(header)
                progress.update()
            for header in headers[1:]:
                problems += _check_same_geometry(headers[0], header)
    return problems


def _list_niftis(folder: Path, problems: list[str]) -> dict[str, Path]:
    """Map stem -> path of the NIfTI files in ``folder`` (sorted, hidden files skipped); problems go to ``problems``."""
    if not folder.is_dir():
        problems.append(f"{folder}: folder does not exist")
        return {}
    files: dict[str, Path] = {}
    for path in nifti_files(folder):
        stem = nifti_stem(path)
        if stem in files:
            problems.append(f"{path}: duplicate of {files[stem].name} (same name with another extension)")
            continue
        files[stem] = path
    if not files:
        problems.append(f"{folder}: empty folder (no {' or '.join(NIFTI_EXTENSIONS)} files)")
    return files


def _check_request(output: str | Path, inputs: Iterable[Path], overwrite: bool, val_fraction: float) -> Path:
    """Check the arguments before validating files; return the resolved ``output``.

    Raises:
        InputError: if ``val_fraction`` is not in [0, 1), or ``output`` is an input file or a folder.
        FileExistsError: if ``output`` exists and ``overwrite`` is False.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    output = Path(output).resolve()
    if output in {path.resolve() for path in inputs}:
        raise InputError(f"{output}: the output datalist would overwrite one of the input files.")
    if output.is_dir():
        raise InputError(f"{output}: the output datalist path is a folder.")
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output}: already exists; pass --overwrite True to replace it.")
    return output


def _split(items: list[dict], val_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Split ``items`` into (training, validation), keeping their order.

    ``round(len(items) * val_fraction)`` items, drawn with ``random.Random(seed)``, go to validation; at least one
    when ``val_fraction > 0`` and there are two items or more, and never all of them.
    """
    num_val = round(len(items) * val_fraction)
    if val_fraction > 0 and len(items) >= 2:
        num_val = min(max(num_val, 1), len(items) - 1)
    chosen = set(random.Random(seed).sample(range(len(items)), num_val))
    training = [item for i, item in enumerate(items) if i not in chosen]
    validation = [item for i, item in enumerate(items) if i in chosen]
    return training, validation


def _relative(path: str | Path | list[Path], output: Path) -> str | list[str]:
    """``path`` (or each of a list of paths) relative to the folder of the resolved ``output`` file, POSIX style."""
    if isinstance(path, list):
        return [_relative(p, output) for p in path]
    return Path(os.path.relpath(Path(path).resolve(), output.parent)).as_posix()


def _write_datalist(
    output: Path, items: list[dict], description: str, val_fraction: float, seed: int, extra: dict | None = None
) -> Path:
    """Write the datalist JSON with paths relative to ``output``'s folder and a seeded train/validation split."""
    items = [{key: _relative(value, output) for key, value in item.items()} for item in items]
    training, validation = _split(items, val_fraction, seed)
    datalist = {"description": description, **(extra or {}), "training": training, "validation": validation}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(datalist, indent=2) + "\n")
    return output


def _match_masks(images: dict[str, Path], masks: dict[str, Path], problems: list[str]) -> dict[str, Path]:
    """Map image stem -> mask path (same name, else one of :data:`MASK_SUFFIXES`); unmatched files go to problems."""
    matched: dict[str, Path] = {}
    for stem, image in images.items():
        if stem in masks:
            candidates = [masks[stem]]
        else:
            candidates = [masks[stem + suffix] for suffix in MASK_SUFFIXES[1:] if stem + suffix in masks]
        if len(candidates) == 1:
            matched[stem] = candidates[0]
        elif candidates:
            problems.append(f"{image}: several candidate masks {[c.name for c in candidates]}; keep only one")
        else:
            names = ", ".join(f"{stem}{suffix}{NIFTI_EXTENSIONS[0]}" for suffix in MASK_SUFFIXES)
            problems.append(f"{image}: no matching mask (looked for {names} or .nii)")
    users: dict[Path, list[str]] = {}
    for stem, mask in matched.items():
        users.setdefault(mask, []).append(images[stem].name)
    for mask in masks.values():
        if mask not in users:
            problems.append(f"{mask}: no matching image")
        elif len(users[mask]) > 1:
            problems.append(f"{mask}: matches several images {users[mask]}; rename them")
    return matched


def prepare_paired(
    image_dir: str | Path,
    mask_dir: str | Path,
    output: str | Path,
    allowed_labels: Sequence[int] = (0, 1, 2),
    val_fraction: float = 0.1,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a datalist of ``{"image": ..., "label": ...}`` pairs from an image folder and a mask folder.

    The mask of ``<stem>.nii.gz`` (or ``.nii``) in ``image_dir`` is the file of the same name in ``mask_dir``, or
    else ``<stem>_mask``, ``<stem>_seg`` or ``<stem>_label``. Every file must be a readable 3D volume with finite
    values, no image may be constant (e.g. all zero), every mask must hold integer labels from ``allowed_labels``
    (Med-DDPM: 0 background, 1 brain, 2 tumour) and not be empty (all zero), and each pair must share shape and
    affine. Items are sorted by image name.

    Args:
        image_dir: folder of images.
        mask_dir: folder of label masks.
        output: datalist JSON to write.
        allowed_labels: permitted mask values.
        val_fraction: fraction of pairs, drawn with ``random.Random(seed)``, put in ``"validation"``.
        seed: seed of the split.
        overwrite: replace ``output`` if it exists.

    Returns:
        The resolved ``output`` path.

    Raises:
        DatasetValidationError: listing every problem found.
        FileExistsError: if ``output`` exists and ``overwrite`` is False.
        InputError: if ``output`` is one of the input files or ``val_fraction`` is not in [0, 1).
    """
    problems: list[str] = []
    images = _list_niftis(Path(image_dir), problems)
    masks = _list_niftis(Path(mask_dir), problems)
    output = _check_request(output, [*images.values(), *masks.values()], overwrite, val_fraction)
    matched = _match_masks(images, masks, problems)
    groups = [[(images[stem], False), (mask, True)] for stem, mask in matched.items()]
    problems += _validate_groups(groups, allowed_labels)
    if problems:
        raise DatasetValidationError(problems)
    items = [{"image": images[stem], "label": mask} for stem, mask in matched.items()]
    return _write_datalist(
        output,
        items,
        f"Images from {_relative(image_dir, output)} with masks from {_relative(mask_dir, output)}",
        val_fraction,
        seed,
    )


def prepare_images(
    image_dir: str | Path, output: str | Path, val_fraction: float = 0.1, seed: int = 0, overwrite: bool = False
) -> Path:
    """Write a datalist of ``{"image": ...}`` items (for unconditional models) from a folder of NIfTI images.

    Every file must be a readable 3D volume with finite values that is not constant (e.g. all zero). Items are
    sorted by file name. Arguments, return value and exceptions are as in :func:`prepare_paired`.
    """
    problems: list[str] = []
    images = _list_niftis(Path(image_dir), problems)
    output = _check_request(output, images.values(), overwrite, val_fraction)
    problems += _validate_groups([[(path, False)] for path in images.values()], None)
    if problems:
        raise DatasetValidationError(problems)
    items = [{"image": path} for path in images.values()]
    return _write_datalist(output, items, f"Images from {_relative(image_dir, output)}", val_fraction, seed)


def _brats_case_files(case_dir: Path, problems: list[str]) -> dict[str, Path]:
    """Map modality and ``"seg"`` -> path of ``<case>_<key>.nii[.gz]`` in ``case_dir``; missing files go to problems."""
    files = {}
    for key in (*BRATS_MODALITIES, "seg"):
        found = [case_dir / f"{case_dir.name}_{key}{ext}" for ext in NIFTI_EXTENSIONS]
        found = [path for path in found if path.is_file()]
        if len(found) == 1:
            files[key] = found[0]
        elif found:
            problems.append(f"{found[1]}: duplicate of {found[0].name} (same name with another extension)")
        else:
            problems.append(f"{case_dir}: missing {case_dir.name}_{key}.nii.gz (or .nii)")
    return files


def prepare_brats(
    root: str | Path,
    output: str | Path,
    allowed_labels: Sequence[int] = (0, 1, 2, 3, 4),
    val_fraction: float = 0.1,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a multi-modal datalist from a BraTS-style folder.

    ``root`` holds one folder per case, ``<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz`` (or ``.nii``). Each item is
    ``{"image": [t1, t1ce, t2, flair], "label": seg}``: the image channels are in the order of
    :data:`BRATS_MODALITIES` (T1, T1ce, T2, FLAIR). Segmentations keep their BraTS 2021 labels (1 necrotic core,
    2 oedema, 4 enhancing tumour); remapping 4 -> 3 and adding a brain label are done by transforms at load time,
    never by rewriting files. All five files of a case must be readable 3D volumes with finite values and the same
    shape and affine, no image may be constant; the segmentation must hold integer labels from ``allowed_labels``
    (it may be empty: a case without tumour). Items are sorted by case name; hidden folders are skipped. Other
    arguments, return value and exceptions are as in :func:`prepare_paired`.
    """
    root = Path(root)
    problems: list[str] = []
    cases: dict[str, dict[str, Path]] = {}
    if not root.is_dir():
        problems.append(f"{root}: folder does not exist")
    else:
        for case_dir in sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith(".")):
            cases[case_dir.name] = _brats_case_files(case_dir, problems)
        if not cases:
            problems.append(f"{root}: empty folder (no case folders)")
    inputs = [path for files in cases.values() for path in files.values()]
    output = _check_request(output, inputs, overwrite, val_fraction)
    groups = [[(path, key == "seg") for key, path in files.items()] for files in cases.values()]
    problems += _validate_groups(groups, allowed_labels, allow_empty_label=True)
    if problems:
        raise DatasetValidationError(problems)
    items = [{"image": [files[m] for m in BRATS_MODALITIES], "label": files["seg"]} for files in cases.values()]
    modality = {"modality": {str(i): name.upper() for i, name in enumerate(BRATS_MODALITIES)}}
    return _write_datalist(
        output, items, f"BraTS-style cases from {_relative(root, output)}", val_fraction, seed, modality
    )
