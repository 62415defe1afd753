"""Handlers kept on each process of a multi-GPU run: writers and progress bars on process 0 only."""

from __future__ import annotations

from pathlib import Path

import torch
from ignite.handlers import EMAHandler, ProgressBar
from monai.handlers import LrScheduleHandler, TensorBoardStatsHandler

from common.engines import CheckpointSaver, ResumeFromLatestCheckpoint, SamplePreviewHandler, handlers_for_rank


def test_only_process_zero_writes(tmp_path: Path):
    network = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    handlers = [
        ResumeFromLatestCheckpoint(tmp_path, {"network": network}),
        EMAHandler(network),
        LrScheduleHandler(torch.optim.lr_scheduler.StepLR(optimizer, 1)),
        CheckpointSaver(tmp_path, {"network": network}),
        SamplePreviewHandler(network, sampler=None, output_dir=tmp_path),
        TensorBoardStatsHandler(log_dir=str(tmp_path)),
        ProgressBar(),
    ]
    assert handlers_for_rank(handlers, rank=0) == handlers
    assert handlers_for_rank(handlers) == handlers  # no process group: a single process writes everything
    assert handlers_for_rank(handlers, rank=1) == handlers[:3]  # resume, EMA and LR schedule run everywhere
