"""Mask editing for new image/label pairs (Med-DDPM Fig. 4): scale a tumour about its centre or shift it.

Both edits move only the tumour labels and keep them inside the head/brain: tumour voxels that would land
outside it are dropped (with a warning), and the voxels the tumour leaves are filled with the brain label.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.transforms import MapTransform
from scipy import ndimage

logger = logging.getLogger(__name__)


def move_tumour(
    label: np.ndarray,
    matrix: np.ndarray,
    offset: np.ndarray,
    tumour_labels: Sequence[int],
    fill_label: int,
) -> np.ndarray:
    """Resample the tumour part of a label map with an affine map, leaving the rest of the anatomy in place.

    The new tumour at voxel ``o`` is the old tumour at voxel ``matrix @ o + offset`` (nearest neighbour).

    Args:
        label: integer label map of shape (X, Y, Z).
        matrix: (3, 3) matrix mapping output voxel coordinates to input voxel coordinates.
        offset: (3,) offset of that map, in voxels.
        tumour_labels: label values that belong to the tumour.
        fill_label: label given to voxels the tumour leaves (the brain label).

    Returns:
        The edited label map, same shape and dtype; tumour voxels only where ``label > 0`` (inside the head).
    """
    is_tumour = np.isin(label, tumour_labels)
    tumour = np.where(is_tumour, label, 0)
    moved = ndimage.affine_transform(tumour, matrix, offset=offset, order=0, mode="constant", cval=0)
    inside = label > 0
    lost = int(np.count_nonzero(moved[~inside]))
    if lost:
        logger.warning(f"mask editing: {lost} tumour voxels fell outside the brain and were dropped")
    edited = np.where(is_tumour, fill_label, label).astype(label.dtype)
    return np.where((moved > 0) & inside, moved, edited).astype(label.dtype)


class _TumourEditd(MapTransform, ABC):
    """Common part of the tumour edits: apply :func:`move_tumour` to channel-first (1, X, Y, Z) label maps."""

    def __init__(self, keys: Hashable, tumour_labels: Sequence[int], fill_label: int) -> None:
        super().__init__(keys)
        self.tumour_labels = list(tumour_labels)
        self.fill_label = fill_label

    @abstractmethod
    def is_identity(self) -> bool:
        """Whether the edit leaves every mask unchanged."""

    @abstractmethod
    def affine(self, tumour_centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(matrix, offset) mapping output voxel coordinates to input voxel coordinates."""

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        if self.is_identity():
            return d
        for key in self.key_iterator(d):
            label = d[key]
            array = np.asarray(torch.as_tensor(label).cpu().numpy())
            if array.ndim != 4 or array.shape[0] != 1:
                raise ValueError(f"expected a label map of shape (1, X, Y, Z), got {array.shape}")
            coords = np.argwhere(np.isin(array[0], self.tumour_labels))
            if coords.size == 0:
                logger.warning("mask editing: the mask has no tumour voxels; left unchanged")
                continue
            matrix, offset = self.affine(coords.mean(axis=0))
            edited = move_tumour(array[0], matrix, offset, self.tumour_labels, self.fill_label)
            d[key] = label.clone() if isinstance(label, torch.Tensor) else label.copy()
            d[key][0] = torch.as_tensor(edited, dtype=d[key].dtype)
        return d


class ScaleTumourd(_TumourEditd):
    """Scale the tumour about its centre of mass by ``factor`` (> 1 grows it, < 1 shrinks it).

    Args:
        keys: label keys, each of shape (1, X, Y, Z).
        factor: linear scale factor, applied on every axis.
        tumour_labels: label values of the tumour (Med-DDPM: 2; BraTS after remapping: 1, 2, 3).
        fill_label: brain label written where the tumour shrinks away (Med-DDPM: 1; BraTS: 4).
    """

    def __init__(
        self, keys: Hashable, factor: float = 1.0, tumour_labels: Sequence[int] = (2,), fill_label: int = 1
    ) -> None:
        super().__init__(keys, tumour_labels, fill_label)
        if factor <= 0:
            raise ValueError(f"tumour scale factor must be positive, got {factor}")
        self.factor = float(factor)

    def is_identity(self) -> bool:
        return self.factor == 1.0

    def affine(self, tumour_centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.eye(3) / self.factor, tumour_centre * (1.0 - 1.0 / self.factor)


class ShiftTumourd(_TumourEditd):
    """Shift the tumour by ``offset`` voxels along the array axes (X, Y, Z), keeping it inside the brain.

    Args:
        keys: label keys, each of shape (1, X, Y, Z).
        offset: shift in voxels per axis; for RAS-oriented volumes +X is right, +Y anterior, +Z superior.
        tumour_labels: label values of the tumour.
        fill_label: brain label written where the tumour was.
    """

    def __init__(
        self,
        keys: Hashable,
        offset: Sequence[float] = (0, 0, 0),
        tumour_labels: Sequence[int] = (2,),
        fill_label: int = 1,
    ) -> None:
        super().__init__(keys, tumour_labels, fill_label)
        if len(offset) != 3:
            raise ValueError(f"tumour shift needs one offset per axis (3 values), got {list(offset)}")
        self.offset = np.asarray(offset, dtype=float)

    def is_identity(self) -> bool:
        return not self.offset.any()

    def affine(self, tumour_centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.eye(3), -self.offset
