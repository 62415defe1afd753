"""Physical checks with known answers: intensity outside the head and the tumour-to-brain intensity ratio."""

from __future__ import annotations

import math

import pytest
import torch

from common.metrics import background_intensity, background_mask, tumour_brain_ratio


def _label_map() -> torch.Tensor:
    """A (1, 1, 8, 8, 8) Med-DDPM mask: background 0, a 4³ brain (1) holding a 2³ tumour (2)."""
    labels = torch.zeros(1, 1, 8, 8, 8)
    labels[..., 2:6, 2:6, 2:6] = 1
    labels[..., 3:5, 3:5, 3:5] = 2
    return labels


def test_background_intensity_is_the_mean_outside_the_head():
    labels = _label_map()
    clean = (labels > 0).float()  # head 1, background 0
    hazy = clean + 0.2 * (labels == 0)  # a uniform haze of 20 % of the range outside the head
    values = background_intensity(torch.cat([clean, hazy]), labels.expand(2, -1, -1, -1, -1) == 0)
    assert values.tolist() == pytest.approx([0.0, 0.2])
    assert background_intensity(hazy, labels == 0).item() == pytest.approx(0.2)  # one mask for all volumes
    with pytest.raises(ValueError, match="without background voxels"):
        background_intensity(hazy, torch.zeros_like(labels, dtype=torch.bool))
    with pytest.raises(ValueError, match="expected masks"):
        background_intensity(hazy, (labels == 0)[0])


def test_background_mask_keeps_the_voxels_dark_in_nearly_all_real_volumes():
    real = torch.zeros(20, 1, 4, 4, 4)
    real[:, :, 1:3, 1:3, 1:3] = 1.0  # the head, in every volume
    real[0, :, 0, 0, 0] = 1.0  # one volume of 20 is bright in one corner: 95 % background there
    real[:2, :, 3, 3, 3] = 1.0  # two volumes of 20 in another: 90 %
    mask = background_mask(real, threshold=0.05, fraction=0.95)
    assert mask.shape == (1, 1, 4, 4, 4) and mask.dtype == torch.bool
    assert not mask[..., 1:3, 1:3, 1:3].any() and mask[0, 0, 0, 0, 0] and not mask[0, 0, 3, 3, 3]
    assert mask.sum() == 64 - 8 - 1
    assert background_mask(real, fraction=1.0).sum() == 64 - 8 - 2


def test_tumour_brain_ratio_known_values_and_missing_regions():
    labels = _label_map()
    bright_tumour = 0.4 * (labels == 1) + 0.8 * (labels == 2)  # tumour twice as bright as the brain
    no_tumour = torch.where(labels == 2, torch.ones_like(labels), labels)  # the tumour relabelled brain
    volumes = torch.cat([bright_tumour, bright_tumour, bright_tumour])
    ratios = tumour_brain_ratio(volumes, torch.cat([labels, no_tumour, labels]), tumour_labels=[2], brain_labels=[1])
    assert ratios[0].item() == pytest.approx(2.0) and math.isnan(ratios[1].item())
    assert tumour_brain_ratio(volumes[:1], labels, tumour_labels=[1, 2], brain_labels=[0]).isnan().all()  # brain 0
    with pytest.raises(ValueError, match="expected masks"):
        tumour_brain_ratio(volumes, labels)
