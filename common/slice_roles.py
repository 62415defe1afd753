"""Roles of the slots of a cDPM slice set (Peng et al. 2023, Sect. 2.2).

A slice set holds condition slices, target slices and unused slots; the transform that draws the sets
(:class:`common.transforms.SampleSliceSetsd`), the slice-attention network, the slice sampler and the batch
preparation all read the same role codes. They live in this leaf module, which imports nothing, so that networks,
diffusion and engines need not depend on the transforms.
"""

PADDING, CONDITION, TARGET = 0, 1, 2
"""Role of each slot of a slice set: an unused slot, a clean condition slice, a noisy target slice."""

__all__ = ["CONDITION", "PADDING", "TARGET"]
