"""The Med-DDPM downstream segmentation config through ``python -m monai.bundle run`` on the tiny demo cohort."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import check, run_bundle

from common.data import load_datalist

BUNDLE = "med_ddpm_brain_mri"


def _fake_generated(cohort: Path, folder: Path) -> int:
    """Copies of the cohort's training pairs under the names and ``outputs.json`` an inference run writes."""
    folder.mkdir(parents=True)
    records = []
    for item in load_datalist(cohort / "datalist.json", "training"):
        stem = Path(item["label"]).name.removesuffix(".nii.gz")
        record = {"sample_index": 0}
        for key, source, suffix in (("t1ce", item["image"], "t1ce"), ("mask", item["label"], "mask")):
            record[key] = str(shutil.copy(source, folder / f"{stem}_sample00_{suffix}.nii.gz"))
        records.append(record)
    (folder / "outputs.json").write_text(json.dumps(records))
    return len(records)


def test_downstream_config_trains_three_settings_and_writes_metrics(tmp_path, tiny_cohort):
    num_generated = _fake_generated(tiny_cohort, tmp_path / "outputs")  # the config's default `synthetic`
    configs = ["downstream_segmentation.json", "downstream_tiny_cpu.json"]
    result = check(run_bundle(BUNDLE, None, configs, bundle_root=tmp_path, dataset_dir=tiny_cohort, max_iterations=3))
    report = json.loads((tmp_path / "eval" / "downstream" / "downstream_metrics.json").read_text())
    datalist = json.loads((tiny_cohort / "datalist.json").read_text())
    assert report["config"]["spatial_size"] == [32, 32, 32] and report["config"]["max_iterations"] == 3
    assert len(report["test"]["subjects"]) == len(datalist["validation"])
    num_real = len(datalist["training"])
    assert {name: r["train_size"] for name, r in report["settings"].items()} == {
        "real": {"real": num_real, "synthetic": 0},
        "synthetic": {"real": 0, "synthetic": num_generated},
        "real+synthetic": {"real": num_real, "synthetic": num_generated},
    }
    for setting in report["settings"].values():
        assert setting["iterations"] == 3
        assert setting["summary"]["dice"]["n"] == len(datalist["validation"])
    assert "real+synthetic" in result.stdout  # the summary table
