"""Tests of the downstream tumour-segmentation experiment on tiny volumes with a bright cube as the tumour."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from common.evaluation import SegmentationScores, downstream_segmentation, summarise, synthetic_items

SIZE = 16
TINY_NET = {"channels": (4, 8), "strides": (2,), "num_res_units": 0}


def _write(path: Path, array: np.ndarray) -> str:
    nib.save(nib.Nifti1Image(array, np.eye(4)), path)
    return str(path)


def _subject(folder: Path, name: str, rng: np.random.Generator, tumour: bool) -> dict[str, str]:
    """A 16³ head (label 1) with a bright 5³ cube (label 2) at a random place, or none."""
    image = rng.normal(0.2, 0.05, (SIZE,) * 3).astype(np.float32)
    label = np.zeros((SIZE,) * 3, np.uint8)
    label[2:-2, 2:-2, 2:-2] = 1
    image[2:-2, 2:-2, 2:-2] += 0.3
    if tumour:
        x, y, z = rng.integers(3, SIZE - 8, 3)
        label[x : x + 5, y : y + 5, z : z + 5] = 2
        image[x : x + 5, y : y + 5, z : z + 5] = 1.0
    return {"image": _write(folder / f"{name}.nii.gz", image), "label": _write(folder / f"{name}_mask.nii.gz", label)}


@pytest.fixture
def cohort(tmp_path) -> dict:
    """6 real subjects (training: 4, test: 2, one of them tumour-free) and 3 "generated" ones with outputs.json."""
    rng = np.random.default_rng(0)
    real = [_subject(tmp_path, f"real{i}", rng, tumour=i != 5) for i in range(6)]
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": real[:4], "validation": real[4:], "empty": []}))
    generated = tmp_path / "outputs"
    generated.mkdir()
    items = [_subject(generated, f"gen{i}", rng, tumour=True) for i in range(3)]
    records = [{"t1ce": item["image"], "mask": item["label"], "sample_index": 0} for item in items]
    (generated / "outputs.json").write_text(json.dumps(records))
    return {"root": tmp_path, "datalist": datalist, "synthetic": generated, "real": real}


def _one_hot(tumour: torch.Tensor) -> torch.Tensor:
    """(B, X, Y, Z) binary -> (B, 2, X, Y, Z) one-hot."""
    return torch.stack([1 - tumour, tumour], dim=1).float()


def test_scores_of_hand_made_predictions():
    label = torch.zeros(4, 8, 8, 8)
    label[:2, :4, :4, :4] = 1  # 64 tumour voxels in subjects 0 and 1; subjects 2 and 3 are tumour-free
    pred = label.clone()  # subject 0: perfect
    pred[1, 2:4] = 0  # subject 1: the half x < 2 of the cube, 32 voxels, all inside
    pred[3, :2, :2, :2] = 1  # subject 3: 8 false positive voxels; subject 2: correctly empty
    scores = SegmentationScores()
    scores.update(_one_hot(pred[:2]), _one_hot(label[:2]))  # two batches, as an evaluator would give them
    scores.update(_one_hot(pred[2:]), _one_hot(label[2:]))
    result = scores.per_subject()
    assert result["dice"] == pytest.approx([1.0, 2 * 32 / (64 + 32), 1.0, 0.0])
    assert result["iou"] == pytest.approx([1.0, 32 / 64, 1.0, 0.0])
    assert result["recall"][:2] == pytest.approx([1.0, 0.5]) and result["recall"][2:] == [None, None]
    assert result["precision"][:2] == pytest.approx([1.0, 1.0]) and result["precision"][2] is None
    assert result["precision"][3] == 0.0


def test_summarise_skips_undefined_values_and_uses_population_sd():
    assert summarise([1.0, None, 0.0]) == {"mean": 0.5, "sd": 0.5, "n": 2}
    assert summarise([None]) == {"mean": None, "sd": None, "n": 0}


def test_all_settings_write_metrics_with_mean_and_sd_deterministically(cohort):
    out = cohort["root"] / "downstream"
    report = downstream_segmentation(
        cohort["datalist"], cohort["datalist"], cohort["synthetic"], out, spatial_size=(SIZE,) * 3,
        max_iterations=2, batch_size=2, network_args=TINY_NET, device="cpu",
    )  # fmt: skip
    assert json.loads((out / "downstream_metrics.json").read_text()) == report
    assert list(report["settings"]) == ["real", "synthetic", "real+synthetic"]
    assert report["test"]["tumour_free"] == 1 and len(report["test"]["subjects"]) == 2
    sizes = [result["train_size"] for result in report["settings"].values()]
    assert sizes == [{"real": 4, "synthetic": 0}, {"real": 0, "synthetic": 3}, {"real": 4, "synthetic": 3}]
    for setting, result in report["settings"].items():
        assert result["iterations"] == 2
        assert (out / f"model_{setting.replace('+', '_')}.pt").is_file()
        for metric in ("dice", "iou", "recall", "precision"):
            assert len(result["per_subject"][metric]) == 2
            assert set(result["summary"][metric]) == {"mean", "sd", "n"}
        assert result["summary"]["dice"]["n"] == 2 and result["summary"]["recall"]["n"] == 1
    again = downstream_segmentation(
        cohort["datalist"], cohort["datalist"], None, out, spatial_size=(SIZE,) * 3, settings=["real"],
        max_iterations=2, batch_size=2, network_args=TINY_NET, device="cpu",
    )  # fmt: skip
    assert again["settings"]["real"] == report["settings"]["real"]  # seeded: the same scores


def test_bright_cube_is_learnt(cohort):
    report = downstream_segmentation(
        cohort["datalist"], cohort["real"][4:5], None, cohort["root"] / "learn", spatial_size=(SIZE,) * 3,
        settings=["real"], max_iterations=15, batch_size=2, learning_rate=3e-2,
        network_args={"channels": (8, 16), "strides": (2,), "num_res_units": 0}, device="cpu", save_models=False,
    )  # fmt: skip
    assert report["settings"]["real"]["per_subject"]["dice"][0] > 0.5  # 0.72 when written


def test_bad_inputs_raise_clear_errors(cohort, tmp_path):
    def run(real_train=cohort["datalist"], synthetic=cohort["synthetic"], **kwargs):
        return downstream_segmentation(real_train, cohort["datalist"], synthetic, tmp_path / "out", **kwargs)

    with pytest.raises(ValueError, match="real_train: no subjects"):
        run(real_train_sections="empty")
    with pytest.raises(ValueError, match="settings must be"):
        run(settings=["real", "fake"])
    with pytest.raises(ValueError, match="need synthetic data"):
        run(synthetic=None)
    with pytest.raises(FileNotFoundError, match="outputs.json"):
        run(synthetic=tmp_path / "nowhere")
    missing = [{"image": str(tmp_path / "missing.nii.gz"), "label": cohort["real"][0]["label"]}]
    with pytest.raises(FileNotFoundError, match="real_train: image file .*missing.nii.gz does not exist"):
        run(real_train=missing)
    small = _write(tmp_path / "small.nii.gz", np.zeros((8, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        run(real_train=[{"image": cohort["real"][0]["image"], "label": small}])
    records = json.loads((cohort["synthetic"] / "outputs.json").read_text())
    (cohort["synthetic"] / "outputs.json").write_text(json.dumps([{"t1ce": r["t1ce"]} for r in records]))
    with pytest.raises(ValueError, match="lacks 't1ce' or 'mask'"):
        synthetic_items(cohort["synthetic"])
