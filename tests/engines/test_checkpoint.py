"""CheckpointSaver / ResumeFromLatestCheckpoint: Ignite's atomic checkpoints, rotation across runs, resume."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine
from ignite.handlers import EMAHandler

from common.engines import CheckpointSaver, ResumeFromLatestCheckpoint, latest_checkpoint
from common.engines.checkpoint import checkpoint_iteration, checkpoints_in
from common.errors import InputError

REPO = Path(__file__).resolve().parents[2]


def _training(
    ckpt_dir: Path, max_epochs: int, resume: bool | str = True, keep_last: int = 2, save_interval: int = 2
) -> tuple[Engine, torch.nn.Module, torch.optim.Optimizer, Path]:
    """A tiny Ignite training loop on a linear model: returns (engine, model, optimizer, final_model_path)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)

    def step(engine: Engine, batch: torch.Tensor) -> float:
        optimizer.zero_grad()
        loss = (model(batch) ** 2).mean()
        loss.backward()
        optimizer.step()
        scheduler.step()
        return loss.item()

    engine = Engine(step)
    objects = {"network": model, "optimizer": optimizer, "lr_scheduler": scheduler}
    ResumeFromLatestCheckpoint(ckpt_dir, objects, enabled=resume).attach(engine)
    final = ckpt_dir / "model.pt"
    CheckpointSaver(
        ckpt_dir, objects, save_interval=save_interval, keep_last=keep_last, final_model={"path": final, "model": model}
    ).attach(engine)
    data = [torch.ones(1, 2)] * 4
    engine.run(data, max_epochs=max_epochs)
    return engine, model, optimizer, final


def _names(ckpt_dir: Path) -> list[str]:
    return [path.name for path in checkpoints_in(ckpt_dir)]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_saves_periodically_keeps_last_and_exports_model(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    engine, model, _, final = _training(tmp_path, max_epochs=2)  # 8 iterations, saves at 2, 4, 6, 8
    assert _names(tmp_path) == ["checkpoint_6.pt", "checkpoint_8.pt"]
    assert latest_checkpoint(tmp_path).name == "checkpoint_8.pt"
    torch.testing.assert_close(torch.load(final)["weight"], model.weight)
    assert torch.load(tmp_path / "checkpoint_8.pt")["trainer"]["iteration"] == 8
    assert caplog.text.count("saved checkpoint") == 4  # COMPLETED at 8 does not write checkpoint_8.pt again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_6.pt", "checkpoint_8.pt", "model.pt"]


def test_completed_between_intervals_saves_the_last_iteration(tmp_path):
    engine, *_ = _training(tmp_path, max_epochs=1, save_interval=3)  # 4 iterations: saves at 3, then at COMPLETED
    assert _names(tmp_path) == ["checkpoint_3.pt", "checkpoint_4.pt"]


def test_checkpoints_have_the_usual_file_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        _training(tmp_path, max_epochs=1)
    finally:
        os.umask(mask)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == dict.fromkeys(
        ["checkpoint_2.pt", "checkpoint_4.pt", "model.pt"], 0o644
    )  # not the 0600 of the temporary file


def test_resume_continues_iterations_and_state(tmp_path):
    _training(tmp_path, max_epochs=1)  # 4 iterations
    engine, model, optimizer, _ = _training(tmp_path, max_epochs=3)  # resumes at 4, runs to 12
    assert engine.state.iteration == 12
    straight, straight_model, straight_optimizer, _ = _training(tmp_path / "fresh", max_epochs=3)
    torch.testing.assert_close(model.weight, straight_model.weight)  # same as an uninterrupted run
    assert optimizer.param_groups[0]["lr"] == straight_optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**4)


def test_resuming_a_finished_run_completes_at_once(tmp_path):
    _training(tmp_path, max_epochs=1)
    engine, *_ = _training(tmp_path, max_epochs=1)
    assert engine.state.iteration == 4
    assert _names(tmp_path) == ["checkpoint_2.pt", "checkpoint_4.pt"]


@pytest.mark.parametrize("keep_last_before", [2, 3])
def test_rotation_keeps_keep_last_across_a_resume(tmp_path, keep_last_before):
    _training(tmp_path, max_epochs=2, keep_last=keep_last_before)  # 6, 8 (or 4, 6, 8): written by another process
    _training(tmp_path, max_epochs=3)  # resumes at 8, saves 10, 12
    assert _names(tmp_path) == ["checkpoint_10.pt", "checkpoint_12.pt"]


@pytest.mark.parametrize("resume", [False, "false", "False"])
def test_resume_disabled_starts_from_scratch(tmp_path, resume, caplog):
    _training(tmp_path, max_epochs=2)  # 6, 8
    engine, *_ = _training(tmp_path, max_epochs=1, resume=resume)  # --resume false arrives as a string
    assert engine.state.iteration == 4
    assert _names(tmp_path) == ["checkpoint_2.pt", "checkpoint_4.pt"]  # the earlier run's 6 and 8 are gone
    assert "['checkpoint_6.pt', 'checkpoint_8.pt'] are past iteration 2 of this run" in caplog.text


def test_resume_flag_that_is_not_a_bool_is_refused(tmp_path):
    with pytest.raises(InputError, match="resume must be True or False, got 'no'"):
        ResumeFromLatestCheckpoint(tmp_path, {}, enabled="no")


def test_truncated_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    _training(tmp_path, max_epochs=2)  # 6, 8
    _truncate(tmp_path / "checkpoint_8.pt")
    caplog.set_level(logging.INFO)
    engine, model, *_ = _training(tmp_path, max_epochs=3)
    assert f"{tmp_path / 'checkpoint_8.pt'}: cannot read checkpoint" in caplog.text
    assert f"resumed from {tmp_path / 'checkpoint_6.pt'} at iteration 6" in caplog.text
    assert engine.state.iteration == 12
    _, straight_model, *_ = _training(tmp_path / "fresh", max_epochs=3)
    torch.testing.assert_close(model.weight, straight_model.weight)
    assert _names(tmp_path) == ["checkpoint_10.pt", "checkpoint_12.pt"]  # the truncated 8 was rewritten, then rotated


def test_no_readable_checkpoint_is_a_clear_error_naming_the_files(tmp_path):
    _training(tmp_path, max_epochs=2)
    for path in checkpoints_in(tmp_path):
        _truncate(path)
    with pytest.raises(InputError, match=r"no checkpoint can be read: checkpoint_8\.pt \(.*checkpoint_6\.pt \("):
        _training(tmp_path, max_epochs=3)
    (tmp_path / "checkpoint_8.pt").unlink()
    (tmp_path / "checkpoint_6.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="checkpoint_6.pt"):
        _training(tmp_path, max_epochs=3)


def test_final_model_holds_the_ema_weights_only(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(engine: Engine, batch: torch.Tensor) -> None:
        optimizer.zero_grad()
        model(batch).square().mean().backward()
        optimizer.step()

    engine = Engine(step)
    ema = EMAHandler(model, momentum=0.5)
    ema.attach(engine)
    final = tmp_path / "models" / "model.pt"
    objects = {"network": model, "ema": ema.ema_model, "optimizer": optimizer}
    CheckpointSaver(
        tmp_path / "ckpt", objects, save_interval=3, final_model={"path": final, "model": ema.ema_model}
    ).attach(engine)
    engine.run([torch.ones(1, 2)] * 4)
    weights = torch.load(final, weights_only=True)
    assert weights.keys() == {"weight", "bias"}
    torch.testing.assert_close(weights, ema.ema_model.state_dict())
    assert not torch.allclose(weights["weight"], model.weight)  # the EMA, not the online network
    assert [p.name for p in final.parent.iterdir()] == ["model.pt"]


def test_logs_where_training_starts_without_ignites_resuming_from_zero(tmp_path, caplog):
    def run(max_epochs: int) -> None:
        engine = Engine(lambda engine, batch: None)
        ResumeFromLatestCheckpoint(tmp_path, {}).attach(engine)
        CheckpointSaver(tmp_path, {}, save_interval=2).attach(engine)
        engine.state.max_epochs = max_epochs  # preset, as MONAI's trainers do: Ignite then says "resuming"
        engine.run([0] * 2, max_epochs=max_epochs)

    caplog.set_level(logging.INFO)
    run(max_epochs=1)
    assert f"training from iteration 0 (no checkpoint in {tmp_path})" in caplog.text
    assert "Engine run resuming from iteration 0," not in caplog.text
    caplog.clear()
    run(max_epochs=2)
    assert f"resumed from {tmp_path / 'checkpoint_2.pt'} at iteration 2" in caplog.text
    assert "resuming from iteration 0" not in caplog.text


#: A server that imports torch, Ignite and the checkpoint module once, then forks one training process per line
#: of stdin (its number of epochs, one iteration each), prints the process id and waits for it. Forking saves
#: the ~2.5 s import per run; the package ``common.engines`` itself would import MONAI (~4 s more), so the module
#: is loaded from its file. The training process saves every SAVE_INTERVAL iterations (a 16 MB buffer makes
#: writes take some milliseconds, so that kills also land mid-write), and appends "start <iteration>" and then
#: each completed iteration to the progress file.
_TRAINING_SERVER = """
import importlib.util, os, sys, time
import torch
from ignite.engine import Engine, Events

spec = importlib.util.spec_from_file_location("checkpoint", "common/engines/checkpoint.py")
checkpoint = importlib.util.module_from_spec(spec)
spec.loader.exec_module(checkpoint)
ckpt_dir, progress, save_interval = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)  # the first optimizer imports more (0.5 s): not per run


def train(max_epochs):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    ballast = torch.nn.Module()
    ballast.register_buffer("blob", torch.zeros(4_000_000))

    def step(engine, batch):
        optimizer.zero_grad()
        model(batch).square().mean().backward()
        optimizer.step()
        time.sleep(0.002)

    def log(line):
        with open(progress, "a") as file:
            file.write(f"{line}\\n")

    engine = Engine(step)
    objects = {"network": model, "optimizer": optimizer, "ballast": ballast}
    checkpoint.ResumeFromLatestCheckpoint(ckpt_dir, objects).attach(engine)
    checkpoint.CheckpointSaver(ckpt_dir, objects, save_interval=save_interval, keep_last=1).attach(engine)
    engine.add_event_handler(Events.STARTED, lambda engine: log(f"start {engine.state.iteration}"))
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: log(engine.state.iteration))
    engine.run([torch.ones(1, 2)], max_epochs=max_epochs)


for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        train(int(line))
        os._exit(0)
    print(pid, flush=True)
    print(os.waitpid(pid, 0)[1], flush=True)
"""


def _progress(path: Path) -> list[str]:
    """Complete lines of the progress file."""
    text = path.read_text() if path.exists() else ""
    return text.splitlines()[: text.count("\n")]


def test_kill_at_random_moments_loses_at_most_one_save_interval(tmp_path):
    """SIGKILL training at random moments (also mid-write): every checkpoint left loads, temporary files are not
    taken for checkpoints, and the next run resumes at most SAVE_INTERVAL iterations before the kill."""
    save_interval, ckpt_dir, progress = 5, tmp_path / "ckpt", tmp_path / "progress.txt"
    server = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_TRAINING_SERVER), str(ckpt_dir), str(progress), str(save_interval)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    rng = random.Random(0)
    reached = latest = 0
    try:
        for kill in range(5):
            server.stdin.write("1000000\n")
            server.stdin.flush()
            pid = int(server.stdout.readline())
            deadline = time.monotonic() + 30
            while not _progress(progress):
                assert time.monotonic() < deadline, "the training process did not start"
                time.sleep(0.005)
            start = int(_progress(progress)[0].split()[1])
            assert start == latest >= reached - save_interval, f"kill {kill}: resumed at {start}, killed at {reached}"
            time.sleep(rng.uniform(0.0, 0.2))
            os.kill(pid, signal.SIGKILL)
            assert int(server.stdout.readline()) & 0x7F == signal.SIGKILL
            reached = int(_progress(progress)[-1].split()[-1])
            progress.write_text("")
            found = checkpoints_in(ckpt_dir)
            assert len(found) <= 2  # keep_last=1, and the previous one until the new one is written
            for path in found:
                assert torch.load(path, weights_only=True)["trainer"]["iteration"] == checkpoint_iteration(path)
            latest = checkpoint_iteration(found[-1]) if found else 0
            assert latest >= reached - save_interval, f"kill {kill}: saved {latest}, killed at {reached}"
            assert all(path.name.startswith("tmp") for path in ckpt_dir.iterdir() if path not in found)
        server.stdin.write(f"{reached + 2 * save_interval}\n")  # a last run to the end
        server.stdin.flush()
        server.stdout.readline()
        assert int(server.stdout.readline()) == 0
        assert int(_progress(progress)[0].split()[1]) == latest
        assert [path.name for path in ckpt_dir.iterdir()] == [f"checkpoint_{reached + 2 * save_interval}.pt"]
    finally:
        server.kill()
        server.communicate()
