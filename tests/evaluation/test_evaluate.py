"""The evaluation runner on tiny 32³ volumes: metrics against copies and noise, pairs, FID weights, bad inputs."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from common.evaluation import RANDOM_WEIGHTS, evaluate, metric_table

SIZE = 32
FAST = {"kernel_size": 7, "num_pairs": 3, "verbose": False}  # MS-SSIM on 32³ needs a 7-voxel window


def _save(array: np.ndarray, path: Path) -> Path:
    nib.save(nib.Nifti1Image(array.astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0])), str(path))
    return path


def _snapshot(*folders: Path) -> dict[str, str]:
    """Name -> content hash of every file under ``folders``."""
    return {
        str(p): hashlib.md5(p.read_bytes()).hexdigest() for f in folders for p in sorted(f.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Four smooth 'brains' (a blob with a subject-specific texture) with masks and a datalist, and their copies."""
    root = tmp_path_factory.mktemp("eval_cohort")
    for folder in ("images", "masks", "copies"):
        (root / folder).mkdir()
    items = []
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, SIZE)] * 3, indexing="ij"))
    for k in range(4):
        rng = np.random.default_rng(k)
        brain = (np.sqrt((grid**2).sum(0)) < 0.8).astype(np.float32)
        image = brain * (0.5 + ndimage.gaussian_filter(rng.standard_normal((SIZE,) * 3), 2.0) * 3)
        _save(image, root / "images" / f"sub{k}.nii.gz")
        _save(brain, root / "masks" / f"sub{k}.nii.gz")
        shutil.copyfile(root / "images" / f"sub{k}.nii.gz", root / "copies" / f"gen{k}.nii.gz")
        items.append({"image": f"images/sub{k}.nii.gz", "label": f"masks/sub{k}.nii.gz"})
    (root / "datalist.json").write_text(json.dumps({"training": items[:3], "validation": items[3:]}))
    return root


def test_copies_of_the_real_set_are_memorised_and_match_its_distribution(cohort, tmp_path):
    before = _snapshot(cohort)
    out = tmp_path / "eval"
    results = evaluate(cohort / "datalist.json", cohort / "copies", out, **FAST)
    assert results["counts"] == {"real": 4, "synthetic": 4}
    assert results["diversity"]["ms_ssim_abs_difference"] == pytest.approx(0.0, abs=1e-6)
    assert results["mmd"]["mmd"] == pytest.approx(0.0, abs=1e-9)
    neighbours = results["memorisation"]["nearest_neighbours"]
    assert [(n["synthetic_file"], n["nearest_real_file"]) for n in neighbours] == [
        (f"gen{k}.nii.gz", f"sub{k}.nii.gz") for k in range(4)
    ]
    assert all(n["memorised"] for n in neighbours) and results["memorisation"]["num_memorised"] == 4
    assert "paired" not in results and "paired" in results["skipped"]  # no outputs.json: no pairs
    assert results["c2st"]["num_folds"] == 4 and results["c2st"]["ci_low"] <= 0.5  # copies: indistinguishable
    assert results["background"]["synthetic_mean"] == pytest.approx(results["background"]["real_mean"])
    assert json.loads((out / "metrics.json").read_text())["mmd"] == results["mmd"]
    with Image.open(out / "evaluation.png") as figure:
        assert figure.mode == "RGB" and figure.width >= 2 * 3 * 96  # real and synthetic views side by side
    assert _snapshot(cohort) == before, "the inputs were modified"


def test_noise_is_not_memorised_and_has_positive_mmd(cohort, tmp_path):
    noise = tmp_path / "noise"
    noise.mkdir()
    for k in range(3):
        _save(np.random.default_rng(10 + k).random((SIZE,) * 3), noise / f"noise{k}.nii.gz")
    _save(np.ones((SIZE,) * 3), noise / "noise0_mask.nii.gz")  # masks next to generated volumes are skipped
    results = evaluate(cohort / "images", noise, tmp_path / "eval", metrics="mmd,memorisation", **FAST)
    assert results["counts"] == {"real": 4, "synthetic": 3}
    assert results["mmd"]["mmd"] > 0
    assert results["memorisation"]["num_memorised"] == 0


def test_paired_metrics_come_from_the_writer_outputs_json(cohort, tmp_path):
    generated = tmp_path / "generated"
    generated.mkdir()
    records = []
    for k in (1, 3):  # generated from the masks of a training and a validation subject
        image = shutil.copyfile(cohort / "images" / f"sub{k}.nii.gz", generated / f"sub{k}_sample00_t1ce.nii.gz")
        mask = shutil.copyfile(cohort / "masks" / f"sub{k}.nii.gz", generated / f"sub{k}_sample00_mask.nii.gz")
        records.append(
            {"mask_source": str(cohort / "masks" / f"sub{k}.nii.gz"), "sample_index": 0, "t1ce": str(image),
             "mask": str(mask), "preview": str(generated / f"sub{k}_sample00.png")}
        )  # fmt: skip
    (generated / "outputs.json").write_text(json.dumps(records))
    results = evaluate(cohort / "datalist.json", generated, tmp_path / "eval", metrics=["paired"], **FAST)
    assert results["counts"]["synthetic"] == 2  # the images listed, not the masks
    paired = results["paired"]
    assert paired["num_pairs"] == 2 and paired["mse_mean"] == 0.0 and paired["ssim_mean"] == pytest.approx(1.0)
    assert [(p["synthetic_file"], p["real_file"]) for p in paired["pairs"]] == [
        ("sub1_sample00_t1ce.nii.gz", "sub1.nii.gz"),
        ("sub3_sample00_t1ce.nii.gz", "sub3.nii.gz"),
    ]


def test_fid_needs_weights_unless_random_networks_are_asked_for(cohort, tmp_path):
    with pytest.raises(FileNotFoundError, match="FID needs a pretrained feature network.*weights_path"):
        evaluate(cohort / "images", cohort / "copies", tmp_path / "eval", metrics=["fid"], **FAST)
    assert not (tmp_path / "eval").exists()
    results = evaluate(
        cohort / "images", cohort / "copies", tmp_path / "eval", metrics=["fid"], fid_weights=RANDOM_WEIGHTS,
        fid_kinds=["axial", "3d"], fid_depths={"resnet2d": 10}, **FAST,
    )  # fmt: skip
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())["fid"]
    assert written["meaningless"] is True and "meaningless" in written["note"]
    assert written["axial"] == pytest.approx(0.0, abs=1e-3) and written == results["fid"]  # copies: FID ~ 0


def test_bad_inputs_give_clear_errors(cohort, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty: no synthetic volumes found"):
        evaluate(cohort / "images", empty, tmp_path / "eval", **FAST)
    with pytest.raises(ValueError, match=r"unknown metric or FID kind \['fidd'\]; metrics: \['diversity'"):
        evaluate(cohort / "images", cohort / "copies", tmp_path / "eval", metrics=["fidd"], **FAST)
    four_d = tmp_path / "four_d"
    four_d.mkdir()
    _save(np.random.rand(SIZE, SIZE, SIZE, 2), four_d / "series.nii.gz")
    with pytest.raises(ValueError, match="series.nii.gz: expected 1 channel"):
        evaluate(cohort / "images", four_d, tmp_path / "eval", metrics=["mmd"], **FAST)
    single = tmp_path / "single"
    single.mkdir()
    shutil.copyfile(cohort / "copies" / "gen0.nii.gz", single / "gen0.nii.gz")
    results = evaluate(cohort / "images", single, tmp_path / "single_eval", metrics=["diversity", "mmd"], **FAST)
    assert results["skipped"] == dict.fromkeys(
        ("diversity", "mmd"), "needs at least 2 volumes per set, got {'synthetic': 1}"
    )
    assert "diversity" not in results and "mmd" not in results
    with pytest.raises(ValueError, match="holds input files"):
        evaluate(cohort / "images", cohort / "copies", cohort / "copies", **FAST)


def _head(size: int = 16) -> np.ndarray:
    """A Med-DDPM label map (size³): background 0, a cube of brain 1 holding a smaller cube of tumour 2."""
    labels = np.zeros((size,) * 3, np.uint8)
    labels[4:12, 4:12, 4:12] = 1
    labels[6:9, 6:9, 6:9] = 2
    return labels


def test_background_and_contrast_come_from_the_conditioning_masks(tmp_path):
    """Real: brain 0.4, tumour 0.8 (ratio 2), black background. Generated from the same masks: tumour 0.6 (ratio
    1.5) and a chequered haze of 0 and 0.4 outside the head, i.e. 0.2 / 0.6 = 1/3 of the volume's range."""
    labels = _head()
    for folder in ("images", "masks", "generated"):
        (tmp_path / folder).mkdir()
    real = 0.4 * (labels == 1) + 0.8 * (labels == 2)
    haze = 0.4 * (np.indices(labels.shape).sum(0) % 2) * (labels == 0)
    synthetic = 0.4 * (labels == 1) + 0.6 * (labels == 2) + haze
    items, records = [], []
    for k in range(2):
        _save(real, tmp_path / "images" / f"sub{k}.nii.gz")
        mask = _save(labels, tmp_path / "masks" / f"sub{k}.nii.gz")
        items.append({"image": f"images/sub{k}.nii.gz", "label": f"masks/sub{k}.nii.gz"})
        image = _save(synthetic, tmp_path / "generated" / f"sub{k}_sample00_image.nii.gz")
        written = shutil.copyfile(mask, tmp_path / "generated" / f"sub{k}_sample00_mask.nii.gz")
        records.append({"mask_source": str(mask), "sample_index": 0, "image": str(image), "mask": str(written)})
    (tmp_path / "datalist.json").write_text(json.dumps({"training": items}))
    (tmp_path / "generated" / "outputs.json").write_text(json.dumps(records))
    results = evaluate(
        tmp_path / "datalist.json", tmp_path / "generated", tmp_path / "eval", metrics="background,contrast", **FAST
    )
    background, contrast = results["background"], results["contrast"]
    assert background["head_mask"] == "conditioning masks" and background["real_mean"] == 0.0
    assert background["synthetic_mean"] == pytest.approx(1 / 3, abs=0.01) and len(background["volumes"]) == 2
    assert contrast["real_ratio"] == pytest.approx(2.0) and contrast["synthetic_ratio"] == pytest.approx(1.5)
    assert (
        contrast["ratio_difference"] == pytest.approx(-0.5) and contrast["num_synthetic"] == contrast["num_real"] == 2
    )
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["contrast"] == contrast


def test_c2st_and_background_of_unconditional_volumes(tmp_path):
    """Without masks, the background is the real cohort's; C2ST tells noise from real volumes."""
    labels = _head()
    for folder in ("real", "noise"):
        (tmp_path / folder).mkdir()
    for k in range(6):
        rng = np.random.default_rng(k)
        _save((labels > 0) * (0.5 + 0.1 * rng.random(labels.shape)), tmp_path / "real" / f"sub{k}.nii.gz")
        _save(rng.random(labels.shape), tmp_path / "noise" / f"noise{k}.nii.gz")
    results = evaluate(
        tmp_path / "real", tmp_path / "noise", tmp_path / "eval", metrics=["c2st", "background", "contrast"],
        c2st_folds=3, c2st_epochs=10, **FAST,
    )  # fmt: skip
    assert results["background"]["head_mask"] == "real cohort background"
    assert results["background"]["num_cohort_background_voxels"] == 16**3 - 8**3
    assert results["background"]["real_mean"] == 0.0 and results["background"]["synthetic_mean"] > 0.4
    c2st = results["c2st"]
    assert c2st["num_per_set"] == 6 and c2st["num_folds"] == 3 and c2st["input_size"] == [16, 16, 16]
    assert c2st["accuracy"] > 0.9 and c2st["ci_low"] <= c2st["accuracy"] <= c2st["ci_high"]
    assert "contrast" not in results and "conditioning mask" in results["skipped"]["contrast"]
    assert f"c2st.accuracy: {c2st['accuracy']:.4g}" in metric_table(results)
