import pytest
import torch
from monai.data import MetaTensor

from common.errors import InputError
from common.transforms import CheckVolumesd


def _volume(name: str, channels: int = 1, shape=(4, 4, 4), affine=None) -> MetaTensor:
    values = torch.arange(channels * torch.Size(shape).numel(), dtype=torch.float32).reshape(channels, *shape) % 3
    return MetaTensor(values, affine=affine, meta={"filename_or_obj": name})


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


@pytest.mark.parametrize(
    "key, value, constant_keys", [("image", 0.0, None), ("image", 7.5, None), ("label", 0.0, ["label"])]
)
def test_constant_volume_is_refused(key, value, constant_keys):
    data = {"image": _volume("img.nii.gz"), "label": _volume("mask.nii.gz")}
    data[key] = MetaTensor(torch.full((1, 4, 4, 4), value), meta={"filename_or_obj": f"{key}.nii.gz"})
    with pytest.raises(InputError, match=rf"{key}\.nii\.gz: constant volume \(every voxel is {value:g}\)"):
        CheckVolumesd(["image", "label"], [1, 1], constant_keys=constant_keys)(data)


def test_empty_label_beside_an_image_is_accepted():
    empty = MetaTensor(torch.zeros(1, 4, 4, 4), meta={"filename_or_obj": "mask.nii.gz"})
    assert CheckVolumesd(["image", "label"], [1, 1])({"image": _volume("img.nii.gz"), "label": empty})["label"] is empty
