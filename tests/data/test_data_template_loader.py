import json

import nibabel as nib
import numpy as np
import pytest
import torch

from common.data import (
    FIELD_DESCRIPTION,
    load_field_scale,
    load_mni152,
    load_template,
    record_field_scale,
    save_field,
    write_fields_datalist,
)
from common.errors import InputError


def test_default_template_is_the_mni152_cropped_like_subjects():
    template = load_template([32, 32, 16])
    assert template.shape == (3, 32, 32, 16)  # t1, gm, wm
    mni = load_mni152(32)
    np.testing.assert_allclose(template[1].numpy(), mni.gm[:, :, 8:24], atol=1e-6)  # centre crop along Z
    expected = mni.affine.copy()
    expected[:3, 3] += mni.affine[:3, 2] * 8
    np.testing.assert_allclose(template.affine.numpy(), expected)
    assert template[0].min() == 0 and template[0].max() == 1


def test_template_file_with_tissue_maps(tmp_path):
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    rng = np.random.default_rng(0)
    paths = {}
    for name in ("t1", "gm"):
        paths[name] = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(rng.random((20, 20, 10)).astype(np.float32) * 300, affine), paths[name])
    template = load_template([16, 16, 8], paths["t1"], gm=paths["gm"])
    assert template.shape == (2, 16, 16, 8)
    assert template[0].max() == 1 and template[1].max() <= 1  # T1 scaled, tissue map clipped to [0, 1]


def test_missing_or_mismatched_template_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.nii.gz: template T1 file not found"):
        load_template([8, 8, 8], tmp_path / "missing.nii.gz")
    t1, gm = tmp_path / "t1.nii.gz", tmp_path / "gm.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(512, dtype=np.float32).reshape(8, 8, 8), np.eye(4)), t1)
    nib.save(nib.Nifti1Image(np.ones((8, 8, 6), np.float32), np.eye(4)), gm)
    with pytest.raises(ValueError, match="gm.nii.gz: shape"):
        load_template([8, 8, 8], t1, gm=gm)
    with pytest.raises(ValueError, match="need the template T1 file"):
        load_template([8, 8, 8], wm=gm)


def test_template_files_are_read_through_the_load_chain_and_bad_ones_named(tmp_path):
    """``LoadVolumesd``: RAS orientation; one 3D volume per file, readable, the T1 not constant; errors name it."""
    flipped = tmp_path / "las.nii.gz"
    array = np.random.default_rng(0).random((8, 8, 8)).astype(np.float32)
    nib.save(nib.Nifti1Image(array, np.diag([-2.0, 2.0, 2.0, 1.0])), flipped)
    template = load_template([8, 8, 8], flipped)
    assert (np.diag(template.affine.numpy())[:3] > 0).all()  # reoriented to RAS
    np.testing.assert_allclose(template[0].numpy(), (array[::-1] - array.min()) / np.ptp(array), atol=1e-6)

    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(b"not a NIfTI file")
    with pytest.raises(InputError, match="garbage.nii.gz"):
        load_template([8, 8, 8], garbage)
    four = tmp_path / "four.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8, 2), np.float32), np.eye(4)), four)
    with pytest.raises(InputError, match="four.nii.gz: expected 1 channel"):
        load_template([8, 8, 8], four)
    constant = tmp_path / "constant.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), constant)
    with pytest.raises(InputError, match="constant.nii.gz: constant volume"):
        load_template([8, 8, 8], constant)


def test_fields_round_trip_and_datalist(tmp_path):
    field = torch.randn(3, 6, 5, 4)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    path = save_field(field, affine, tmp_path / "fields" / "a_field.nii.gz")
    image = nib.load(path)
    assert image.shape == (6, 5, 4, 3) and image.header["descrip"].tobytes().rstrip(b"\0").decode() == FIELD_DESCRIPTION
    np.testing.assert_allclose(np.moveaxis(image.get_fdata(), -1, 0), field.numpy(), atol=1e-6)
    datalist = write_fields_datalist([path], 2.5, tmp_path / "fields.json")
    assert json.loads(datalist.read_text())["training"] == [{"field": "fields/a_field.nii.gz"}]
    assert load_field_scale(datalist) == 2.5
    with pytest.raises(FileNotFoundError, match="nothing.json: field scale not found"):
        load_field_scale(tmp_path / "nothing.json")

    recorded = tmp_path / "models" / "field_scale.json"
    assert record_field_scale(load_field_scale(datalist), recorded) == 2.5
    assert json.loads(recorded.read_text()) == {"field_scale": 2.5, "unit": "voxel"}
    assert load_field_scale(recorded) == 2.5 and not list(recorded.parent.glob("*.tmp"))
    with pytest.raises(ValueError, match="field_scale must be positive"):
        record_field_scale(0.0, recorded)
