"""DelayedEMAHandler: a copy of the online network until ``start``, then an EMA update every ``every`` iterations."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers import EMAHandler

from common.engines import CheckpointSaver, DelayedEMAHandler, ResumeFromLatestCheckpoint

MOMENTUM = 0.25


def weights(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


def training(ema_factory, iterations: int, ckpt_dir: Path | None = None) -> dict:
    """SGD on a linear model for ``iterations``; the online and EMA weights after each iteration, the handler."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = [torch.randn(4, 3)]  # one batch every iteration: a resumed run sees what an uninterrupted one does

    def step(engine: Engine, batch: torch.Tensor) -> float:
        optimizer.zero_grad()
        loss = ((model(batch) - 1.0) ** 2).mean()
        loss.backward()
        optimizer.step()
        return loss.item()

    engine = Engine(step)
    ema = ema_factory(model)
    objects = {"network": model, "ema": ema.ema_model, "optimizer": optimizer}
    if ckpt_dir is not None:  # the bundles' order: resume, EMA, checkpoint (saved after the EMA's update)
        ResumeFromLatestCheckpoint(ckpt_dir, objects).attach(engine)
    ema.attach(engine)
    if ckpt_dir is not None:
        CheckpointSaver(ckpt_dir, objects, save_interval=1, keep_last=1).attach(engine)
    history: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @engine.on(Events.ITERATION_COMPLETED)
    def record(engine: Engine) -> None:
        history[engine.state.iteration] = (weights(model), weights(ema.ema_model))

    engine.run(data, max_epochs=iterations)
    return {"history": history, "ema": ema, "engine": engine}


def test_copies_until_start_then_updates_every_interval_with_the_momentum():
    run = training(lambda m: DelayedEMAHandler(m, momentum=MOMENTUM, start=3, every=2), iterations=9)
    history = run["history"]
    for iteration in (1, 2, 3):  # a copy of the online network up to and including the start iteration
        online, ema = history[iteration]
        torch.testing.assert_close(ema, online, rtol=0, atol=0)
    for iteration in (4, 6, 8):  # no update in between: the EMA keeps its weights while the network trains
        online, ema = history[iteration]
        torch.testing.assert_close(ema, history[iteration - 1][1], rtol=0, atol=0)
        assert not torch.allclose(ema, online)
    for iteration in (5, 7, 9):  # theta_ema <- (1 - m) theta_ema + m theta
        online, ema = history[iteration]
        torch.testing.assert_close(ema, (1 - MOMENTUM) * history[iteration - 1][1] + MOMENTUM * online)
    assert run["engine"].state.ema_momentum == MOMENTUM


def test_start_zero_every_one_is_ignites_ema_handler():
    delayed = training(lambda m: DelayedEMAHandler(m, momentum=MOMENTUM), iterations=5)["history"]
    plain = training(lambda m: EMAHandler(m, momentum=MOMENTUM), iterations=5)["history"]
    for iteration in range(1, 6):
        torch.testing.assert_close(delayed[iteration][1], plain[iteration][1], rtol=0, atol=0)
    assert not torch.allclose(delayed[5][1], delayed[5][0])  # an average, not a copy


def test_resume_continues_the_same_schedule(tmp_path):
    def factory(model: torch.nn.Module) -> DelayedEMAHandler:
        return DelayedEMAHandler(model, momentum=MOMENTUM, start=2, every=3)

    straight = training(factory, iterations=9)
    training(factory, iterations=5, ckpt_dir=tmp_path)  # stops right after the first update (5; then 8)
    resumed = training(factory, iterations=9, ckpt_dir=tmp_path)
    assert resumed["engine"].state.iteration == 9 and min(resumed["history"]) == 6
    for iteration in range(6, 10):
        torch.testing.assert_close(resumed["history"][iteration][1], straight["history"][iteration][1])


def test_copy_includes_buffers():
    model = torch.nn.BatchNorm1d(2)
    handler = DelayedEMAHandler(model, momentum=MOMENTUM, handle_buffers="ema_train")
    model.running_mean.fill_(3.0)
    handler.copy_model()
    torch.testing.assert_close(handler.ema_model.running_mean, torch.full((2,), 3.0))


@pytest.mark.parametrize(("start", "every"), [(-1, 1), (0, 0)])
def test_rejects_a_negative_start_or_an_interval_below_one(start, every):
    with pytest.raises(ValueError, match="start must be >= 0 and every >= 1"):
        DelayedEMAHandler(torch.nn.Linear(1, 1), momentum=MOMENTUM, start=start, every=every)
