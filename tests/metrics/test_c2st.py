"""The classifier two-sample test on cases with a known answer, on 16 + 16 volumes of 16³."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from common.metrics import c2st, c2st_network, stratified_folds

SIZE = 16
FAST = {"num_epochs": 15, "input_size": None, "verbose": False}


def _rescale(volumes: np.ndarray) -> torch.Tensor:
    """Volumes (N, 1, X, Y, Z) scaled to [0, 1] each, as the evaluation loads them."""
    low = volumes.min(axis=(1, 2, 3, 4), keepdims=True)
    high = volumes.max(axis=(1, 2, 3, 4), keepdims=True)
    return torch.as_tensor((volumes - low) / (high - low), dtype=torch.float32)


def _brains(num: int, seed: int) -> torch.Tensor:
    """``num`` smooth 'brains' (N, 1, 16, 16, 16): a ball of random radius filled with a smooth random texture."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, SIZE)] * 3, indexing="ij"))
    volumes = []
    for _ in range(num):
        ball = np.sqrt((grid**2).sum(0)) < 0.7 + 0.1 * rng.random()
        texture = ndimage.gaussian_filter(rng.standard_normal((SIZE,) * 3), 1.0) * 3
        volumes.append((ball * (0.5 + texture))[None])
    return _rescale(np.stack(volumes))


@pytest.fixture(scope="module")
def known_answers() -> dict[str, dict]:
    """C2ST of 16 real volumes against 16 more of the same distribution, blurred ones, and uniform noise."""
    brains = _brains(48, seed=0)
    real, same, to_blur = brains[:16], brains[16:32], brains[32:]
    blurred = _rescale(np.stack([ndimage.gaussian_filter(v.numpy(), (0, 1.0, 1.0, 1.0)) for v in to_blur]))
    noise = torch.rand(16, 1, SIZE, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    return {name: c2st(real, other, **FAST) for name, other in (("same", same), ("blurred", blurred), ("noise", noise))}


def test_two_samples_of_one_distribution_are_indistinguishable(known_answers):
    result = known_answers["same"]
    assert result["ci_low"] <= 0.5 <= result["ci_high"] and result["accuracy"] < 0.7 and result["p_value"] > 0.05
    assert result["num_per_set"] == 16 and result["num_folds"] == 5 and len(result["fold_accuracies"]) == 5
    assert result["accuracy"] == pytest.approx(np.mean(result["fold_accuracies"]), abs=0.05)  # folds of 6 or 7


def test_noise_is_told_apart_from_real(known_answers):
    result = known_answers["noise"]
    assert result["accuracy"] > 0.9 and result["ci_low"] > 0.75 and result["p_value"] < 1e-4


def test_slightly_blurred_real_volumes_fall_in_between(known_answers):
    same, blurred, noise = (known_answers[name]["accuracy"] for name in ("same", "blurred", "noise"))
    assert same + 0.2 < blurred < noise
    assert known_answers["blurred"]["ci_low"] > 0.5  # told apart significantly, yet not always


def test_c2st_is_deterministic_and_balances_the_sets():
    generator = torch.Generator().manual_seed(1)
    real, synthetic = torch.rand(7, 1, 8, 8, 8, generator=generator), torch.rand(4, 1, 8, 8, 8, generator=generator)
    options = {"num_epochs": 2, "input_size": 4, "verbose": False}
    first, second = c2st(real, synthetic, seed=3, **options), c2st(list(real), synthetic, seed=3, **options)
    assert first == second
    assert first["num_per_set"] == 4 and first["num_folds"] == 4 and first["input_size"] == [4, 4, 4]
    assert c2st(real, synthetic, num_epochs=1, input_size=(16, 4, 16), verbose=False)["input_size"] == [8, 4, 8]
    with pytest.raises(ValueError, match="at least 2 volumes per set"):
        c2st(real, synthetic[:1], **options)
    with pytest.raises(ValueError, match="of one shape"):
        c2st(real, synthetic[..., :4], **options)


def test_stratified_folds_hold_out_every_item_once_with_balanced_classes():
    folds = stratified_folds(7, 3, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(14))
    assert [(fold < 7).sum() for fold in folds] == [(fold >= 7).sum() for fold in folds] == [3, 2, 2]
    with pytest.raises(ValueError, match="num_folds"):
        stratified_folds(3, 4)


def test_c2st_network_gives_one_logit_per_volume_of_any_size():
    network = c2st_network(in_channels=2, channels=(4, 8)).eval()
    assert network(torch.rand(3, 2, 12, 16, 8)).shape == (3,)
