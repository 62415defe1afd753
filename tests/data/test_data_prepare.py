from __future__ import annotations

import hashlib
import json

import nibabel as nib
import numpy as np
import pytest
from monai.data import load_decathlon_datalist

from common.data.prepare import (
    DatasetValidationError,
    prepare_brats,
    prepare_images,
    prepare_paired,
    validate_volume,
)

SHAPE = (8, 8, 8)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
CASES = ("case_a", "case_b", "case_c", "case_d")


def _write(path, data, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), affine), path)
    return path


def _image(seed=0, shape=SHAPE):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _mask(labels=(0, 1, 2), shape=SHAPE):
    return np.resize(np.array(labels, dtype=np.uint8), shape)


def _hashes(folder):
    return {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture
def paired(tmp_path):
    """``tmp_path/data/{images,masks}`` with one valid image/mask pair per case."""
    for i, case in enumerate(CASES):
        _write(tmp_path / "data" / "images" / f"{case}.nii.gz", _image(i))
        _write(tmp_path / "data" / "masks" / f"{case}.nii.gz", _mask())
    return tmp_path / "data"


@pytest.fixture
def brats(tmp_path):
    """``tmp_path/brats/<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz`` for each case."""
    for i, case in enumerate(CASES):
        for j, modality in enumerate(("t1", "t1ce", "t2", "flair")):
            _write(tmp_path / "brats" / case / f"{case}_{modality}.nii.gz", _image(10 * i + j))
        _write(tmp_path / "brats" / case / f"{case}_seg.nii.gz", _mask((0, 1, 2, 4)))
    return tmp_path / "brats"


def _prepare_paired(folder, name="datalist.json", **kwargs):
    return prepare_paired(folder / "images", folder / "masks", folder.parent / "lists" / name, **kwargs)


def test_paired_datalist_loads_with_monai(paired):
    output = _prepare_paired(paired, val_fraction=0.25)
    assert output == (paired.parent / "lists" / "datalist.json").resolve()
    raw = json.loads(output.read_text())
    assert raw["training"][0] == {"image": "../data/images/case_a.nii.gz", "label": "../data/masks/case_a.nii.gz"}
    training = load_decathlon_datalist(output, data_list_key="training")
    validation = load_decathlon_datalist(output, data_list_key="validation")
    assert len(training) == 3 and len(validation) == 1
    for item in training + validation:
        assert set(item) == {"image", "label"}
        assert item["image"].endswith(".nii.gz") and nib.load(item["image"]).shape == SHAPE
        assert item["label"].replace("masks", "images") == item["image"]


def test_split_is_seeded_and_sorted(paired):
    first = json.loads(_prepare_paired(paired, "a.json", seed=3, val_fraction=0.5).read_text())
    second = json.loads(_prepare_paired(paired, "b.json", seed=3, val_fraction=0.5).read_text())
    assert first["training"] == second["training"] and first["validation"] == second["validation"]
    assert len(first["validation"]) == 2
    assert first["training"] == sorted(first["training"], key=lambda item: item["image"])
    no_validation = json.loads(_prepare_paired(paired, "c.json", val_fraction=0).read_text())
    assert len(no_validation["training"]) == 4 and no_validation["validation"] == []
    at_least_one = json.loads(_prepare_paired(paired, "d.json", val_fraction=0.1).read_text())
    assert len(at_least_one["validation"]) == 1


@pytest.mark.parametrize("suffix", ["_mask", "_seg", "_label"])
def test_mask_name_suffixes(paired, suffix):
    mask = paired / "masks" / "case_b.nii.gz"
    mask.rename(mask.with_name(f"case_b{suffix}.nii.gz"))
    datalist = json.loads(_prepare_paired(paired, val_fraction=0).read_text())
    assert datalist["training"][1]["label"] == f"../data/masks/case_b{suffix}.nii.gz"


def test_images_only_datalist(paired, tmp_path):
    (paired / "images" / "._case_a.nii.gz").write_bytes(b"macOS metadata")  # hidden and non-NIfTI files are ignored
    (paired / "images" / "notes.txt").write_text("not an image")
    output = prepare_images(paired / "images", tmp_path / "images.json", val_fraction=0.25)
    items = load_decathlon_datalist(output, data_list_key="training")
    items += load_decathlon_datalist(output, data_list_key="validation")
    assert sorted(item["image"] for item in items) == [str(paired / "images" / f"{case}.nii.gz") for case in CASES]
    assert all(set(item) == {"image"} for item in items)


def test_brats_datalist(brats):
    output = prepare_brats(brats, brats / "datalist.json", val_fraction=0.25)
    raw = json.loads(output.read_text())
    assert raw["training"][0] == {
        "image": [f"case_a/case_a_{modality}.nii.gz" for modality in ("t1", "t1ce", "t2", "flair")],
        "label": "case_a/case_a_seg.nii.gz",
    }
    items = load_decathlon_datalist(output, data_list_key="validation")
    assert len(items) == 1 and len(items[0]["image"]) == 4
    assert all(nib.load(path).shape == SHAPE for path in [*items[0]["image"], items[0]["label"]])


def _garbage(paired):
    (paired / "images" / "case_b.nii.gz").write_bytes(b"this is not a NIfTI file")


def _four_d(paired):
    _write(paired / "images" / "case_b.nii.gz", _image(shape=(*SHAPE, 2)))


def _nan(paired):
    data = _image()
    data[1, 2, 3] = np.nan
    _write(paired / "images" / "case_b.nii.gz", data)


def _bad_labels(paired):
    _write(paired / "masks" / "case_b.nii.gz", _mask((0, 1, 3, 7)))


def _fractional_labels(paired):
    _write(paired / "masks" / "case_b.nii.gz", _mask((0, 1)).astype(np.float32) * 0.5)


def _shape_mismatch(paired):
    _write(paired / "masks" / "case_b.nii.gz", _mask(shape=(8, 8, 6)))


def _affine_mismatch(paired):
    _write(paired / "masks" / "case_b.nii.gz", _mask(), affine=np.diag([2.0, 2.0, 2.5, 1.0]))


def _constant_image(paired):
    _write(paired / "images" / "case_b.nii.gz", np.zeros(SHAPE, np.float32))


def _empty_mask(paired):
    _write(paired / "masks" / "case_b.nii.gz", np.zeros(SHAPE, np.uint8))


def _missing_mask(paired):
    (paired / "masks" / "case_b.nii.gz").unlink()


def _orphan_mask(paired):
    (paired / "images" / "case_b.nii.gz").unlink()


@pytest.mark.parametrize(
    ("corrupt", "name", "words"),
    [
        (_garbage, "images/case_b.nii.gz", "unreadable"),
        (_four_d, "images/case_b.nii.gz", "4D volume of shape (8, 8, 8, 2)"),
        (_nan, "images/case_b.nii.gz", "1 NaN"),
        (_bad_labels, "masks/case_b.nii.gz", "unexpected labels [3, 7]; allowed [0, 1, 2]"),
        (_fractional_labels, "masks/case_b.nii.gz", "non-integer label values [0.5]"),
        (_shape_mismatch, "masks/case_b.nii.gz", "shape (8, 8, 6) does not match"),
        (_affine_mismatch, "masks/case_b.nii.gz", "affine does not match"),
        (_constant_image, "images/case_b.nii.gz", "constant volume (every voxel is 0)"),
        (_empty_mask, "masks/case_b.nii.gz", "empty label map (every voxel is 0)"),
        (_missing_mask, "images/case_b.nii.gz", "no matching mask"),
        (_orphan_mask, "masks/case_b.nii.gz", "no matching image"),
    ],
)
def test_each_problem_is_reported(paired, corrupt, name, words):
    corrupt(paired)
    before = _hashes(paired)
    with pytest.raises(DatasetValidationError) as caught:
        _prepare_paired(paired)
    assert len(caught.value.problems) == 1
    problem = caught.value.problems[0]
    assert problem.startswith(f"{paired / name}: ") and words in problem
    assert problem in str(caught.value)
    assert _hashes(paired) == before
    assert not (paired.parent / "lists").exists()


def test_all_problems_are_reported_together(paired):
    _nan(paired)
    _write(paired / "masks" / "case_c.nii.gz", _mask((0, 5)))
    (paired / "masks" / "case_d.nii.gz").unlink()
    with pytest.raises(DatasetValidationError) as caught:
        _prepare_paired(paired)
    lines = str(caught.value).splitlines()[1:]
    assert len(lines) == 3
    assert any("case_b.nii.gz" in line and "NaN" in line for line in lines)
    assert any("case_c.nii.gz" in line and "unexpected labels [5]" in line for line in lines)
    assert any("case_d.nii.gz" in line and "no matching mask" in line for line in lines)


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetValidationError) as caught:
        prepare_paired(tmp_path / "images", tmp_path / "masks", tmp_path / "datalist.json")
    assert caught.value.problems == [
        f"{tmp_path / 'images'}: empty folder (no .nii.gz or .nii files)",
        f"{tmp_path / 'masks'}: folder does not exist",
    ]


def test_brats_missing_modality_and_label_4_check(brats):
    (brats / "case_b" / "case_b_t2.nii.gz").unlink()
    with pytest.raises(DatasetValidationError) as caught:
        prepare_brats(brats, brats / "datalist.json", allowed_labels=(0, 1, 2, 3))
    problems = "\n".join(caught.value.problems)
    assert f"{brats / 'case_b'}: missing case_b_t2.nii.gz" in problems
    assert problems.count("unexpected labels [4]; allowed [0, 1, 2, 3]") == len(CASES)


def test_brats_accepts_an_empty_segmentation(brats):
    _write(brats / "case_b" / "case_b_seg.nii.gz", np.zeros(SHAPE, np.uint8))  # a case without tumour
    assert prepare_brats(brats, brats / "datalist.json").is_file()


def test_inputs_unchanged_and_overwrite_refused(paired):
    before = _hashes(paired)
    output = _prepare_paired(paired)
    assert _hashes(paired) == before
    content = output.read_text()
    with pytest.raises(FileExistsError, match="--overwrite True"):
        _prepare_paired(paired, seed=1)
    assert output.read_text() == content
    assert _prepare_paired(paired, seed=1, overwrite=True) == output


def test_invalid_val_fraction_is_refused_before_reading(paired):
    _garbage(paired)
    with pytest.raises(ValueError, match="val_fraction"):
        _prepare_paired(paired, val_fraction=1.0)


def test_output_equal_to_an_input_is_refused(paired):
    before = _hashes(paired)
    with pytest.raises(ValueError, match="input files"):
        prepare_paired(paired / "images", paired / "masks", paired / "masks" / "case_a.nii.gz", overwrite=True)
    assert _hashes(paired) == before


def test_validate_volume(tmp_path):
    assert validate_volume(_write(tmp_path / "ok.nii.gz", _image()), is_label=False) == []
    assert validate_volume(_write(tmp_path / "singleton.nii.gz", _mask(shape=(*SHAPE, 1))), is_label=True) == []
    inf = _image()
    inf[0, 0, 0] = np.inf
    assert validate_volume(_write(tmp_path / "inf.nii.gz", inf), is_label=False) == [
        f"{tmp_path / 'inf.nii.gz'}: contains non-finite values (0 NaN, 1 Inf)"
    ]
    constant = _write(tmp_path / "constant.nii.gz", np.full(SHAPE, 2.5, np.float32))
    assert validate_volume(constant, is_label=False) == [
        f"{constant}: constant volume (every voxel is 2.5): an empty or failed export?"
    ]
    assert validate_volume(_write(tmp_path / "one_label.nii.gz", np.ones(SHAPE, np.uint8)), is_label=True) == []
    labels = _write(tmp_path / "labels.nii.gz", _mask((0, 9)))
    assert validate_volume(labels, is_label=True) == []
    assert validate_volume(labels, is_label=True, allowed_labels=(0, 1)) == [
        f"{labels}: unexpected labels [9]; allowed [0, 1]"
    ]
