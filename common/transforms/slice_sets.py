"""Random condition/target slice sets of one volume, the training sample of cDPM (Peng et al. 2023, Sect. 2.2)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform

from common.data.nifti import source_name
from common.slice_roles import CONDITION, PADDING, TARGET


class SampleSliceSetsd(RandomizableTransform, MapTransform):
    """Draw a condition set C and a target set P of slice indices from a volume and gather those slices.

    From a channel-first volume (C_img, X, Y, Z) it draws ``1 <= len(P)`` and ``len(C) + len(P) <= max_slices``
    (C may be empty), then writes fixed-size outputs so that samples with different set sizes batch together:

    - ``slices_key``: (max_slices, C_img, H, W), the condition slices, then the target slices, then zeros;
    - ``indices_key``: (max_slices,) int64, each slot's slice index along ``axis`` (0 for unused slots);
    - ``roles_key``: (max_slices,) int64, ``CONDITION`` (1), ``TARGET`` (2) or ``PADDING`` (0).

    Each set is an evenly spaced group of slices whose spacing is drawn log-uniformly, from adjacent slices to
    slices spread over the whole depth, at a random offset; C is drawn among the slices not in P. Sizes are
    uniform: ``len(P) ~ U{1..max_slices}``, then ``len(C) ~ U{0..max_slices - len(P)}`` (both capped by the depth).
    So near and far condition-target pairs, and the unconditioned case of the first generation stage, are all
    trained. The draw is deterministic under ``set_random_state`` (MONAI's ``set_determinism`` seeds it).

    Args:
        keys: the volume key (one key).
        max_slices: tau_max, the most slices of one sample (20 in the paper).
        axis: spatial axis along which slices are taken (0, 1 or 2 of X, Y, Z; 2 is axial for RAS volumes).
        slices_key / indices_key / roles_key: output keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        max_slices: int = 20,
        axis: int = 2,
        slices_key: str = "slices",
        indices_key: str = "slice_indices",
        roles_key: str = "slice_roles",
    ) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob=1.0)
        if len(self.keys) != 1:
            raise ValueError(f"SampleSliceSetsd takes one volume key, got {self.keys}")
        if max_slices < 1:
            raise ValueError(f"max_slices must be at least 1, got {max_slices}")
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be a spatial axis 0, 1 or 2, got {axis}")
        self.max_slices, self.axis = max_slices, axis
        self.slices_key, self.indices_key, self.roles_key = slices_key, indices_key, roles_key

    def _spaced_group(self, size: int, available: np.ndarray) -> np.ndarray:
        """``size`` entries of the sorted ``available`` indices, evenly spaced with a log-uniform random spacing."""
        if size == 0:
            return available[:0]
        widest = max(1, (len(available) - 1) // max(size - 1, 1))
        spacing = int(np.exp(self.R.uniform(0.0, np.log(widest + 1))))  # log-uniform in 1..widest
        offset = self.R.randint(0, len(available) - (size - 1) * spacing)
        return available[offset + spacing * np.arange(size)]

    def draw(self, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw (condition indices, target indices), each sorted, for a volume of ``depth`` slices."""
        budget = min(self.max_slices, depth)
        num_targets = self.R.randint(1, budget + 1)
        num_conditions = self.R.randint(0, budget - num_targets + 1)
        targets = self._spaced_group(num_targets, np.arange(depth))
        conditions = self._spaced_group(num_conditions, np.setdiff1d(np.arange(depth), targets))
        return conditions, targets

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        (key,) = self.keys
        volume = torch.as_tensor(d[key]).as_subclass(torch.Tensor)  # slices carry no volume metadata
        if volume.ndim != 4:
            raise ValueError(f"{source_name(d[key])}: expected a (C, X, Y, Z) volume, got shape {tuple(volume.shape)}")
        conditions, targets = self.draw(volume.shape[1 + self.axis])
        chosen = torch.as_tensor(np.concatenate([conditions, targets]), dtype=torch.long)
        slices = volume.movedim(1 + self.axis, 0).index_select(0, chosen)  # (n, C, H, W)
        unused = self.max_slices - len(chosen)
        d[self.slices_key] = torch.cat([slices, slices.new_zeros(unused, *slices.shape[1:])])
        d[self.indices_key] = torch.cat([chosen, chosen.new_zeros(unused)])
        d[self.roles_key] = torch.as_tensor(
            [CONDITION] * len(conditions) + [TARGET] * len(targets) + [PADDING] * unused, dtype=torch.long
        )
        return d
