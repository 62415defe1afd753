"""Gather volumes given as a batch tensor or as a sequence of channel-first volumes into one batch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

Volumes = torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray]
"""A batch (N, C, X, Y, Z) or a sequence of N volumes (C, X, Y, Z); 2D images (C, H, W) work alike."""


def stack_volumes(volumes: Volumes) -> torch.Tensor:
    """One plain float tensor (N, C, *spatial) from a batch or a sequence of (C, *spatial) volumes.

    MetaTensors lose their metadata (metrics need none, and plain tensors skip MONAI's per-operation overhead).
    """
    if isinstance(volumes, (torch.Tensor, np.ndarray)):
        batch = torch.as_tensor(volumes)
    else:
        batch = torch.stack([torch.as_tensor(v).as_subclass(torch.Tensor) for v in volumes])
    batch = batch.as_subclass(torch.Tensor)
    if batch.ndim not in (4, 5):
        raise ValueError(f"expected volumes (N, C, X, Y, Z) or images (N, C, H, W), got shape {tuple(batch.shape)}")
    return batch if batch.is_floating_point() else batch.float()
