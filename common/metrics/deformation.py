"""Quality of dense displacement fields: Jacobian determinant and the share of folded voxels."""

from __future__ import annotations

import torch


def _check_field(field: torch.Tensor) -> None:
    if field.ndim != 5 or field.shape[1] != 3:
        raise ValueError(f"expected displacement fields (B, 3, X, Y, Z), got {tuple(field.shape)}")
    if min(field.shape[2:]) < 2:
        raise ValueError(f"every spatial side needs at least 2 voxels for finite differences, got {tuple(field.shape)}")


def jacobian_determinant(field: torch.Tensor) -> torch.Tensor:
    """Jacobian determinant of the map x -> x + field(x), per voxel.

    Derivatives are finite differences along each voxel axis (``torch.gradient``): central differences inside the
    volume, one-sided first-order differences on its faces. The field is in voxels with channel order (X, Y, Z), so
    the Jacobian is ``I + d field_i / d x_j`` and no voxel spacing enters (the determinant is a volume ratio).

    Args:
        field: displacement fields (B, 3, X, Y, Z) in voxels.

    Returns:
        (B, X, Y, Z) determinants: 1 where the map preserves volume, <= 0 where it folds.
    """
    _check_field(field)
    field = field.double()
    jacobian = torch.stack(torch.gradient(field, dim=(2, 3, 4)), dim=2)  # (B, 3 components, 3 axes, X, Y, Z)
    jacobian = jacobian.permute(0, 3, 4, 5, 1, 2) + torch.eye(3, dtype=field.dtype, device=field.device)
    return torch.linalg.det(jacobian).float()


def folding_fraction(field: torch.Tensor) -> torch.Tensor:
    """Share of voxels where the map x -> x + field(x) folds (Jacobian determinant <= 0).

    Args:
        field: displacement fields (B, 3, X, Y, Z) in voxels.

    Returns:
        (B,) fractions in [0, 1].
    """
    return (jacobian_determinant(field) <= 0).flatten(1).float().mean(dim=1)
