from __future__ import annotations

import numpy as np
import pytest

from common.data.synthetic import CONTRASTS, synthesize_subject
from common.data.template import load_mni152


@pytest.fixture(scope="module")
def subject():
    return synthesize_subject(load_mni152(32), np.random.default_rng([0, 1]), tumour=True)


def _means(subject, contrast):
    """Mean intensity of ``contrast`` per tissue class (voxels mostly of that tissue) and lesion label."""
    image = subject.contrasts[contrast]
    means = {tissue: image[fraction > 0.5].mean() for tissue, fraction in subject.tissues.items()}
    means |= {name: image[subject.seg == label].mean() for name, label in (("core", 1), ("oedema", 2), ("et", 4))}
    return means


def test_relative_intensities(subject):
    t1, t1ce, t2, flair = (_means(subject, contrast) for contrast in CONTRASTS)
    assert t1["wm"] > t1["gm"] > t1["csf"]
    assert t2["csf"] > t2["gm"] > t2["wm"]
    assert flair["csf"] < flair["wm"] and flair["oedema"] > max(flair["wm"], flair["gm"])
    assert t1ce["et"] > t1ce["wm"] and t1ce["et"] > 1.5 * t1["et"]


def test_images_are_non_negative_float32_and_zero_outside_the_brain(subject):
    for image in subject.contrasts.values():
        assert image.dtype == np.float32 and image.shape == (32, 32, 32)
        assert image.min() >= 0.0
        assert not image[~subject.brain_mask].any()
        assert image[subject.brain_mask].mean() > 0.2


def test_lesion_labels_inside_the_brain(subject):
    assert set(np.unique(subject.seg).tolist()) == {0, 1, 2, 4}
    assert subject.brain_mask[subject.seg > 0].all()
    mask = subject.meddpm_mask()
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask == 2, np.isin(subject.seg, (1, 4)))
    np.testing.assert_array_equal(mask > 0, subject.brain_mask)
    for fraction in subject.tissues.values():
        assert not fraction[subject.seg > 0].any()


def test_healthy_subject_has_no_lesion():
    healthy = synthesize_subject(load_mni152(32), np.random.default_rng([0, 1]), tumour=False)
    assert not healthy.has_tumour
    assert set(np.unique(healthy.meddpm_mask()).tolist()) == {0, 1}


def test_deterministic_given_the_generator_state(subject):
    again = synthesize_subject(load_mni152(32), np.random.default_rng([0, 1]), tumour=True)
    other = synthesize_subject(load_mni152(32), np.random.default_rng([0, 2]), tumour=True)
    for contrast in CONTRASTS:
        np.testing.assert_array_equal(again.contrasts[contrast], subject.contrasts[contrast])
        assert not np.array_equal(other.contrasts[contrast], subject.contrasts[contrast])
    np.testing.assert_array_equal(again.seg, subject.seg)
