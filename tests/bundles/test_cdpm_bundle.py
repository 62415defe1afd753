"""Smoke tests of the cDPM bundle's inference through ``python -m monai.bundle run`` on a tiny demo cohort (32x32x16
volumes), with the weights trained by ``conftest.py`` (training itself: test_bundle_training.py)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import pytest
from conftest import check, check_generated_batch, run_bundle

BUNDLE = "cdpm_brain_mri"
TINY = ["inference.json", "tiny_cpu.json"]


@pytest.fixture(scope="module")
def trained(cdpm_trained) -> Path:
    """The bundle root trained 4 iterations, then resumed to 6 (``conftest.py``; checked by test_bundle_training)."""
    return cdpm_trained.root


def test_staged_inference_writes_full_volumes_with_affine_and_previews(trained, tmp_path):
    out = tmp_path / "generated"
    result = run_bundle(
        BUNDLE, None, TINY, new_process=True, bundle_root=trained, output_dir=out, num_volumes=3, batch_size=2,
        seed=0,
    )  # fmt: skip
    check(result)
    assert "stages" in result.stderr  # the progress bar over stages
    for volume in check_generated_batch(out, "cdpm", (32, 32, 16), (1.5, 1.5, 1.5)):
        assert (volume.reshape(-1, 16).std(0) > 0).all(), "a slice was never generated"
    assert not list(out.glob("*_mask.nii.gz"))


def test_inference_with_spread_conditions_runs(trained, tmp_path):
    out = tmp_path / "spread"
    check(
        run_bundle(
            BUNDLE, None, TINY, bundle_root=trained, output_dir=out, num_volumes=1, stage_size=3, condition_size=4,
            condition_mode="spread",
        )
    )  # fmt: skip
    assert nib.load(out / "cdpm_sample00_t1.nii.gz").shape == (32, 32, 16)


def test_inference_refuses_stages_larger_than_training_sets(trained, tmp_path):
    result = run_bundle(BUNDLE, None, TINY, bundle_root=trained, output_dir=tmp_path, stage_size=6, condition_size=6)
    assert result.returncode != 0
    assert "exceeds the 8 slices the model was trained on" in result.stderr


def test_evaluate_config_generates_first_then_evaluates(trained, tiny_cohort, tmp_path):
    result = run_bundle(
        BUNDLE, None, ["evaluate.json"], bundle_root=trained, dataset_dir=tiny_cohort,
        synthetic=tmp_path / "generated", output_dir=tmp_path / "metrics", generate_first=True,
        inference_configs="['inference.json','tiny_cpu.json']", inference_overrides="{'num_volumes': 2, 'seed': 0}",
        spatial_size="[32,32,16]", kernel_size=7, **{"evaluation#num_pairs": 1},
    )  # fmt: skip
    check(result)
    assert len(json.loads((tmp_path / "generated" / "outputs.json").read_text())) == 2
    metrics = json.loads((tmp_path / "metrics" / "metrics.json").read_text())
    assert metrics["counts"] == {"real": 4, "synthetic": 2}
    assert not any(entry["memorised"] for entry in metrics["memorisation"]["nearest_neighbours"])
