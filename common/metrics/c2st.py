"""Classifier two-sample test (C2ST, Lopez-Paz & Oquab, ICLR 2017): can a small 3D CNN tell real from synthetic?

A realism figure that needs no pretrained weights: a small 3D CNN is trained from scratch, with stratified k-fold
cross-validation, to label volumes real (0) or synthetic (1), and its accuracy on the held-out volumes, pooled over
the folds (each volume is predicted once, by the network that did not see it), is the statistic. 0.5 means the
classifier cannot tell the sets apart (as for two samples of one distribution); 1.0 means it always can. The
confidence interval is the exact (Clopper-Pearson) binomial interval of the pooled accuracy, and ``p_value`` the
one-sided binomial test of "accuracy > 0.5".

What the classifier sees, and what it cannot use as a shortcut:

- only voxel values: no file names, headers, affines, data types or original sizes;
- volumes as given, so both sets must be normalised the same way beforehand (:func:`common.evaluation.evaluate`
  orients them to RAS, pads or crops them to one size and scales each to [0, 1] by its minimum and maximum: a
  global intensity offset or scale of a whole volume is therefore invisible to it);
- each volume shrunk to at most ``input_size`` by area averaging (default 32³), so detail finer than the shrinking
  factor is seen only through its local averages (e.g. noise as a residual variance, not quantisation steps);
- equal numbers of real and synthetic volumes (the larger set is cut to a seeded random subset of the smaller
  one's size) and folds with equal numbers of each, so predicting the majority class scores exactly 0.5;
- a network trained for a fixed number of epochs with fixed seeds: no model selection on the held-out volumes.

It can use anything else that differs: anatomy, intensity distributions, contrasts, textures, noise and artefacts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from scipy.stats import binomtest
from torch import nn
from tqdm import tqdm

from .volumes import Volumes, stack_volumes


def c2st_network(in_channels: int = 1, channels: Sequence[int] = (8, 16, 32)) -> nn.Sequential:
    """The C2ST classifier: strided 3D convolution blocks, global average pooling and one logit per volume.

    Each MONAI ``Convolution`` block (3³ kernel, stride 2, batch norm, PReLU) halves the size; pooling makes it
    accept any input size. Maps (N, ``in_channels``, X, Y, Z) to logits (N,), positive for "synthetic".
    """
    blocks = [
        Convolution(3, c_in, c_out, strides=2, kernel_size=3, act="PRELU", norm="BATCH")
        for c_in, c_out in zip((in_channels, *channels[:-1]), channels, strict=True)
    ]
    return nn.Sequential(*blocks, nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(channels[-1], 1), nn.Flatten(0))


def stratified_folds(num_per_class: int, num_folds: int, seed: int = 0) -> list[np.ndarray]:
    """Held-out indices of each fold, for two classes of ``num_per_class`` items each (stratified k-fold).

    Each class is shuffled (seeded) and split into ``num_folds`` near-equal parts; fold ``f`` holds part ``f`` of
    both classes, as indices into the concatenation (class 0 first, then class 1, i.e. ``num_per_class + i``). Every
    index is held out exactly once, and every fold has as many items of one class as of the other.
    """
    if not 2 <= num_folds <= num_per_class:
        raise ValueError(f"need 2 <= num_folds <= items per class, got {num_folds} folds of {num_per_class} items")
    rng = np.random.default_rng(seed)
    parts = [np.array_split(rng.permutation(num_per_class) + offset, num_folds) for offset in (0, num_per_class)]
    return [np.concatenate([first, second]) for first, second in zip(*parts, strict=True)]


def _train(
    network: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    num_epochs: int,
    batch_size: int,
    learning_rate: float,
    generator: torch.Generator,
) -> None:
    """Train ``network`` on inputs (N, C, X, Y, Z) and labels (N,) in {0, 1} with Adam and the logistic loss."""
    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
    network.train()
    for _ in range(num_epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for batch in order.split(batch_size):
            if len(batch) < 2:  # batch norm needs two volumes
                continue
            optimizer.zero_grad()
            loss = F.binary_cross_entropy_with_logits(network(inputs[batch]), labels[batch])
            loss.backward()
            optimizer.step()


def c2st(
    real: Volumes,
    synthetic: Volumes,
    num_folds: int = 5,
    num_epochs: int = 30,
    input_size: Sequence[int] | int | None = 32,
    channels: Sequence[int] = (8, 16, 32),
    batch_size: int = 8,
    learning_rate: float = 1e-3,
    confidence: float = 0.95,
    seed: int = 0,
    device: str | torch.device | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Classifier two-sample test of a synthetic against a real set of volumes (see the module docstring).

    Args:
        real: m volumes (m, C, X, Y, Z) or a sequence of (C, X, Y, Z), normalised like ``synthetic``.
        synthetic: n volumes of the same shape.
        num_folds: folds of the stratified cross-validation; fewer when a set has fewer volumes (at least 2).
        num_epochs: training epochs per fold.
        input_size: largest size (X, Y, Z), or side, fed to the network: larger volumes are shrunk to it by area
            averaging (per axis); ``None`` keeps them as they are.
        channels: output channels of the network's convolution blocks (see :func:`c2st_network`).
        batch_size: volumes per optimisation step.
        learning_rate: Adam's learning rate.
        confidence: level of the confidence interval.
        seed: seed of the subset, the folds, the network initialisation and the batch order: results are
            deterministic for a given seed (cuDNN runs in deterministic mode).
        device: where to train; default CUDA when available, else the CPU.
        verbose: show a tqdm progress bar over the folds.

    Returns:
        ``{"accuracy", "ci_low", "ci_high", "confidence", "p_value", "fold_accuracies", "num_per_set", "num_folds",
        "num_epochs", "input_size"}``: the pooled held-out accuracy over the 2·k volumes used, k = min(m, n), its
        exact binomial confidence interval, the one-sided p-value of "accuracy > 0.5", the accuracy of each fold,
        and the settings actually used.

    Raises:
        ValueError: volumes of different shapes, or fewer than 2 volumes in a set.
    """
    real_batch, synthetic_batch = stack_volumes(real), stack_volumes(synthetic)
    if real_batch.shape[1:] != synthetic_batch.shape[1:] or real_batch.ndim != 5:
        raise ValueError(
            f"expected two sets of volumes (N, C, X, Y, Z) of one shape, got {tuple(real_batch.shape)} and "
            f"{tuple(synthetic_batch.shape)}"
        )
    num_per_set = min(len(real_batch), len(synthetic_batch))
    if num_per_set < 2:
        raise ValueError(f"C2ST needs at least 2 volumes per set, got {len(real_batch)} and {len(synthetic_batch)}")
    num_folds = min(num_folds, num_per_set)
    rng = np.random.default_rng(seed)
    subsets = [torch.as_tensor(np.sort(rng.permutation(len(b))[:num_per_set])) for b in (real_batch, synthetic_batch)]
    inputs = torch.cat([real_batch[subsets[0]], synthetic_batch[subsets[1]]])
    if input_size is not None:
        largest = (input_size,) * 3 if isinstance(input_size, int) else input_size
        inputs = F.interpolate(
            inputs, size=[min(a, b) for a, b in zip(largest, inputs.shape[2:], strict=True)], mode="area"
        )
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    inputs = inputs.to(device)
    labels = torch.cat([torch.zeros(num_per_set), torch.ones(num_per_set)]).to(device)
    correct = torch.zeros(len(inputs), dtype=torch.bool)
    folds = stratified_folds(num_per_set, num_folds, seed)
    fold_accuracies = []
    with (
        torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
        torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True),
    ):
        for fold, held_out in enumerate(tqdm(folds, desc="C2ST folds", disable=not verbose)):
            torch.manual_seed(seed + fold)
            train = np.setdiff1d(np.arange(len(inputs)), held_out)
            network = c2st_network(inputs.shape[1], channels).to(device)
            generator = torch.Generator().manual_seed(seed + fold)
            _train(network, inputs[train], labels[train], num_epochs, batch_size, learning_rate, generator)
            network.eval()
            with torch.no_grad():
                predicted = (network(inputs[held_out]) > 0).float()
            correct[held_out] = (predicted == labels[held_out]).cpu()
            fold_accuracies.append(int(correct[held_out].sum()) / len(held_out))
    successes, trials = int(correct.sum()), len(correct)
    interval = binomtest(successes, trials).proportion_ci(confidence, method="exact")
    return {
        "accuracy": successes / trials,
        "ci_low": float(interval.low),
        "ci_high": float(interval.high),
        "confidence": confidence,
        "p_value": float(binomtest(successes, trials, 0.5, alternative="greater").pvalue),
        "fold_accuracies": fold_accuracies,
        "num_per_set": num_per_set,
        "num_folds": num_folds,
        "num_epochs": num_epochs,
        "input_size": list(inputs.shape[2:]),
    }
