"""Helpers of a multi-GPU run: writers and progress bars on process 0 only, DDP-wrapped networks saved unwrapped."""

from __future__ import annotations

from pathlib import Path

import ignite.distributed as idist
import numpy as np
import pytest
import torch
import torch.distributed as dist
from ignite.engine import Engine
from ignite.handlers import EMAHandler, ProgressBar
from monai.handlers import LrScheduleHandler, TensorBoardStatsHandler

from common.engines import (
    CheckpointSaver,
    GeneratedFieldWriter,
    GeneratedVolumeWriter,
    ResumeFromLatestCheckpoint,
    SamplePreviewHandler,
    handlers_for_rank,
    local_device,
    wrap_ddp,
)


def test_only_process_zero_writes(tmp_path: Path):
    network = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    handlers = [
        ResumeFromLatestCheckpoint(tmp_path, {"network": network}),
        EMAHandler(network),
        LrScheduleHandler(torch.optim.lr_scheduler.StepLR(optimizer, 1)),
        CheckpointSaver(tmp_path, {"network": network}),
        SamplePreviewHandler(network, sampler=None, output_dir=tmp_path),
        GeneratedVolumeWriter(tmp_path),
        GeneratedFieldWriter(tmp_path, affine=np.eye(4)),
        TensorBoardStatsHandler(log_dir=str(tmp_path)),
        ProgressBar(),
    ]
    assert handlers_for_rank(handlers, rank=0) == handlers
    assert handlers_for_rank(handlers) == handlers  # no process group: a single process writes everything
    assert handlers_for_rank(handlers, rank=1) == handlers[:3]  # resume, EMA and LR schedule run everywhere


@pytest.fixture
def single_process_group(monkeypatch):
    """A gloo process group of one process, as ``torchrun --nproc_per_node=1`` would start."""
    monkeypatch.setenv("LOCAL_RANK", "0")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    idist.sync()  # Ignite caches the distributed context: adopt the group, and forget it in finalize
    yield
    idist.finalize()  # destroys the group; Ignite's handlers of later tests then see a single process again


def test_wrapped_network_is_saved_and_resumed_without_the_ddp_prefix(single_process_group, tmp_path: Path):
    torch.manual_seed(0)
    network = wrap_ddp(torch.nn.Linear(2, 1), local_device())
    assert isinstance(network, torch.nn.parallel.DistributedDataParallel)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)

    def step(engine: Engine, batch: torch.Tensor) -> float:
        optimizer.zero_grad()
        loss = network(batch).square().mean()
        loss.backward()
        optimizer.step()
        return loss.item()

    trainer = Engine(step)
    final = tmp_path / "model.pt"
    objects = {"network": network, "optimizer": optimizer}
    CheckpointSaver(tmp_path, objects, save_interval=2, final_model={"path": final, "model": network}).attach(trainer)
    trainer.run([torch.ones(1, 2)] * 2)
    saved = torch.load(tmp_path / "checkpoint_2.pt", weights_only=True)["network"]
    assert saved.keys() == torch.load(final, weights_only=True).keys() == {"weight", "bias"}
    torch.testing.assert_close(saved, network.module.state_dict())

    restored = wrap_ddp(torch.nn.Linear(2, 1), local_device())
    resumed = Engine(lambda engine, batch: None)
    ResumeFromLatestCheckpoint(tmp_path, {"network": restored}).attach(resumed)
    resumed.run([0, 0], max_epochs=2)  # resumes after the checkpoint's epoch 1
    assert resumed.state.iteration == 4
    torch.testing.assert_close(restored.module.state_dict(), saved)
