"""Memorisation check: each synthetic volume's nearest real volume by MS-SSIM (cDPM, Peng et al. 2023, Fig. 5)."""

from __future__ import annotations

from typing import Any

import torch
from tqdm import tqdm

from .ms_ssim import ms_ssim
from .volumes import Volumes, stack_volumes


def nearest_neighbours(
    synthetic: Volumes,
    real: Volumes,
    threshold: float = 0.95,
    batch_size: int = 8,
    verbose: bool = True,
    **ms_ssim_kwargs: float,
) -> list[dict[str, Any]]:
    """For each synthetic volume, the real volume with the highest MS-SSIM to it, flagged when that is a near copy.

    Args:
        synthetic: volumes (N, C, X, Y, Z) or a sequence of (C, X, Y, Z).
        real: the training volumes (M, C, X, Y, Z) or a sequence, same volume shape.
        threshold: MS-SSIM at or above which a synthetic volume counts as a copy of its nearest real one.
        batch_size: real volumes compared at once.
        verbose: show a tqdm progress bar over the synthetic volumes.
        ms_ssim_kwargs: ``data_range`` and ``kernel_size`` of :func:`~common.metrics.ms_ssim`.

    Returns:
        one dict per synthetic volume, in order: ``{"synthetic": i, "nearest_real": j, "ms_ssim": score,
        "memorised": score >= threshold}``.
    """
    real_batch = stack_volumes(real)
    results = []
    for i, volume in enumerate(tqdm(stack_volumes(synthetic), desc="nearest real", disable=not verbose)):
        scores = torch.cat(
            [ms_ssim(volume.expand_as(chunk), chunk, **ms_ssim_kwargs) for chunk in real_batch.split(batch_size)]
        )
        score, nearest = (value.item() for value in torch.max(scores, dim=0))
        results.append({"synthetic": i, "nearest_real": nearest, "ms_ssim": score, "memorised": score >= threshold})
    return results
