import pytest
import torch
from monai.data import MetaTensor

from common.transforms import AddBrainLabeld, OneHotConditiond


def _label(values: list[int]) -> MetaTensor:
    label = torch.zeros(1, 4, 4, 4)
    for i, value in enumerate(values):
        label[0, i] = value
    return MetaTensor(label, meta={"filename_or_obj": "/data/masks/sub-01.nii.gz"})


def test_one_hot_drops_background_and_keeps_label():
    label = _label([0, 1, 2, 1])
    out = OneHotConditiond("label", num_classes=3)({"label": label})
    condition = out["condition"]
    assert condition.shape == (2, 4, 4, 4)
    assert torch.equal(condition[0], (label[0] == 1).float())  # channel 0 = label 1 (head/brain)
    assert torch.equal(condition[1], (label[0] == 2).float())  # channel 1 = label 2 (tumour)
    assert torch.equal(out["label"], label)  # the label itself is untouched
    assert condition.sum(0).max() == 1  # one-hot: at most one channel per voxel; background has none


def test_one_hot_names_file_for_labels_out_of_range():
    with pytest.raises(ValueError, match=r"sub-01\.nii\.gz: labels out of range \[3\.0\]"):
        OneHotConditiond("label", num_classes=3)({"label": _label([0, 1, 3])})


def test_one_hot_rejects_non_integer_labels():
    with pytest.raises(ValueError, match="labels out of range"):
        OneHotConditiond("label", num_classes=3)({"label": _label([0, 1]) * 0.5})


def test_add_brain_label_only_fills_background_above_threshold():
    label = _label([0, 0, 1, 3])
    image = torch.zeros(4, 4, 4, 4)
    image[0, 1:] = 1.0  # T1 > 0 in slices 1-3
    out = AddBrainLabeld("label", image_key="image", brain_label=4)({"label": label, "image": image})["label"]
    assert (out[0, 0] == 0).all()  # below threshold: background stays
    assert (out[0, 1] == 4).all()  # background inside the brain: brain label
    assert (out[0, 2] == 1).all() and (out[0, 3] == 3).all()  # tumour labels untouched


def test_add_brain_label_checks_shapes():
    with pytest.raises(ValueError, match="does not match image shape"):
        AddBrainLabeld("label")({"label": _label([0]), "image": torch.zeros(4, 4, 4, 5)})
