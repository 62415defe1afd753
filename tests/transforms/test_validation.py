import pytest
import torch
from monai.data import MetaTensor

from common.transforms import CheckVolumesd


def _volume(name: str, channels: int = 1, shape=(4, 4, 4), affine=None) -> MetaTensor:
    return MetaTensor(torch.zeros(channels, *shape), affine=affine, meta={"filename_or_obj": name})


def test_good_pair_passes():
    data = {"image": _volume("img.nii.gz"), "label": _volume("mask.nii.gz")}
    assert CheckVolumesd(["image", "label"], [1, 1])(data)["image"] is data["image"]


@pytest.mark.parametrize(
    "image, label, message",
    [
        (_volume("img.nii.gz", channels=3), _volume("mask.nii.gz"), r"img\.nii\.gz: expected 1 channel\(s\)"),
        (_volume("img.nii.gz"), _volume("mask.nii.gz", shape=(4, 4, 5)), r"mask\.nii\.gz: shape \(4, 4, 5\)"),
        (_volume("img.nii.gz"), _volume("mask.nii.gz", affine=torch.diag(torch.tensor([2.0, 2, 2, 1]))), "affine"),
    ],
)
def test_problems_name_the_file(image, label, message):
    with pytest.raises(ValueError, match=message):
        CheckVolumesd(["image", "label"], [1, 1])({"image": image, "label": label})


def test_nan_is_reported():
    image = _volume("img.nii.gz")
    image[0, 1, 1, 1] = float("nan")
    with pytest.raises(ValueError, match=r"img\.nii\.gz: contains NaN"):
        CheckVolumesd(["image", "label"], [1, 1])({"image": image, "label": _volume("mask.nii.gz")})
