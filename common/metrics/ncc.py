"""Global normalised cross-correlation of paired volumes (MONAI only has the local, windowed version as a loss)."""

from __future__ import annotations

import torch


def normalised_cross_correlation(image: torch.Tensor, reference: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of the voxel intensities of each pair of volumes.

    Args:
        image: volumes (B, C, X, Y, Z) (any number of trailing dimensions).
        reference: paired volumes, same shape.
        eps: guards the division for constant volumes (whose correlation is then 0).

    Returns:
        (B,) correlations in [-1, 1]; 1 for volumes equal up to a positive linear intensity map.
    """
    if image.shape != reference.shape:
        raise ValueError(f"shapes differ: {tuple(image.shape)} and {tuple(reference.shape)}")
    a = image.flatten(1).double()
    b = reference.flatten(1).double()
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)).float()
