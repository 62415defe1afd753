"""Physical checks of synthetic volumes: intensity outside the head, and tumour-to-brain contrast against real.

Both take volumes as :func:`common.evaluation.evaluate` loads them: each scaled to [0, 1] by its own minimum and
maximum, so intensities are fractions of the volume's intensity range (for skull-stripped MRI the minimum is the
background). Masks are integer label maps on the volumes' grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .volumes import Volumes, stack_volumes


def background_mask(real: Volumes, threshold: float = 0.05, fraction: float = 0.95) -> torch.Tensor:
    """The voxels that are background in (nearly) all real volumes: the head mask of unconditional models.

    A voxel is background in a volume when all its channels are at most ``threshold`` (a fraction of the volume's
    [0, 1] range); it is in the mask when it is background in at least ``fraction`` of the real volumes.

    Args:
        real: real volumes (N, C, X, Y, Z) or a sequence of (C, X, Y, Z), scaled to [0, 1] each.
        threshold: intensity at or below which a voxel is background.
        fraction: share of the real volumes in which a voxel must be background.

    Returns:
        a boolean mask (1, 1, X, Y, Z), true outside the head.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    is_background = (stack_volumes(real) <= threshold).all(dim=1, keepdim=True).float()
    return is_background.mean(dim=0, keepdim=True) >= fraction - 1e-6


def background_intensity(volumes: Volumes, background: torch.Tensor) -> torch.Tensor:
    """Mean intensity outside the head, per volume, as a fraction of each volume's intensity range.

    Args:
        volumes: volumes (N, C, X, Y, Z) or a sequence of (C, X, Y, Z), scaled to [0, 1] each.
        background: boolean masks (N, 1, X, Y, Z), true outside the head (e.g. ``mask == 0`` of the conditioning
            masks), or one mask (1, 1, X, Y, Z) for all volumes (e.g. :func:`background_mask` of the real set).

    Returns:
        (N,) mean over the background voxels and channels of each volume; 0 for a background as dark as the
        darkest voxel, 1 for one as bright as the brightest.

    Raises:
        ValueError: a mask of the wrong shape, or one without background voxels.
    """
    batch = stack_volumes(volumes)
    background = torch.as_tensor(background, dtype=torch.bool)
    if background.ndim != 5 or background.shape[1] != 1 or background.shape[0] not in (1, len(batch)):
        raise ValueError(f"expected masks (N, 1, X, Y, Z) or (1, 1, X, Y, Z), got {tuple(background.shape)}")
    background = background.expand(len(batch), *background.shape[1:])
    counts = background.flatten(1).sum(1)
    if (counts == 0).any():
        raise ValueError(f"masks without background voxels: volumes {torch.nonzero(counts == 0).flatten().tolist()}")
    sums = (batch * background).flatten(1).sum(1)
    return sums / (counts * batch.shape[1])


def tumour_brain_ratio(
    volumes: Volumes, masks: Volumes, tumour_labels: Sequence[int] = (2,), brain_labels: Sequence[int] = (1,)
) -> torch.Tensor:
    """Mean intensity in the tumour divided by mean intensity in the rest of the brain, per volume.

    Args:
        volumes: volumes (N, C, X, Y, Z) or a sequence of (C, X, Y, Z), scaled to [0, 1] each (channels averaged).
        masks: label maps (N, 1, X, Y, Z) on the volumes' grid.
        tumour_labels: labels of the tumour (e.g. Med-DDPM's 2; BraTS's 1, 2, 4).
        brain_labels: labels of the brain outside the tumour (Med-DDPM's 1).

    Returns:
        (N,) ratios; NaN for a volume without tumour or brain voxels, or with a brain of mean 0.
    """
    batch, labels = stack_volumes(volumes).mean(dim=1, keepdim=True), stack_volumes(masks).round().long()
    if labels.shape != batch.shape:
        raise ValueError(f"expected masks {tuple(batch.shape)} for volumes {tuple(stack_volumes(volumes).shape)}")
    means = []
    for region in (tumour_labels, brain_labels):
        inside = torch.isin(labels, torch.as_tensor(list(region))).flatten(1)
        means.append((batch.flatten(1) * inside).sum(1) / inside.sum(1))  # NaN where empty
    ratio = means[0] / means[1]
    return torch.where(torch.isfinite(ratio), ratio, torch.full_like(ratio, float("nan")))
