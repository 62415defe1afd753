"""Helpers of ``multi_gpu_train.json``: process-group set-up and the handlers each process attaches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from ignite.handlers import ProgressBar
from monai.handlers import StatsHandler, TensorBoardStatsHandler

from common.engines.checkpoint import CheckpointSaver
from common.engines.writers import GeneratedVolumeWriter, SamplePreviewHandler

#: Handlers that write files or print progress: attached by process 0 only, so checkpoints, TensorBoard events,
#: previews and progress bars appear once.
RANK_ZERO_ONLY = (
    CheckpointSaver,
    SamplePreviewHandler,
    GeneratedVolumeWriter,
    TensorBoardStatsHandler,
    StatsHandler,
    ProgressBar,
)


def init_process_group(device: torch.device) -> None:
    """Join the ``torchrun`` process group: NCCL for CUDA devices (also made current), gloo for the CPU."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def handlers_for_rank(handlers: Sequence[Any], rank: int | None = None) -> list[Any]:
    """All ``handlers`` on process 0; on other processes those that are not :data:`RANK_ZERO_ONLY`.

    Selecting by type, not by position, keeps the EMA, LR-schedule and resume handlers on every process
    whatever the order of a bundle's handler list.

    Args:
        handlers: a trainer's handlers.
        rank: process rank; default the rank in the initialised process group (0 without one).
    """
    if rank is None:
        rank = dist.get_rank() if dist.is_initialized() else 0
    return list(handlers) if rank == 0 else [h for h in handlers if not isinstance(h, RANK_ZERO_ONLY)]
