from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from monai.data import load_decathlon_datalist

from common.data.demo_cohort import DEMO_WARNING, build_demo_cohort
from common.data.template import load_mni152

SIZE, NUM_SUBJECTS = 32, 4


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return build_demo_cohort(tmp_path_factory.mktemp("first"), num_subjects=NUM_SUBJECTS, size=SIZE, seed=0)


@pytest.fixture(scope="module")
def manifest(cohort):
    return json.loads((cohort / "manifest.json").read_text())


def _volumes(cohort):
    """Relative path -> data array of every NIfTI file of a cohort."""
    return {
        path.relative_to(cohort).as_posix(): np.asanyarray(nib.load(path).dataobj)
        for path in sorted(cohort.rglob("*.nii.gz"))
    }


def test_layout_readme_and_manifest(cohort, manifest):
    assert cohort.name == "demo_s32_n4_seed0_t0.5"
    assert sorted(path.name for path in cohort.parent.iterdir()) == [cohort.name]  # no staging folder left
    for index in range(NUM_SUBJECTS):
        assert (cohort / "single" / "images" / f"demo_{index:03d}.nii.gz").is_file()
        assert (cohort / "single" / "masks" / f"demo_{index:03d}.nii.gz").is_file()
        for suffix in ("t1", "t1ce", "t2", "flair", "seg"):
            assert (cohort / "brats" / f"Demo_{index:03d}" / f"Demo_{index:03d}_{suffix}.nii.gz").is_file()
    readme = (cohort / "README_DEMO_DATA.txt").read_text()
    assert "NOT research data" in readme and "nilearn" in readme and "Louis Collins" in readme
    assert manifest["warning"] == DEMO_WARNING
    assert manifest["parameters"] == {"num_subjects": 4, "size": 32, "seed": 0, "tumour_fraction": 0.5}
    assert len(manifest["tumour_subjects"]) == 2


def test_labels(cohort, manifest):
    tumour_ids = set(manifest["tumour_subjects"])
    for subject in manifest["subjects"]:
        mask = np.asanyarray(nib.load(cohort / "single" / "masks" / f"{subject['id']}.nii.gz").dataobj)
        case = subject["brats_id"]
        seg = np.asanyarray(nib.load(cohort / "brats" / case / f"{case}_seg.nii.gz").dataobj)
        assert mask.dtype == seg.dtype == np.uint8
        assert set(np.unique(mask).tolist()) <= {0, 1, 2}
        assert set(np.unique(seg).tolist()) <= {0, 1, 2, 4}
        assert (mask > 0)[seg > 0].all()  # the whole lesion, oedema included, lies inside the brain
        np.testing.assert_array_equal(mask == 2, np.isin(seg, (1, 4)))
        if subject["id"] in tumour_ids:
            assert subject["tumour"] and (mask == 2).any() and {1, 2, 4} <= set(np.unique(seg).tolist())
        else:
            assert not subject["tumour"] and not (mask == 2).any() and not seg.any()


def test_images_affines_and_dtypes(cohort):
    affine = load_mni152(SIZE).affine
    for path in cohort.rglob("*.nii.gz"):
        image = nib.load(path)
        assert image.shape == (SIZE, SIZE, SIZE)
        np.testing.assert_allclose(image.affine, affine, atol=1e-6)
        is_label = "masks" in path.parts or path.name.endswith("_seg.nii.gz")
        assert image.get_data_dtype() == (np.uint8 if is_label else np.float32)
    single = nib.load(cohort / "single" / "images" / "demo_000.nii.gz").get_fdata()
    t1ce = nib.load(cohort / "brats" / "Demo_000" / "Demo_000_t1ce.nii.gz").get_fdata()
    np.testing.assert_array_equal(single, t1ce)


def test_background_is_zero_and_contrasts_differ(cohort):
    mask = np.asanyarray(nib.load(cohort / "single" / "masks" / "demo_000.nii.gz").dataobj)
    case = cohort / "brats" / "Demo_000"
    t1, t2 = (nib.load(case / f"Demo_000_{name}.nii.gz").get_fdata() for name in ("t1", "t2"))
    assert not t1[mask == 0].any() and not t2[mask == 0].any()
    brain = mask > 0
    assert np.corrcoef(t1[brain], t2[brain])[0, 1] < 0  # WM bright / CSF dark in T1, the reverse in T2


@pytest.mark.parametrize("name", ["datalist.json", "datalist_brats.json"])
def test_datalists_load_with_monai(cohort, name):
    training = load_decathlon_datalist(cohort / name, data_list_key="training")
    validation = load_decathlon_datalist(cohort / name, data_list_key="validation")
    assert len(training) + len(validation) == NUM_SUBJECTS and len(validation) >= 1
    for item in training + validation:
        images = item["image"] if isinstance(item["image"], list) else [item["image"]]
        assert len(images) == (4 if name == "datalist_brats.json" else 1)
        for path in [*images, item["label"]]:
            assert (cohort / path).is_file() and str(cohort) in path
    if name == "datalist_brats.json":
        assert [path.rsplit("_", 1)[1] for path in training[0]["image"]] == [
            "t1.nii.gz",
            "t1ce.nii.gz",
            "t2.nii.gz",
            "flair.nii.gz",
        ]


def test_cache_hit_does_not_rewrite(cohort):
    files = [cohort / "manifest.json", cohort / "single" / "images" / "demo_000.nii.gz"]
    before = [path.stat().st_mtime_ns for path in files]
    assert build_demo_cohort(cohort.parent, num_subjects=NUM_SUBJECTS, size=SIZE, seed=0) == cohort
    assert [path.stat().st_mtime_ns for path in files] == before


def test_deterministic_by_seed(cohort, tmp_path):
    same = build_demo_cohort(tmp_path / "same", num_subjects=NUM_SUBJECTS, size=SIZE, seed=0)
    other = build_demo_cohort(tmp_path / "other", num_subjects=NUM_SUBJECTS, size=SIZE, seed=1)
    reference, repeated, different = _volumes(cohort), _volumes(same), _volumes(other)
    assert repeated.keys() == reference.keys() == different.keys()
    for key, array in reference.items():
        np.testing.assert_array_equal(repeated[key], array)
    assert not np.array_equal(different["single/images/demo_000.nii.gz"], reference["single/images/demo_000.nii.gz"])
    assert json.loads((same / "datalist.json").read_text()) == json.loads((cohort / "datalist.json").read_text())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_subjects": 0}, "num_subjects"),
        ({"size": 4}, "size"),
        ({"seed": -1}, "seed"),
        ({"tumour_fraction": 1.5}, "tumour_fraction"),
    ],
)
def test_rejects_invalid_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_demo_cohort(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())
