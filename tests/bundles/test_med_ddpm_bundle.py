"""Smoke tests of the Med-DDPM bundle through ``python -m monai.bundle run`` on a tiny demo cohort."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import check, run_bundle, train_then_resume

BUNDLE = "med_ddpm_brain_mri"
TINY = ["train.json", "tiny_cpu.json"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_cohort) -> dict:
    """Train 4 iterations, then resume to 6: returns the bundle root and both runs' outputs."""
    return train_then_resume(BUNDLE, TINY, tmp_path_factory.mktemp("med_ddpm"), tiny_cohort)


def test_training_writes_checkpoints_weights_logs_and_previews(trained):
    root = trained["root"]
    assert trained["checkpoints_after_first"] == ["checkpoint_2.pt", "checkpoint_4.pt"]
    assert (root / "models" / "model.pt").is_file()
    assert list((root / "eval").glob("events.out.tfevents.*")), "no TensorBoard log"
    assert sorted(p.name for p in (root / "eval" / "previews").glob("*.png"))[:2] == [
        "iteration_0000002.png",
        "iteration_0000004.png",
    ]
    weights = torch.load(root / "models" / "model.pt", weights_only=True)
    assert "conv_in.conv.weight" in weights  # a plain state dict of the U-Net (the EMA weights)


def test_second_run_resumes_iteration_count(trained):
    root = trained["root"]
    log = trained["second"].stdout + trained["second"].stderr
    assert "resumed from" in log and "checkpoint_4.pt at iteration 4" in log
    assert sorted(p.name for p in (root / "models").glob("checkpoint_*.pt")) == ["checkpoint_4.pt", "checkpoint_6.pt"]
    state = torch.load(root / "models" / "checkpoint_6.pt", weights_only=True)
    assert state["trainer"]["iteration"] == 6
    assert set(state) == {"network", "ema", "optimizer", "lr_scheduler", "trainer"}
    assert state["lr_scheduler"]["last_epoch"] == 6  # the LR schedule is stepped per iteration and restored


def _mask_affine(cohort: Path, name: str) -> np.ndarray:
    return nib.load(cohort / "single" / "masks" / f"{name}.nii.gz").affine


def test_inference_writes_pairs_with_mask_affine_and_previews(trained, tiny_cohort, tmp_path):
    out = tmp_path / "generated"
    masks = tiny_cohort / "single" / "masks"
    result = run_bundle(
        BUNDLE, None, ["inference.json", "tiny_cpu.json"], bundle_root=trained["root"], masks=masks,
        output_dir=out, num_samples_per_mask=2, seed=0,
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
            BUNDLE, None, ["inference.json", "tiny_cpu.json"], bundle_root=trained["root"], masks=mask_path,
            output_dir=out, tumour_shift="[0,-2,0]",
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
    check(
        run_bundle(
            BUNDLE,
            None,
            ["inference.json", "tiny_cpu.json"],
            bundle_root=trained["root"],
            masks=masks,
            output_dir=masks,
        )
    )
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in masks.iterdir() if p.name in before}
    assert after == before


def test_inference_without_weights_names_the_missing_file(tiny_cohort, tmp_path):
    result = run_bundle(
        BUNDLE, None, ["inference.json", "tiny_cpu.json"], bundle_root=tmp_path, dataset_dir=tiny_cohort
    )
    assert result.returncode != 0
    assert f"{tmp_path}/models/model.pt" in result.stderr


def test_inference_rejects_mask_with_unexpected_labels(trained, tiny_cohort, tmp_path):
    source = nib.load(next((tiny_cohort / "single" / "masks").glob("*.nii.gz")))
    labels = np.asarray(source.dataobj).copy()
    labels[10, 10, 10] = 7
    bad = tmp_path / "bad_mask.nii.gz"
    nib.save(nib.Nifti1Image(labels, source.affine), bad)
    result = run_bundle(
        BUNDLE,
        None,
        ["inference.json", "tiny_cpu.json"],
        bundle_root=trained["root"],
        masks=bad,
        output_dir=tmp_path / "o",
    )
    assert result.returncode != 0
    assert "bad_mask.nii.gz: labels out of range [7" in result.stderr


def test_brats_override_trains_and_generates_four_modalities(tiny_cohort, tmp_path):
    configs = ["train.json", "brats_multimodal.json", "tiny_cpu.json"]
    check(run_bundle(BUNDLE, "training", configs, bundle_root=tmp_path, dataset_dir=tiny_cohort, max_iterations=2))
    out = tmp_path / "generated"
    inference = ["inference.json", "brats_multimodal.json", "tiny_cpu.json"]
    check(run_bundle(BUNDLE, None, inference, bundle_root=tmp_path, dataset_dir=tiny_cohort, output_dir=out))
    records = json.loads((out / "outputs.json").read_text())
    assert records
    for record in records:
        shapes = {nib.load(record[name]).shape for name in ("t1", "t1ce", "t2", "flair")}
        assert shapes == {(32, 32, 32)}
        labels = set(np.unique(np.asarray(nib.load(record["mask"]).dataobj)))
        assert 4 in labels and labels <= {0, 1, 2, 3, 4}  # brain label added; BraTS 4 (ET) remapped to 3
