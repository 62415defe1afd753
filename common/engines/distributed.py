"""Helpers of ``multi_gpu_train.json``: process-group set-up, DDP wrapping and the handlers each process attaches."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import ignite.distributed as idist
import torch
import torch.distributed as dist
from ignite.handlers import ProgressBar
from monai.handlers import StatsHandler, TensorBoardStatsHandler
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from common.engines.checkpoint import CheckpointSaver
from common.engines.field_writer import GeneratedFieldWriter
from common.engines.writers import GeneratedVolumeWriter, SamplePreviewHandler

#: Handlers that write files or print progress: attached by process 0 only, so checkpoints, TensorBoard events,
#: previews, generated volumes and fields, and progress bars appear once.
RANK_ZERO_ONLY = (
    CheckpointSaver,
    SamplePreviewHandler,
    GeneratedVolumeWriter,
    GeneratedFieldWriter,
    TensorBoardStatsHandler,
    StatsHandler,
    ProgressBar,
)


def local_device() -> torch.device:
    """The device of this ``torchrun`` process: ``cuda:<LOCAL_RANK>`` where CUDA is available, else the CPU."""
    return torch.device(f"cuda:{os.environ['LOCAL_RANK']}" if torch.cuda.is_available() else "cpu")


def init_process_group(device: torch.device) -> None:
    """Join the ``torchrun`` process group: NCCL for CUDA devices (also made current), gloo for the CPU.

    Ignite then adopts the group (``ignite.distributed.sync``) on every process: its first rank query creates a gloo
    group, a collective call, and the checkpoint handlers that query it run on process 0 only, which would wait for
    the others forever.
    """
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    idist.sync()


def wrap_ddp(module: nn.Module, device: torch.device) -> DistributedDataParallel:
    """``module`` on ``device`` wrapped in ``DistributedDataParallel`` (one device per process; CPU: gloo).

    Every trained module of a multi-process run goes through this (for the VQ-GAN: the autoencoder and both
    discriminators): ``backward`` averages the gradients over the processes, so all processes keep identical
    weights, and each forward pass first broadcasts process 0's buffers (batch-norm statistics). The VQ-GAN's EMA
    codebook is averaged over the processes by its quantizer (``ddp_sync``). Checkpoints hold the unwrapped module
    (Ignite's ``Checkpoint``; :func:`common.engines.checkpoint.unwrap` for ``model.pt``).
    """
    module = module.to(device)
    return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)


def process_rank() -> int:
    """This process's rank in the initialised process group; 0 without one."""
    return dist.get_rank() if dist.is_initialized() else 0


def handlers_for_rank(handlers: Sequence[Any], rank: int | None = None) -> list[Any]:
    """All ``handlers`` on process 0; on other processes those that are not :data:`RANK_ZERO_ONLY`.

    Selecting by type, not by position, keeps the EMA, LR-schedule and resume handlers on every process
    whatever the order of a bundle's handler list.

    Args:
        handlers: a trainer's handlers.
        rank: process rank; default the rank in the initialised process group (0 without one).
    """
    if rank is None:
        rank = process_rank()
    return list(handlers) if rank == 0 else [h for h in handlers if not isinstance(h, RANK_ZERO_ONLY)]
