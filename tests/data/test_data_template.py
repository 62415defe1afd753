from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from common.data import template as template_module
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


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache folder, no in-process cache, and a stand-in resampling (random arrays of the right shapes and
    dtypes) that counts its calls: ``(folder, calls)``. The real resampling is what the tests above check."""
    monkeypatch.setenv("BRAINSYNTH_CACHE_DIR", str(tmp_path / "cache"))
    calls = []

    def resample(size):
        calls.append(size)
        rng = np.random.default_rng(len(calls))
        arrays = {name: rng.random((size,) * 3, dtype=np.float32) for name in ("t1", "gm", "wm", "brain_mask")}
        return arrays | {"affine": np.diag([192 / size] * 3 + [1.0])}

    monkeypatch.setattr(template_module, "_resample", resample)
    load_mni152.cache_clear()
    yield tmp_path / "cache", calls
    load_mni152.cache_clear()


def test_disk_cache_holds_the_exact_resampled_arrays(fresh_cache):
    folder, calls = fresh_cache
    resampled = load_mni152(16)
    (cache_file,) = folder.glob("mni152_16_nilearn*_v*.npz")
    assert not list(folder.glob(".*")), "no temporary file left"
    load_mni152.cache_clear()
    cached = load_mni152(16)
    assert calls == [16], "the second process-level load reads the file"
    assert cached is not resampled and cached.spacing == resampled.spacing == 12.0
    for name in ("t1", "gm", "wm", "brain_mask", "affine"):
        np.testing.assert_array_equal(getattr(cached, name), getattr(resampled, name))
        assert getattr(cached, name).dtype == getattr(resampled, name).dtype
        assert not getattr(cached, name).flags.writeable


def test_a_broken_or_foreign_cache_file_is_resampled_and_replaced(fresh_cache, caplog):
    folder, calls = fresh_cache
    load_mni152(16)
    (cache_file,) = folder.glob("mni152_16_*.npz")
    cache_file.write_bytes(cache_file.read_bytes()[:100])  # truncated, as by a crash mid-copy
    load_mni152.cache_clear()
    again = load_mni152(16)
    assert calls == [16, 16] and f"{cache_file}: unreadable template cache" in caplog.text
    with np.load(cache_file) as replaced:
        np.testing.assert_array_equal(replaced["t1"], again.t1)
    np.savez(cache_file, **{name: np.zeros((8, 8, 8)) for name in ("t1", "gm", "wm", "brain_mask")}, affine=np.eye(4))
    load_mni152.cache_clear()
    assert load_mni152(16).t1.shape == (16, 16, 16) and calls == [16, 16, 16]
    assert f"{cache_file}: template cache of another size" in caplog.text


def test_an_unwritable_cache_folder_only_costs_the_resampling(fresh_cache, monkeypatch):
    folder, calls = fresh_cache
    folder.parent.joinpath("a_file").write_text("")
    monkeypatch.setenv("BRAINSYNTH_CACHE_DIR", str(folder.parent / "a_file" / "cache"))  # not creatable
    assert load_mni152(16).t1.shape == (16, 16, 16)
    load_mni152.cache_clear()
    assert load_mni152(16).t1.shape == (16, 16, 16) and calls == [16, 16]
