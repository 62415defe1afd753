import torch
from monai.data import MetaTensor

from common.data import nifti_files, nifti_stem
from common.data.nifti import source_name


def test_nifti_stem_strips_both_extensions_only():
    assert nifti_stem("/d/sub-01.nii.gz") == "sub-01"
    assert nifti_stem("sub-01.nii") == "sub-01"
    assert nifti_stem("sub-01.json") is None
    assert nifti_stem(".nii.gz") is None


def test_nifti_files_sorted_without_hidden_or_other_files(tmp_path):
    for name in ("b.nii.gz", "a.nii", ".hidden.nii.gz", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "folder.nii.gz").mkdir()
    assert [p.name for p in nifti_files(tmp_path)] == ["a.nii", "b.nii.gz"]


def test_source_name():
    assert source_name(MetaTensor(torch.zeros(1), meta={"filename_or_obj": "/x/m.nii.gz"})) == "/x/m.nii.gz"
    assert source_name(torch.zeros(1)) == "<in-memory>"
