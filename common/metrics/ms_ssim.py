"""MS-SSIM of paired volumes and its pairwise mean over a set, the diversity score of cDPM (Peng et al. 2023).

MONAI's ``MultiScaleSSIMMetric`` uses the five scale weights of Wang et al. (2003), which need volumes of at least
176 voxels per side with an 11-voxel kernel; brain MRI at 64³ to 160³ is smaller. :func:`ms_ssim_weights` therefore
keeps as many of the finest scales as fit and renormalises their weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import MultiScaleSSIMMetric
from tqdm import tqdm

from .volumes import Volumes, stack_volumes

STANDARD_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Exponents of the five scales of MS-SSIM, finest first (Wang, Simoncelli and Bovik 2003)."""


def _side_divisor(levels: int) -> int:
    """The divisor d of the side s for ``levels`` scales: every side needs ``s // d >= kernel_size``.

    Two conditions, whichever is stricter: MONAI's ``compute_ms_ssim`` rejects sides with
    ``s // max(1, levels - 1) ** 2 <= kernel_size - 1``, and the convolution at the coarsest scale, after
    ``levels - 1`` halvings, needs ``s // 2 ** (levels - 1) >= kernel_size``. So d is 1, 2, 4, 9, 16 for 1 to 5
    levels (MONAI's check alone would let 2 levels through on sides that fail at the second scale).
    """
    return max(max(1, levels - 1) ** 2, 2 ** (levels - 1))


def ms_ssim_weights(spatial_size: Sequence[int], kernel_size: int = 11) -> tuple[float, ...]:
    """Scale weights of MS-SSIM for volumes of ``spatial_size``: the most scales that fit, renormalised to sum 1.

    The first ``levels`` of :data:`STANDARD_WEIGHTS` are kept (the finest scales, where the Gaussian window still
    covers the downsampled volume) for the largest ``levels`` in 1..5 whose coarsest scale fits the smallest side,
    then divided by their sum so that the exponents still sum to 1 (identical volumes score 1 and scores stay in
    [0, 1]). With an 11-voxel kernel, sides from 44 get 3 scales (64³), from 99 4 scales (128³, 160³), from 176
    all 5; with a 7-voxel kernel, 32³ gets 3 scales. One scale is plain SSIM.

    Args:
        spatial_size: the spatial shape (X, Y, Z) or (H, W).
        kernel_size: side of the Gaussian window.

    Raises:
        ValueError: when even one scale does not fit (a side smaller than ``kernel_size``).
    """
    fitting = [
        levels
        for levels in range(1, len(STANDARD_WEIGHTS) + 1)
        if all(side // _side_divisor(levels) >= kernel_size for side in spatial_size)
    ]
    if not fitting:
        raise ValueError(
            f"MS-SSIM with kernel_size {kernel_size} needs every side >= {kernel_size}, got size {tuple(spatial_size)}"
        )
    weights = STANDARD_WEIGHTS[: max(fitting)]
    return tuple(w / sum(weights) for w in weights)


def ms_ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, kernel_size: int = 11) -> torch.Tensor:
    """MS-SSIM of each pair of two batches (N, C, X, Y, Z) or (N, C, H, W), as a tensor (N,).

    Uses MONAI's ``MultiScaleSSIMMetric`` (Gaussian window, sigma 1.5) with :func:`ms_ssim_weights`; channels are
    averaged. ``data_range`` is the intensity range (max - min) of the volumes.
    """
    if a.shape != b.shape:
        raise ValueError(f"MS-SSIM compares paired batches of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    metric = MultiScaleSSIMMetric(
        spatial_dims=a.ndim - 2,
        data_range=data_range,
        kernel_size=kernel_size,
        weights=ms_ssim_weights(a.shape[2:], kernel_size),
        reduction="none",
    )
    return metric(y_pred=a, y=b).view(-1)


def sample_pairs(num_volumes: int, num_pairs: int, seed: int = 0) -> np.ndarray:
    """``num_pairs`` distinct unordered pairs (i, j), i < j, of ``num_volumes`` indices, as an int array (P, 2).

    Drawn without replacement by a NumPy ``Generator`` seeded with ``seed``; all pairs, in order, when
    ``num_pairs`` is at least ``num_volumes * (num_volumes - 1) / 2``.
    """
    if num_volumes < 2:
        raise ValueError(f"pairs need at least 2 volumes, got {num_volumes}")
    first, second = np.triu_indices(num_volumes, k=1)
    if num_pairs < len(first):
        chosen = np.sort(np.random.default_rng(seed).choice(len(first), size=num_pairs, replace=False))
        first, second = first[chosen], second[chosen]
    return np.stack([first, second], axis=1)


def pairwise_ms_ssim(
    volumes: Volumes, num_pairs: int = 100, seed: int = 0, verbose: bool = True, **ms_ssim_kwargs: float
) -> float:
    """Mean MS-SSIM over random pairs of distinct volumes of one set: the diversity score (lower = more diverse).

    Args:
        volumes: the set, (N, C, X, Y, Z) or a sequence of (C, X, Y, Z) volumes of one shape.
        num_pairs: pairs to average, drawn by :func:`sample_pairs` (all pairs if there are fewer).
        seed: seed of the pair draw.
        verbose: show a tqdm progress bar over the pairs.
        ms_ssim_kwargs: ``data_range`` and ``kernel_size`` of :func:`ms_ssim`.
    """
    batch = stack_volumes(volumes)
    scores = [
        ms_ssim(batch[i : i + 1], batch[j : j + 1], **ms_ssim_kwargs)
        for i, j in tqdm(sample_pairs(len(batch), num_pairs, seed), desc="MS-SSIM pairs", disable=not verbose)
    ]
    return torch.cat(scores).mean().item()


def diversity_report(
    synthetic: Volumes, real: Volumes, num_pairs: int = 100, seed: int = 0, **kwargs: float
) -> dict[str, float]:
    """Pairwise MS-SSIM of a synthetic and a real set, and their absolute difference.

    A synthetic set as diverse as the real one scores alike (cDPM reports 0.786 against 0.792 for real ADNI
    volumes); a higher synthetic score means less diversity (mode collapse). ``kwargs`` go to
    :func:`pairwise_ms_ssim` (``verbose``, ``data_range``, ``kernel_size``).

    Returns:
        ``{"ms_ssim_synthetic", "ms_ssim_real", "ms_ssim_abs_difference"}``.
    """
    synthetic_score = pairwise_ms_ssim(synthetic, num_pairs=num_pairs, seed=seed, **kwargs)
    real_score = pairwise_ms_ssim(real, num_pairs=num_pairs, seed=seed, **kwargs)
    return {
        "ms_ssim_synthetic": synthetic_score,
        "ms_ssim_real": real_score,
        "ms_ssim_abs_difference": abs(synthetic_score - real_score),
    }
