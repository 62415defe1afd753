"""``LoadVolumesd``'s crop to the foreground and resampling (``crop_foreground``, ``size_mode``): Medical Diffusion's
load chain (crop to the brain, longest side to the target size, pad, scale) as one transform."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from common.errors import InputError
from common.transforms import LoadVolumesd


@pytest.fixture
def volume(tmp_path) -> str:
    """A 40×30×20 volume whose positive box is 20×10×10 (a brain in a zero background), RAS affine."""
    data = np.zeros((40, 30, 20), dtype=np.float32)
    data[10:30, 10:20, 5:15] = np.random.default_rng(0).uniform(1, 2, size=(20, 10, 10))
    path = tmp_path / "image.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return str(path)


def test_crop_resize_longest_then_pad_and_scale(volume):
    load = LoadVolumesd(
        "image", [1], spatial_size=[16, 16, 16], crop_foreground=True, size_mode="longest", intensity_range=(-1, 1)
    )
    image = load({"image": volume})["image"]
    assert image.shape == (1, 16, 16, 16)
    # 20×10×10 box → longest side 16 → 16×8×8, zero-padded to 16³ (then min-max scaled, the pad is the minimum -1)
    inside = image[0, :, 4:12, 4:12]
    assert (inside > -1).all() and (image[0, :, :4] == -1).all() and (image[0, :, 12:] == -1).all()
    assert image.min() == -1 and image.max() == 1


def test_size_mode_all_resizes_each_axis(volume):
    image = LoadVolumesd("image", [1], spatial_size=[8, 12, 6], crop_foreground=True, size_mode="all")(
        {"image": volume}
    )
    assert image["image"].shape == (1, 8, 12, 6) and (image["image"] > 0).all()  # the crop left no background


def test_defaults_neither_crop_nor_resample(volume):
    assert LoadVolumesd("image", [1])({"image": volume})["image"].shape == (1, 40, 30, 20)
    assert LoadVolumesd("image", [1], spatial_size=[16, 16, 16])({"image": volume})["image"].shape == (1, 16, 16, 16)


@pytest.mark.parametrize(("size_mode", "spatial_size"), [("longest", None), ("axes", [16, 16, 16])])
def test_size_mode_needs_a_known_mode_and_a_size(size_mode, spatial_size):
    with pytest.raises(InputError, match="size_mode must be one of"):
        LoadVolumesd("image", [1], spatial_size=spatial_size, size_mode=size_mode)
