import logging

import pytest
import torch
from ignite.engine import Engine

from common.engines import CheckpointSaver, ResumeFromLatestCheckpoint, latest_checkpoint, save_atomically
from common.errors import InputError


def _training(ckpt_dir, max_epochs: int, resume: bool = True):
    """A tiny Ignite training loop on a linear model: returns (engine, model, optimizer, final_model_path)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)

    def step(engine, batch):
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
        ckpt_dir, objects, save_interval=2, keep_last=2, final_model={"path": final, "model": model}
    ).attach(engine)
    data = [torch.ones(1, 2)] * 4
    engine.run(data, max_epochs=max_epochs)
    return engine, model, optimizer, final


def test_saves_periodically_keeps_last_and_exports_model(tmp_path):
    engine, model, _, final = _training(tmp_path, max_epochs=2)  # 8 iterations, saves at 2, 4, 6, 8
    assert sorted(p.name for p in tmp_path.glob("checkpoint_*.pt")) == ["checkpoint_6.pt", "checkpoint_8.pt"]
    assert latest_checkpoint(tmp_path).name == "checkpoint_8.pt"
    torch.testing.assert_close(torch.load(final)["weight"], model.weight)
    assert torch.load(tmp_path / "checkpoint_8.pt")["trainer"]["iteration"] == 8
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_resume_continues_iterations_and_state(tmp_path):
    _training(tmp_path, max_epochs=1)  # 4 iterations
    engine, model, optimizer, _ = _training(tmp_path, max_epochs=3)  # resumes at 4, runs to 12
    assert engine.state.iteration == 12
    straight, straight_model, straight_optimizer, _ = _training(tmp_path / "fresh", max_epochs=3)
    torch.testing.assert_close(model.weight, straight_model.weight)  # same as an uninterrupted run
    assert optimizer.param_groups[0]["lr"] == straight_optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**4)


@pytest.mark.parametrize("resume", [False, "false", "False"])
def test_resume_disabled_starts_from_scratch(tmp_path, resume):
    _training(tmp_path, max_epochs=1)
    engine, *_ = _training(tmp_path, max_epochs=1, resume=resume)  # --resume false arrives as a string
    assert engine.state.iteration == 4


def test_resume_flag_that_is_not_a_bool_is_refused(tmp_path):
    with pytest.raises(InputError, match="resume must be True or False, got 'no'"):
        ResumeFromLatestCheckpoint(tmp_path, {}, enabled="no")


def test_corrupt_checkpoint_is_reported_by_name(tmp_path):
    (tmp_path / "checkpoint_5.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="checkpoint_5.pt: cannot read checkpoint"):
        _training(tmp_path, max_epochs=1)


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path):
    path = save_atomically({"a": 1}, tmp_path / "model.pt")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_atomically({"a": Unpicklable()}, path)
    assert torch.load(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_atomic_save_uses_the_usual_file_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        path = save_atomically({"a": 1}, tmp_path / "model.pt")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644


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
