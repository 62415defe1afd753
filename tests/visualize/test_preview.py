import numpy as np
import pytest
from PIL import Image

from common.visualize import save_triplanar_preview, triplanar_grid


def test_grid_layout_one_row_per_volume():
    volumes = [np.random.default_rng(i).random((16, 20, 12)) for i in range(3)]
    grid = triplanar_grid(volumes, gap=2)
    tile = 20  # the largest in-plane extent of the three views
    assert grid.dtype == np.uint8 and grid.shape == (3 * tile + 4 * 2, 3 * tile + 4 * 2, 3)


def test_centre_slices_show_the_volume():
    volume = np.zeros((16, 16, 16))
    volume[8, 8, 8] = 1.0  # a bright voxel at the centre appears in all three views
    grid = triplanar_grid([volume], gap=0)
    views = [grid[:, i * 16 : (i + 1) * 16, 0] for i in range(3)]
    assert all(view.max() == 255 for view in views)


def test_overlay_colours_labels():
    volume = np.full((8, 8, 8), 0.5)
    label = np.zeros((8, 8, 8))
    label[2:6, 2:6, 2:6] = 2
    plain, coloured = triplanar_grid([volume], gap=0), triplanar_grid([volume], overlays=[label], gap=0)
    assert (plain[..., 0] == plain[..., 2]).all()  # grey
    assert (coloured[..., 0] != coloured[..., 2]).any()  # tumour (label 2) outlined in red
    assert (coloured[4, 4] == plain[4, 4]).all()  # inside the region the image stays visible


def test_saved_png_is_enlarged_for_small_volumes(tmp_path):
    path = save_triplanar_preview([np.random.rand(1, 16, 16, 16)], tmp_path / "sub" / "p.png", min_tile_size=64)
    with Image.open(path) as image:
        assert image.size[0] >= 3 * 64 and image.mode == "RGB"


def test_rejects_non_volumes():
    with pytest.raises(ValueError, match="expected a 3D volume"):
        triplanar_grid([np.zeros((4, 4))])
