"""Smoke tests of the Med-DDPM bundle's inference through ``python -m monai.bundle run`` on a tiny demo cohort, with
the weights trained by ``conftest.py`` (training itself: test_bundle_training.py), and of its BraTS override."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import check, run_bundle

BUNDLE = "med_ddpm_brain_mri"
TINY = ["inference.json", "tiny_cpu.json"]


@pytest.fixture(scope="module")
def trained(med_ddpm_trained) -> Path:
    """The bundle root trained 4 iterations, then resumed to 6 (``conftest.py``; checked by test_bundle_training)."""
    return med_ddpm_trained.root


def test_inference_writes_pairs_with_mask_affine_and_previews(trained, tiny_cohort, tmp_path):
    out = tmp_path / "generated"
    manifest = json.loads((tiny_cohort / "manifest.json").read_text())
    masks = tmp_path / "masks"  # a folder of two masks: one with a tumour, one without
    masks.mkdir()
    for name in {subject["tumour"]: subject["id"] for subject in manifest["subjects"]}.values():
        shutil.copyfile(tiny_cohort / "single" / "masks" / f"{name}.nii.gz", masks / f"{name}.nii.gz")
    result = run_bundle(
        BUNDLE, None, TINY, new_process=True, bundle_root=trained, masks=masks, output_dir=out,
        num_samples_per_mask=2, seed=0, num_inference_steps=2,
    )  # fmt: skip
    check(result)
    records = json.loads((out / "outputs.json").read_text())
    assert len(records) == 2 * len(list(masks.glob("*.nii.gz")))
    for record in records:
        image, mask = nib.load(record["t1ce"]), nib.load(record["mask"])
        assert image.shape == mask.shape == (32, 32, 32)
        source = nib.load(record["mask_source"])
        np.testing.assert_allclose(image.affine, source.affine, atol=1e-5)
        np.testing.assert_array_equal(np.asarray(mask.dataobj), np.asarray(source.dataobj))  # unedited mask
        data = image.get_fdata()
        assert np.isfinite(data).all() and data.min() >= 0 and data.max() <= 1
        assert Path(record["preview"]).is_file()
    assert (out / "preview.png").is_file()
    first, second = (nib.load(r["t1ce"]).get_fdata() for r in records[:2])
    assert not np.allclose(first, second), "two samples of one mask should differ"


def test_inference_with_edited_mask_saves_the_edited_mask(trained, tiny_cohort, tmp_path):
    manifest = json.loads((tiny_cohort / "manifest.json").read_text())
    mask_path = tiny_cohort / "single" / "masks" / f"{manifest['tumour_subjects'][0]}.nii.gz"
    out = tmp_path / "edited"
    check(
        run_bundle(
            BUNDLE, None, TINY, bundle_root=trained, masks=mask_path, output_dir=out, tumour_shift="[0,-2,0]",
            num_inference_steps=1,
        )
    )  # fmt: skip
    (record,) = json.loads((out / "outputs.json").read_text())
    original = np.asarray(nib.load(mask_path).dataobj)
    edited = np.asarray(nib.load(record["mask"]).dataobj)
    assert set(np.unique(edited)) == {0, 1, 2}
    shift = np.argwhere(edited == 2).mean(0) - np.argwhere(original == 2).mean(0)
    assert shift[1] == pytest.approx(-2, abs=0.5) and abs(shift[0]) < 0.5 and abs(shift[2]) < 0.5
    assert (original[edited == 2] > 0).all()  # the tumour stays inside the brain


def test_inference_never_overwrites_inputs(trained, tiny_cohort, tmp_path):
    masks = tmp_path / "masks"
    shutil.copytree(tiny_cohort / "single" / "masks", masks)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in masks.iterdir()}
    check(run_bundle(BUNDLE, None, TINY, bundle_root=trained, masks=masks, output_dir=masks, num_inference_steps=1))
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in masks.iterdir() if p.name in before}
    assert after == before


def test_inference_rejects_mask_with_unexpected_labels(trained, tiny_cohort, tmp_path):
    source = nib.load(next((tiny_cohort / "single" / "masks").glob("*.nii.gz")))
    labels = np.asarray(source.dataobj).copy()
    labels[10, 10, 10] = 7
    bad = tmp_path / "bad_mask.nii.gz"
    nib.save(nib.Nifti1Image(labels, source.affine), bad)
    result = run_bundle(BUNDLE, None, TINY, bundle_root=trained, masks=bad, output_dir=tmp_path / "o")
    assert result.returncode != 0
    assert "bad_mask.nii.gz: labels out of range [7" in result.stderr


def test_brats_override_trains_and_generates_four_modalities(tiny_cohort, tmp_path):
    configs = ["train.json", "brats_multimodal.json", "tiny_cpu.json"]
    check(
        run_bundle(
            BUNDLE, "training", configs, bundle_root=tmp_path, dataset_dir=tiny_cohort, max_iterations=2,
            spatial_size="[16,16,16]",  # generation is on the 32³ masks
        )
    )  # fmt: skip
    out = tmp_path / "generated"
    inference = ["inference.json", "brats_multimodal.json", "tiny_cpu.json"]
    check(
        run_bundle(
            BUNDLE, None, inference, bundle_root=tmp_path, dataset_dir=tiny_cohort, output_dir=out,
            num_inference_steps=1,
        )
    )  # fmt: skip
    records = json.loads((out / "outputs.json").read_text())
    assert records
    for record in records:
        shapes = {nib.load(record[name]).shape for name in ("t1", "t1ce", "t2", "flair")}
        assert shapes == {(32, 32, 32)}
        labels = set(np.unique(np.asarray(nib.load(record["mask"]).dataobj)))
        assert 4 in labels and labels <= {0, 1, 2, 3, 4}  # brain label added; BraTS 4 (ET) remapped to 3
