"""Batch preparation for mask-conditioned diffusion with MONAI engines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from monai.engines.utils import DiffusionPrepareBatch, PrepareBatch


class ConcatDiffusionPrepareBatch(DiffusionPrepareBatch):
    """``DiffusionPrepareBatch`` whose condition is concatenated to the noisy image (``mode="concat"``).

    For a batch ``{"image": (B, C_img, X, Y, Z), condition_name: (B, C_cond, X, Y, Z)}`` the trainer's inferer
    (``monai.inferers.DiffusionInferer``) is called with ``noise``, ``timesteps``, ``condition`` and ``mode``, and
    the network sees ``cat([x_t, condition], dim=1)``; the loss target is the noise.
    """

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple, dict]:
        images, target, args, infer_kwargs = super().__call__(batchdata, device, non_blocking, **kwargs)
        infer_kwargs["mode"] = "concat"
        return images, target, args, infer_kwargs


class ConditionOnlyPrepareBatch(PrepareBatch):
    """Return the condition as the engine input (and no target), for evaluators that sample from a condition.

    Args:
        condition_key: batch key of the condition tensor, shape (B, C_cond, X, Y, Z).
    """

    def __init__(self, condition_key: str = "condition") -> None:
        self.condition_key = condition_key

    def __call__(
        self,
        batchdata: Mapping[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, None]:
        return batchdata[self.condition_key].to(device=device, non_blocking=non_blocking, **kwargs), None
