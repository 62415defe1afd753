"""Tri-planar PNG previews of 3D volumes: axial, coronal and sagittal slices through the centre."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from PIL import Image
from scipy import ndimage

ArrayLike = np.ndarray | torch.Tensor

#: RGB colours of label values 1, 2, 3, ... in overlays (label 0 is transparent).
LABEL_COLOURS = np.array(
    [[0, 160, 255], [255, 40, 40], [255, 220, 0], [40, 220, 40], [220, 80, 255]],
    dtype=np.float32,
)


def _as_3d(volume: ArrayLike) -> np.ndarray:
    """Return a float32 numpy array of shape (X, Y, Z); a leading channel axis of size 1 is dropped."""
    array = volume.detach().cpu().numpy() if isinstance(volume, torch.Tensor) else np.asarray(volume)
    array = np.squeeze(array)
    if array.ndim == 4:  # several channels: preview the first one
        array = array[0]
    if array.ndim != 3:
        raise ValueError(f"expected a 3D volume (optionally with a channel axis), got shape {np.shape(volume)}")
    return array.astype(np.float32)


def _to_unit_range(volume: np.ndarray) -> np.ndarray:
    """Map the 1st-99th percentile range of the non-zero voxels to [0, 1] (robust to outliers)."""
    foreground = volume[volume != 0]
    if foreground.size == 0:
        return np.zeros_like(volume)
    low, high = np.percentile(foreground, [1, 99])
    low = min(low, 0.0)
    return np.clip((volume - low) / max(high - low, 1e-8), 0.0, 1.0)


def _centre_slices(volume: np.ndarray) -> list[np.ndarray]:
    """Axial, coronal and sagittal slices through the centre of a (X, Y, Z) RAS volume, rotated for display."""
    x, y, z = (s // 2 for s in volume.shape)
    return [np.rot90(volume[:, :, z]), np.rot90(volume[:, y, :]), np.rot90(volume[x, :, :])]


def _pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre an (H, W, 3) image on a black canvas of shape (height, width, 3)."""
    canvas = np.zeros((height, width, 3), dtype=image.dtype)
    top, left = (height - image.shape[0]) // 2, (width - image.shape[1]) // 2
    canvas[top : top + image.shape[0], left : left + image.shape[1]] = image
    return canvas


def _colourise(grey: np.ndarray, labels: np.ndarray | None, opacity: float) -> np.ndarray:
    """Draw the outline of each label region of an (H, W) label map over an (H, W) grey image in [0, 1].

    Outlines (region voxels with a neighbour outside the region) keep the image inside visible; ``opacity``
    blends their colour with the image. Returns (H, W, 3) in [0, 255].
    """
    rgb = np.repeat(grey[..., None] * 255.0, 3, axis=-1)
    if labels is not None:
        labels = np.rint(labels).astype(int)
        for value in np.unique(labels[labels > 0]):
            colour = LABEL_COLOURS[(value - 1) % len(LABEL_COLOURS)]
            region = labels == value
            outline = region & ~ndimage.binary_erosion(region, border_value=0)
            rgb[outline] = (1 - opacity) * rgb[outline] + opacity * colour
    return rgb


def triplanar_grid(
    volumes: Sequence[ArrayLike],
    overlays: Sequence[ArrayLike | None] | None = None,
    opacity: float = 0.8,
    gap: int = 2,
) -> np.ndarray:
    """Arrange centre slices of several volumes in a grid: one row per volume, columns axial/coronal/sagittal.

    Args:
        volumes: volumes of shape (X, Y, Z) or (1, X, Y, Z) in RAS orientation; each is scaled to its own
            1st-99th percentile range.
        overlays: optional label volumes of the same shapes, whose region outlines are drawn in colour over the
            matching volume (``None`` entries are skipped).
        opacity: opacity of the outline colours.
        gap: black pixels between tiles.

    Returns:
        uint8 RGB image of shape (H, W, 3).
    """
    if len(volumes) == 0:
        raise ValueError("triplanar_grid needs at least one volume")
    overlays = list(overlays) if overlays is not None else [None] * len(volumes)
    if len(overlays) != len(volumes):
        raise ValueError(f"got {len(volumes)} volumes but {len(overlays)} overlays")
    rows = []
    for volume, overlay in zip(volumes, overlays, strict=True):
        grey = _centre_slices(_to_unit_range(_as_3d(volume)))
        labels = _centre_slices(_as_3d(overlay)) if overlay is not None else [None] * 3
        rows.append([_colourise(g, lab, opacity) for g, lab in zip(grey, labels, strict=True)])
    tile_h = max(tile.shape[0] for row in rows for tile in row)
    tile_w = max(tile.shape[1] for row in rows for tile in row)
    height = len(rows) * tile_h + (len(rows) + 1) * gap
    width = 3 * tile_w + 4 * gap
    grid = np.zeros((height, width, 3), dtype=np.float32)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            top, left = gap + r * (tile_h + gap), gap + c * (tile_w + gap)
            grid[top : top + tile_h, left : left + tile_w] = _pad_to(tile, tile_h, tile_w)
    return np.clip(grid, 0, 255).astype(np.uint8)


def load_ras(path: str | Path) -> np.ndarray:
    """Voxel array (X, Y, Z) of a NIfTI file reoriented to RAS, the orientation the bundles read and write."""
    return np.asanyarray(nib.as_closest_canonical(nib.load(path)).dataobj)


def triplanar_image(
    volumes: Sequence[ArrayLike], overlays: Sequence[ArrayLike | None] | None = None, min_tile_size: int = 128
) -> Image.Image:
    """:func:`triplanar_grid` as an RGB image, tiles smaller than ``min_tile_size`` pixels enlarged by an integer
    factor (nearest neighbour) so that small volumes stay visible."""
    grid = triplanar_grid(volumes, overlays)
    smallest = min(min(_as_3d(v).shape) for v in volumes)
    factor = max(1, int(np.ceil(min_tile_size / smallest)))
    return Image.fromarray(grid).resize((grid.shape[1] * factor, grid.shape[0] * factor), Image.NEAREST)


def save_triplanar_preview(
    volumes: Sequence[ArrayLike],
    path: str | Path,
    overlays: Sequence[ArrayLike | None] | None = None,
    min_tile_size: int = 128,
) -> Path:
    """Write :func:`triplanar_image` of ``volumes`` to a PNG file.

    Args:
        volumes: volumes of shape (X, Y, Z) or (1, X, Y, Z).
        path: output PNG path; parent folders are created.
        overlays: optional label volumes drawn in colour over the matching volume.
        min_tile_size: tiles smaller than this many pixels are enlarged by an integer factor (nearest neighbour).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    triplanar_image(volumes, overlays, min_tile_size).save(path)
    return path
