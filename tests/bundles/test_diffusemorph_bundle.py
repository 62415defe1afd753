"""Smoke tests of the DiffuseMorph bundle through ``python -m monai.bundle run`` on a tiny demo cohort (32x32x16).

Stage 1 trains registration, the export registers every training subject, stage 2 trains the field DDPM on the
exported fields (``conftest.py``; what the training stages write: test_bundle_training.py), and inference warps the
template (T1, GM, WM) with sampled fields.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import FIELD_DIFFUSION_CONFIGS, check, run_bundle

from common.data import load_template

BUNDLE = "diffusemorph_brain_mri"
TINY = "tiny_cpu.json"
SHAPE = (32, 32, 16)


@pytest.fixture(scope="module")
def pipeline(diffusemorph_trained) -> Path:
    """The bundle root: both stages (4 iterations, then resumed to 6), the field export in between (``conftest.py``;
    the training stages are checked by test_bundle_training)."""
    return diffusemorph_trained.root


def test_export_writes_fields_datalist_quality_and_trajectories(pipeline, tiny_cohort):
    out = pipeline / "outputs" / "registration"
    datalist = json.loads((out / "fields.json").read_text())
    assert datalist["unit"] == "voxel" and datalist["field_scale"] > 0
    training = json.loads((tiny_cohort / "datalist.json").read_text())["training"]
    assert len(datalist["training"]) == len(training) == 3
    template_affine = load_template(SHAPE).affine.numpy()
    largest = 0.0
    for item in datalist["training"]:
        image = nib.load(out / item["field"])
        assert image.shape == (*SHAPE, 3) and image.get_data_dtype() == np.float32
        assert b"voxels" in image.header["descrip"].tobytes()
        np.testing.assert_allclose(image.affine, template_affine)
        largest = max(largest, np.abs(image.get_fdata()).max())
    assert datalist["field_scale"] == pytest.approx(largest, rel=1e-5)
    quality = json.loads((out / "registration_quality.json").read_text())
    assert len(quality["subjects"]) == 3
    for key in ("ncc_before", "ncc_after", "ssim_before", "ssim_after", "psnr_before", "psnr_after"):
        assert f"{key}_mean" in quality["mean"]
    assert all(0 <= s["folding_fraction"] <= 1 and -1 <= s["ncc_after"] <= 1 for s in quality["subjects"])
    name = quality["subjects"][0]["subject"]
    assert (out / "warped" / f"{name}_warped_template.nii.gz").is_file() and (out / "warped" / f"{name}.png").is_file()
    trajectory = nib.load(out / "trajectory" / f"{name}_trajectory.nii.gz")
    assert trajectory.shape == (*SHAPE, 3) and (out / "trajectory" / f"{name}_trajectory.png").is_file()
    template = load_template(SHAPE)[0].numpy()
    np.testing.assert_allclose(trajectory.get_fdata()[..., 0], template, atol=1e-6)  # eta = 0: the template


def test_inference_writes_t1_and_tissue_maps_fields_and_folding(pipeline, tmp_path):
    out = tmp_path / "generated"
    result = check(
        run_bundle(
            BUNDLE, None, ["inference.json", TINY], new_process=True, bundle_root=pipeline, output_dir=out,
            num_volumes=3, batch_size=2, seed=0,
        )
    )  # fmt: skip
    assert "it/s" in result.stderr or "s/it" in result.stderr  # the progress bar over sampling steps
    records = json.loads((out / "outputs.json").read_text())
    assert [r["sample_index"] for r in records] == [0, 1, 2]
    affine = load_template(SHAPE).affine.numpy()
    for record in records:
        for channel in ("t1", "gm", "wm"):
            image = nib.load(record[channel])
            assert image.shape == SHAPE
            np.testing.assert_allclose(image.affine, affine)
            data = image.get_fdata()
            assert np.isfinite(data).all() and 0 <= data.min() and data.max() <= 1 and data.max() > 0
        assert record["preview"].endswith(f"diffusemorph_sample{record['sample_index']:02d}.png")
    folding = json.loads((out / "fields" / "folding.json").read_text())
    assert [f["sample_index"] for f in folding["fields"]] == [0, 1, 2]
    assert 0 <= folding["folding_fraction_mean"] <= 1
    field = nib.load(folding["fields"][0]["field"])
    assert field.shape == (*SHAPE, 3)
    scale = json.loads((pipeline / "outputs" / "registration" / "fields.json").read_text())["field_scale"]
    recorded = json.loads((pipeline / "models" / "field_scale.json").read_text())
    assert recorded == {"field_scale": scale, "unit": "voxel"}, "training records the scale inference reads"
    assert np.abs(field.get_fdata()).max() <= scale * (1 + 1e-5)  # samples clipped to [-1, 1] times the scale


def test_evaluate_config_generates_first_then_evaluates(pipeline, tiny_cohort, tmp_path):
    result = run_bundle(
        BUNDLE, None, ["evaluate.json"], bundle_root=pipeline, dataset_dir=tiny_cohort,
        synthetic=tmp_path / "generated", output_dir=tmp_path / "metrics", generate_first=True,
        inference_configs=f"['inference.json','{TINY}']", inference_overrides="{'num_volumes': 2, 'seed': 0}",
        spatial_size="[32,32,16]", kernel_size=7, **{"evaluation#num_pairs": 1},
    )  # fmt: skip
    check(result)
    metrics = json.loads((tmp_path / "metrics" / "metrics.json").read_text())
    assert metrics["counts"] == {"real": 4, "synthetic": 2}


def test_export_without_registration_weights_names_the_missing_file(tiny_cohort, tmp_path):
    result = run_bundle(
        BUNDLE, None, ["train_registration.json", "export_fields.json", TINY], bundle_root=tmp_path,
        dataset_dir=tiny_cohort,
    )  # fmt: skip
    assert result.returncode != 0
    assert f"{tmp_path}/models/model_registration.pt: no trained weights" in result.stderr


def test_field_training_without_exported_fields_names_the_missing_datalist(tmp_path):
    result = run_bundle(BUNDLE, "training", [*FIELD_DIFFUSION_CONFIGS, TINY], bundle_root=tmp_path)
    assert result.returncode != 0
    assert f"{tmp_path}/outputs/registration/fields.json: " in result.stderr and "not found" in result.stderr


def test_custom_template_file_is_used_and_a_missing_one_named(pipeline, tiny_cohort, tmp_path):
    missing = tmp_path / "no_template.nii.gz"
    result = run_bundle(
        BUNDLE, None, ["inference.json", TINY], bundle_root=pipeline, output_dir=tmp_path / "x",
        template_path=missing, channel_names="['t1']",
    )  # fmt: skip
    assert result.returncode != 0 and f"{missing}: template T1 file not found" in result.stderr
    subject = tmp_path / "subject_template.nii.gz"
    shutil.copyfile(tiny_cohort / "single" / "images" / "demo_000.nii.gz", subject)
    out = tmp_path / "own_template"
    check(
        run_bundle(
            BUNDLE, None, ["inference.json", TINY], bundle_root=pipeline, output_dir=out, num_volumes=1,
            template_path=subject, channel_names="['t1']",
        )
    )  # fmt: skip
    assert nib.load(out / "diffusemorph_sample00_t1.nii.gz").shape == SHAPE
