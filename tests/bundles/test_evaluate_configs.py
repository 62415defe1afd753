"""``configs/evaluate.json`` of both bundles end to end through ``python -m monai.bundle run`` on the tiny cohort."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import REPO, check, run_bundle


@pytest.mark.parametrize("bundle", ["med_ddpm_brain_mri", "cdpm_brain_mri", "medical_diffusion_brain_mri"])
def test_evaluate_config_writes_metrics_and_figure(bundle, tiny_cohort, tmp_path):
    synthetic = tmp_path / "outputs"  # the default synthetic folder under the bundle root
    synthetic.mkdir()
    for k, image in enumerate(sorted((tiny_cohort / "single" / "images").glob("*.nii.gz"))[:3]):
        shutil.copyfile(image, synthetic / f"generated_sample{k:02d}_t1.nii.gz")
    # tiny_cpu.json overrides network settings absent from evaluate.json, so only its volume size is taken
    tiny = json.loads((REPO / "bundles" / bundle / "configs" / "tiny_cpu.json").read_text())
    result = run_bundle(
        bundle, None, ["evaluate.json"], bundle_root=tmp_path, dataset_dir=tiny_cohort,
        spatial_size=json.dumps(tiny["spatial_size"]), kernel_size=7, c2st_epochs=2, **{"evaluation#num_pairs": 3},
    )  # fmt: skip
    check(result)
    metrics = json.loads((tmp_path / "eval" / "metrics" / "metrics.json").read_text())
    assert metrics["counts"] == {"real": 4, "synthetic": 3}
    assert metrics["settings"]["spatial_size"] == tiny["spatial_size"]
    assert all(entry["memorised"] for entry in metrics["memorisation"]["nearest_neighbours"])
    assert metrics["mmd"]["mmd"] >= 0 and "ms_ssim_abs_difference" in metrics["diversity"]
    assert metrics["c2st"]["num_per_set"] == 3 and metrics["c2st"]["num_epochs"] == 2
    assert metrics["background"]["head_mask"] == "real cohort background"  # copies of real images: no masks
    assert (tmp_path / "eval" / "metrics" / "evaluation.png").is_file()
    assert "loading real" in result.stderr  # the progress bar over volumes
