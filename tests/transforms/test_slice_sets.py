"""Tests of SampleSliceSetsd: the condition/target slice sets that cDPM trains on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.slice_roles import CONDITION, PADDING, TARGET
from common.transforms import SampleSliceSetsd


def _draws(transform: SampleSliceSetsd, volume: torch.Tensor, count: int) -> list[dict[str, torch.Tensor]]:
    return [transform({"image": volume}) for _ in range(count)]


def _sets(out: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """(condition indices, target indices) of one sample."""
    indices, roles = out["slice_indices"].numpy(), out["slice_roles"].numpy()
    return indices[roles == CONDITION], indices[roles == TARGET]


@pytest.mark.parametrize("max_slices", [20, 6])
def test_set_sizes_shapes_and_padding_stay_in_bounds(max_slices):
    depth, budget = 16, min(max_slices, 16)
    transform = SampleSliceSetsd("image", max_slices=max_slices, axis=2)
    transform.set_random_state(seed=0)
    volume = torch.rand(1, 32, 24, depth) + 0.5  # no voxel is zero, so zero slices can only be padding
    sizes = set()
    for out in _draws(transform, volume, 300):
        slices, indices, roles = out["slices"], out["slice_indices"], out["slice_roles"]
        assert slices.shape == (max_slices, 1, 32, 24)
        assert indices.shape == roles.shape == (max_slices,)
        assert indices.dtype == torch.int64
        conditions, targets = _sets(out)
        assert 1 <= len(targets) and len(conditions) + len(targets) <= budget
        assert not set(conditions) & set(targets)
        assert len(set(conditions)) == len(conditions) and len(set(targets)) == len(targets)
        assert all(0 <= i < depth for i in [*conditions, *targets])
        # slot order: conditions, then targets, then padding
        n_c, n_t = len(conditions), len(targets)
        expected_roles = [CONDITION] * n_c + [TARGET] * n_t + [PADDING] * (max_slices - n_c - n_t)
        assert roles.tolist() == expected_roles
        padding, images = roles.numpy() == PADDING, slices.numpy().reshape(max_slices, -1)
        assert np.all(images[padding] == 0) and np.all(indices.numpy()[padding] == 0)
        assert np.all(images[~padding].min(axis=1) > 0)
        sizes.add((n_c, n_t))
    assert any(n_c == 0 and n_t < budget for n_c, n_t in sizes)  # unconditioned samples, not only full ones
    assert any(n_c > 0 for n_c, _ in sizes)  # and conditioned ones
    assert {1, budget} <= {n_t for _, n_t in sizes}  # target set sizes span 1..budget


def test_sets_are_evenly_spaced_and_sorted():
    transform = SampleSliceSetsd("image", max_slices=10)
    transform.set_random_state(seed=1)
    for out in _draws(transform, torch.rand(1, 8, 8, 16), 200):
        conditions, targets = _sets(out)
        assert len(np.unique(np.diff(targets))) <= 1  # one spacing between consecutive targets
        assert np.all(np.diff(targets) > 0) and np.all(np.diff(conditions) > 0)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_gathered_slices_are_the_indexed_slices(axis):
    shape = (2, 9, 11, 13)  # non-cubic: a wrong axis gives the wrong slice shape
    volume = torch.arange(np.prod(shape), dtype=torch.float32).reshape(shape)
    transform = SampleSliceSetsd("image", max_slices=8, axis=axis)
    transform.set_random_state(seed=2)
    for out in _draws(transform, volume, 30):
        plane = [size for dim, size in enumerate(shape[1:]) if dim != axis]
        assert out["slices"].shape == (8, 2, *plane)
        for slot in torch.nonzero(out["slice_roles"] != PADDING).flatten().tolist():
            index = int(out["slice_indices"][slot])
            torch.testing.assert_close(out["slices"][slot], volume.select(1 + axis, index))


def test_slice_values_match_indices_along_axis():
    volume = torch.arange(16, dtype=torch.float32).expand(1, 8, 8, 16).clone()  # value at slice z is z
    transform = SampleSliceSetsd("image", max_slices=20, axis=2)
    transform.set_random_state(seed=3)
    for out in _draws(transform, volume, 50):
        valid = out["slice_roles"] != PADDING
        values = out["slices"][valid]
        assert torch.all(values == out["slice_indices"][valid].float()[:, None, None, None])


def test_draws_cover_near_and_far_pairs_and_spacings():
    depth = 16
    transform = SampleSliceSetsd("image", max_slices=20, axis=2)
    transform.set_random_state(seed=4)
    distances, spacings = set(), set()
    for out in _draws(transform, torch.rand(1, 8, 8, depth), 300):
        conditions, targets = _sets(out)
        distances.update(abs(int(c) - int(p)) for c in conditions for p in targets)
        spacings.update(np.diff(targets).tolist())
    assert 1 in distances
    assert max(distances) >= depth - 2
    assert 1 in spacings and max(spacings) > 1


def test_draws_are_deterministic_under_a_seed():
    volume = torch.rand(1, 8, 8, 16)

    def sequence(seed: int) -> list[list[int]]:
        transform = SampleSliceSetsd("image", max_slices=10)
        transform.set_random_state(seed=seed)
        return [out["slice_indices"].tolist() + out["slice_roles"].tolist() for out in _draws(transform, volume, 20)]

    assert sequence(5) == sequence(5)
    assert sequence(5) != sequence(6)


def test_volume_without_channel_axis_is_refused_with_its_shape():
    with pytest.raises(ValueError, match=r"\(C, X, Y, Z\) volume, got shape \(16, 16, 8\)"):
        SampleSliceSetsd("image")({"image": torch.rand(16, 16, 8)})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"axis": 3}, "axis must be"),
        ({"axis": -1}, "axis must be"),
        ({"max_slices": 0}, "max_slices must be at least 1"),
        ({"keys": ["image", "label"]}, "one volume key"),
    ],
)
def test_invalid_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SampleSliceSetsd(**{"keys": "image", **kwargs})


def test_other_keys_are_kept_and_outputs_use_given_keys():
    transform = SampleSliceSetsd("image", max_slices=4, slices_key="s", indices_key="i", roles_key="r")
    out = transform({"image": torch.rand(1, 4, 4, 6), "sample_index": 7})
    assert out["sample_index"] == 7 and out["image"].shape == (1, 4, 4, 6)
    assert out["s"].shape == (4, 1, 4, 4) and out["i"].shape == out["r"].shape == (4,)
