"""A small synthetic DEMO cohort, cached on disk, for trying the bundles without real data.

:func:`build_demo_cohort` simulates subjects from the MNI152 template (see :mod:`common.data.synthetic`) and writes
them in the two layouts the bundles read, with their datalists::

    demo_s{size}_n{num_subjects}_seed{seed}_t{tumour_fraction}/
        README_DEMO_DATA.txt
        manifest.json                       written last: its presence marks a complete cohort
        datalist.json                       single modality (Med-DDPM): {"image": T1ce, "label": mask}
        datalist_brats.json                 BraTS: {"image": [t1, t1ce, t2, flair], "label": seg}
        single/images/demo_000.nii.gz       T1ce, float32
        single/masks/demo_000.nii.gz        uint8: 0 background, 1 brain, 2 tumour
        brats/Demo_000/Demo_000_{t1,t1ce,t2,flair}.nii.gz   float32
        brats/Demo_000/Demo_000_seg.nii.gz  uint8 BraTS 2021: 0, 1 necrotic core, 2 oedema, 4 enhancing tumour

This is demonstration data only, not research data.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import nibabel as nib
import numpy as np
from tqdm import tqdm

from common.data.prepare import prepare_brats, prepare_paired
from common.data.synthetic import BRATS_LABELS, CONTRASTS, MEDDPM_LABELS, synthesize_subject
from common.data.template import load_mni152

__all__ = ["DEMO_WARNING", "MNI_NOTICE", "build_demo_cohort", "demo_cohort_name"]

DEMO_WARNING = (
    "SYNTHETIC DEMO DATA derived from the MNI152 2009a symmetric template shipped with nilearn. "
    "This is NOT research data: do not use it for any scientific or clinical conclusion."
)

MNI_NOTICE = """\
Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological
Institute, McGill University. Permission to use, copy, modify, and distribute this software and its
documentation for any purpose and without fee is hereby granted, provided that the above copyright
notice appear in all copies. The authors and McGill University make no representations about the
suitability of this software for any purpose. It is provided "as is" without express or implied
warranty. The authors are not responsible for any data loss, equipment damage, property loss, or
injury to subjects or patients resulting from the use or misuse of this software package.
"""
"""Copyright notice of the MNI ICBM 2009a template, which must accompany data derived from it."""

_README = f"""\
{DEMO_WARNING}

What this is
------------
Synthetic brain MRI volumes made by randomly deforming the MNI ICBM152 2009a non-linear symmetric
template (T1 and grey/white-matter probability maps, as shipped with nilearn), adding tumour-like
lesions to some subjects and simulating T1, T1ce, T2 and FLAIR contrasts from the tissue classes,
with a bias field and noise. Anatomy, lesions and intensities are simplistic. The data exist only
to check that the pipelines run end to end. Results obtained with them mean nothing.

Layout
------
single/images/demo_XXX.nii.gz    contrast-enhanced T1 (T1ce), float32
single/masks/demo_XXX.nii.gz     uint8: 0 background, 1 brain, 2 tumour (necrotic core + enhancing rim)
brats/Demo_XXX/Demo_XXX_{{t1,t1ce,t2,flair}}.nii.gz   float32
brats/Demo_XXX/Demo_XXX_seg.nii.gz   uint8, BraTS 2021 labels: 0 background, 1 necrotic core,
                                 2 oedema, 4 enhancing tumour
datalist.json, datalist_brats.json   MONAI decathlon-style datalists (paths relative to this folder)
manifest.json                    generation parameters and the subjects that have a tumour

License of the template the data are derived from
--------------------------------------------------
{MNI_NOTICE}"""

_VAL_FRACTION = 0.25


def demo_cohort_name(num_subjects: int, size: int, seed: int, tumour_fraction: float) -> str:
    """Folder name of a cohort, e.g. ``demo_s32_n8_seed0_t0.5``."""
    return f"demo_s{size}_n{num_subjects}_seed{seed}_t{float(tumour_fraction):g}"


def _tumour_subjects(num_subjects: int, tumour_fraction: float, seed: int) -> list[int]:
    """Sorted indices of the ``round(num_subjects * tumour_fraction)`` subjects that get a tumour."""
    count = round(num_subjects * tumour_fraction)
    return sorted(np.random.default_rng(seed).choice(num_subjects, size=count, replace=False).tolist())


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Save a 3D array as NIfTI with ``affine`` as both qform and sform (scanner coordinates, mm)."""
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)


def _write_cohort(folder: Path, num_subjects: int, size: int, seed: int, tumour_fraction: float) -> None:
    """Simulate every subject and write all files of the cohort into ``folder``, ``manifest.json`` last."""
    template = load_mni152(size)
    with_tumour = _tumour_subjects(num_subjects, tumour_fraction, seed)
    images_dir, masks_dir = folder / "single" / "images", folder / "single" / "masks"
    images_dir.mkdir(parents=True)
    subjects = []
    for index in tqdm(range(num_subjects), desc="Synthesising demo subjects", unit="subject"):
        subject = synthesize_subject(template, np.random.default_rng([seed, index]), tumour=index in with_tumour)
        name, case = f"demo_{index:03d}", f"Demo_{index:03d}"
        case_dir = folder / "brats" / case
        for contrast in CONTRASTS:
            _save(subject.contrasts[contrast], template.affine, case_dir / f"{case}_{contrast}.nii.gz")
        _save(subject.seg, template.affine, case_dir / f"{case}_seg.nii.gz")
        shutil.copyfile(case_dir / f"{case}_t1ce.nii.gz", images_dir / f"{name}.nii.gz")
        _save(subject.meddpm_mask(), template.affine, masks_dir / f"{name}.nii.gz")
        subjects.append({"id": name, "brats_id": case, "tumour": subject.has_tumour})

    (folder / "README_DEMO_DATA.txt").write_text(_README)
    prepare_paired(
        images_dir,
        masks_dir,
        folder / "datalist.json",
        allowed_labels=tuple(MEDDPM_LABELS.values()),
        val_fraction=_VAL_FRACTION,
        seed=seed,
    )
    prepare_brats(
        folder / "brats",
        folder / "datalist_brats.json",
        allowed_labels=(0, *BRATS_LABELS.values()),
        val_fraction=_VAL_FRACTION,
        seed=seed,
    )
    manifest = {
        "warning": DEMO_WARNING,
        "parameters": {
            "num_subjects": num_subjects,
            "size": size,
            "seed": seed,
            "tumour_fraction": tumour_fraction,
        },
        "spacing_mm": template.spacing,
        "affine": template.affine.tolist(),
        "single_image_contrast": "t1ce",
        "meddpm_labels": MEDDPM_LABELS,
        "brats_labels": BRATS_LABELS,
        "subjects": subjects,
        "tumour_subjects": [subject["id"] for subject in subjects if subject["tumour"]],
        "datalists": {"single": "datalist.json", "brats": "datalist_brats.json"},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def build_demo_cohort(
    root: str | Path, num_subjects: int = 8, size: int = 128, seed: int = 0, tumour_fraction: float = 0.5
) -> Path:
    """Build (or reuse) a synthetic demo cohort under ``root`` and return its folder.

    The cohort lives in ``root / demo_cohort_name(...)``; if that folder holds a ``manifest.json`` it is returned
    as is. Otherwise it is built in a temporary sibling folder that is renamed into place once complete, so an
    interrupted build never looks complete. The result is a deterministic function of the arguments: subject ``i``
    is simulated with ``numpy.random.default_rng([seed, i])``, and the ``round(num_subjects * tumour_fraction)``
    subjects with a tumour are drawn with ``numpy.random.default_rng(seed)``. The datalists put 25 % of the subjects
    (at least one when there are two or more) in ``"validation"``.

    Args:
        root: folder under which the cohort folder is created.
        num_subjects: number of subjects, at least 1.
        size: edge length of the cubic volumes in voxels (spacing ``192 / size`` mm), at least 8.
        seed: seed of the whole cohort, non-negative.
        tumour_fraction: fraction of subjects with a tumour-like lesion, in [0, 1].

    Returns:
        The cohort folder.

    Raises:
        ValueError: for an invalid ``num_subjects``, ``size``, ``seed`` or ``tumour_fraction``.
    """
    if num_subjects < 1:
        raise ValueError(f"num_subjects must be at least 1, got {num_subjects}.")
    if size < 8:
        raise ValueError(f"size must be at least 8, got {size}.")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}.")
    if not 0.0 <= tumour_fraction <= 1.0:
        raise ValueError(f"tumour_fraction must be in [0, 1], got {tumour_fraction}.")
    root = Path(root)
    cohort = root / demo_cohort_name(num_subjects, size, seed, tumour_fraction)
    if (cohort / "manifest.json").is_file():
        return cohort

    staging = root / f".{cohort.name}.{uuid.uuid4().hex[:8]}.partial"
    staging.mkdir(parents=True)
    try:
        _write_cohort(staging, num_subjects, size, seed, tumour_fraction)
        try:
            os.replace(staging, cohort)
        except OSError as error:
            if not (cohort / "manifest.json").is_file():  # else a concurrent build finished first: use it
                raise FileExistsError(f"{cohort}: exists but is not a complete demo cohort; delete it.") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return cohort
