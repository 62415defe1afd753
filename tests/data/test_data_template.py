from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from common.data.template import FIELD_OF_VIEW_MM, load_mni152, mni152_path

SIZE = 32


@pytest.fixture(scope="module")
def template():
    return load_mni152(SIZE)


def test_shapes_dtypes_and_ranges(template):
    for array in (template.t1, template.gm, template.wm, template.brain_mask):
        assert array.shape == (SIZE, SIZE, SIZE)
        assert array.dtype == np.float32
        assert array.min() >= 0.0 and array.max() <= 1.0
    assert set(np.unique(template.brain_mask).tolist()) == {0.0, 1.0}
    outside = template.brain_mask == 0
    for array in (template.t1, template.gm, template.wm):
        assert not array[outside].any()


def test_affine_is_isotropic_ras_with_expected_spacing(template):
    assert template.spacing == pytest.approx(FIELD_OF_VIEW_MM / SIZE) == 6.0
    assert template.affine.shape == (4, 4) and template.affine.dtype == np.float64
    np.testing.assert_allclose(template.affine[:3, :3], np.eye(3) * 6.0)
    np.testing.assert_allclose(template.affine[3], [0, 0, 0, 1])


def test_brain_mask_is_non_empty_centred_and_inside_the_cube(template):
    mask = template.brain_mask > 0
    assert 0.1 < mask.mean() < 0.5
    assert ndimage.label(mask)[1] == 1
    voxels = np.argwhere(mask)
    np.testing.assert_allclose((voxels.min(axis=0) + voxels.max(axis=0)) / 2, [(SIZE - 1) / 2] * 3, atol=1.0)
    np.testing.assert_allclose(ndimage.center_of_mass(mask), [(SIZE - 1) / 2] * 3, atol=1.5)
    for axis in range(3):
        assert not mask.take([0, SIZE - 1], axis=axis).any()


def test_tissue_contrast_of_the_t1_template(template):
    assert template.t1[template.wm > 0.5].mean() > template.t1[template.gm > 0.5].mean() + 0.1


def test_cached_and_read_only(template):
    assert load_mni152(SIZE) is template
    with pytest.raises(ValueError, match="read-only"):
        template.t1[0, 0, 0] = 1.0


def test_rejects_too_small_size():
    with pytest.raises(ValueError, match="at least 8"):
        load_mni152(7)


def test_missing_template_file_names_the_path():
    with pytest.raises(FileNotFoundError, match="mni_icbm152_csf_tal_nlin_sym_09a_converted.nii.gz"):
        mni152_path("csf")
