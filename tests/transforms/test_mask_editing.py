import numpy as np
import pytest
import torch

from common.transforms import ScaleTumourd, ShiftTumourd


@pytest.fixture
def mask() -> torch.Tensor:
    """A 40³ head (label 1) with a 6³ tumour (label 2) centred at (17.5, 17.5, 17.5)."""
    label = torch.zeros(1, 40, 40, 40, dtype=torch.uint8)
    label[0, 5:35, 5:35, 5:35] = 1
    label[0, 15:21, 15:21, 15:21] = 2
    return label


def _tumour(label: torch.Tensor) -> np.ndarray:
    return label[0].numpy() == 2


def test_scale_grows_tumour_about_its_centre(mask):
    out = ScaleTumourd("label", factor=2.0)({"label": mask})["label"]
    assert set(np.unique(out)) == {0, 1, 2}
    assert _tumour(out).sum() == pytest.approx(8 * _tumour(mask).sum(), rel=0.05)
    np.testing.assert_allclose(np.argwhere(_tumour(out)).mean(0), np.argwhere(_tumour(mask)).mean(0), atol=0.6)
    assert (out[0][_tumour(out)] > 0).all() and ((out[0] > 0) == (mask[0] > 0)).all()  # head outline unchanged


def test_scale_shrinks_tumour_and_refills_brain(mask):
    out = ScaleTumourd("label", factor=0.5)({"label": mask})["label"]
    assert 0 < _tumour(out).sum() < _tumour(mask).sum()
    assert set(np.unique(out)) == {0, 1, 2}
    assert ((out[0] > 0) == (mask[0] > 0)).all()  # voxels the tumour left are brain again, not background


def test_shift_moves_centroid_by_offset(mask):
    out = ShiftTumourd("label", offset=(5, -3, 0))({"label": mask})["label"]
    assert _tumour(out).sum() == _tumour(mask).sum()
    shift = np.argwhere(_tumour(out)).mean(0) - np.argwhere(_tumour(mask)).mean(0)
    np.testing.assert_allclose(shift, [5, -3, 0])
    assert set(np.unique(out)) == {0, 1, 2}


def test_shift_never_leaves_the_brain(mask):
    out = ShiftTumourd("label", offset=(0, 0, 16))({"label": mask})["label"]  # pushes half the tumour out of the head
    tumour = _tumour(out)
    assert 0 < tumour.sum() < _tumour(mask).sum()
    assert (mask[0].numpy()[tumour] > 0).all()


def test_identity_edits_return_input_unchanged(mask):
    data = {"label": mask}
    assert ScaleTumourd("label", factor=1.0)(data)["label"] is mask
    assert ShiftTumourd("label", offset=(0, 0, 0))(data)["label"] is mask


def test_edit_keeps_metadata_and_dtype(mask):
    from monai.data import MetaTensor

    label = MetaTensor(mask, affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))
    out = ShiftTumourd("label", offset=(1, 0, 0))({"label": label})["label"]
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, label.affine) and out.dtype == label.dtype
    assert torch.equal(label, MetaTensor(mask))  # the input is not modified in place


def test_multilabel_tumour_keeps_all_labels():
    label = torch.full((1, 30, 30, 30), 4, dtype=torch.uint8)  # BraTS after remapping: 4 = brain
    label[0, 10:16, 10:16, 10:16] = 2
    label[0, 12:14, 12:14, 12:14] = 1
    out = ScaleTumourd("label", factor=1.5, tumour_labels=(1, 2, 3), fill_label=4)({"label": label})["label"]
    assert set(np.unique(out)) == {1, 2, 4}


def test_invalid_parameters():
    with pytest.raises(ValueError, match="positive"):
        ScaleTumourd("label", factor=0)
    with pytest.raises(ValueError, match="3 values"):
        ShiftTumourd("label", offset=(1, 2))
