"""The handlers every training config attaches, built once: resume, iteration limit, EMA, LR schedule, checkpoints,
sample previews, TensorBoard and a progress bar."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar
from monai.handlers import LrScheduleHandler, TensorBoardStatsHandler
from torch import nn

from common.errors import InputError

from .checkpoint import CheckpointSaver, ResumeFromLatestCheckpoint
from .distributed import handlers_for_rank, process_rank

__all__ = ["ClosingTensorBoardStatsHandler", "IterationLimit", "LossOutput", "epochs_for", "training_handlers"]


def epochs_for(max_iterations: int, epoch_length: int) -> int:
    """Epochs that cover ``max_iterations`` (the last one may be partial: :class:`IterationLimit` stops it).

    Raises:
        InputError: ``max_iterations`` or ``epoch_length`` below 1.
    """
    if max_iterations < 1 or epoch_length < 1:
        raise InputError(f"max_iterations and epoch_length must be at least 1, got {max_iterations}, {epoch_length}")
    return math.ceil(max_iterations / epoch_length)


class IterationLimit:
    """Stop training after exactly ``max_iterations`` iterations, whatever the epoch length.

    Ignite counts epochs; ``max_epochs = max_iterations // epoch_length`` would silently train fewer iterations
    than asked (or none, when resuming close to the end). This handler ends the run at the iteration itself, also
    when a resumed run already reached it (the run then completes at once, writing its final checkpoint and weights).
    Attach it after :class:`ResumeFromLatestCheckpoint` so that it sees the restored iteration.

    Args:
        max_iterations: total training iterations, counted from the start of training (not of this run).
    """

    def __init__(self, max_iterations: int) -> None:
        if max_iterations < 1:
            raise InputError(f"max_iterations must be at least 1, got {max_iterations}")
        self.max_iterations = max_iterations

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def started(self, engine: Engine) -> None:
        """Give the run the epochs it needs (a resumed run may have been saved with fewer), or end it at once."""
        needed = epochs_for(self.max_iterations, engine.state.epoch_length)
        engine.state.max_epochs = max(engine.state.max_epochs or 0, needed)
        self(engine)

    def __call__(self, engine: Engine) -> None:
        if engine.state.iteration >= self.max_iterations:
            engine.terminate()


class LossOutput:
    """The loss to log from a trainer's output: ``output[loss_key]`` of the output dict (or of its first item when
    the batch was decollated into a list), the whole output dict when ``loss_key`` is ``None``.

    The value is a scalar (logged as ``train_<loss_key>``) or a dict of named scalar losses (each logged by name).
    """

    def __init__(self, loss_key: str | None = "loss") -> None:
        self.loss_key = loss_key

    def __call__(self, output: Any) -> Any:
        first = output[0] if isinstance(output, list) else output
        return first if self.loss_key is None else first[self.loss_key]


class ClosingTensorBoardStatsHandler(TensorBoardStatsHandler):
    """MONAI's ``TensorBoardStatsHandler`` that flushes and closes its writer when the run completes.

    MONAI leaves the writer open until the process exits, so a run inside a longer-lived process (the demo, the
    MONAI Label server, a notebook, the tests) would keep its last events unwritten for up to two minutes.
    """

    def attach(self, engine: Engine) -> None:
        super().attach(engine)
        engine.add_event_handler(Events.COMPLETED, lambda _: self.close())


def training_handlers(
    ckpt_dir: str | Path,
    checkpoint_objects: Mapping[str, Any],
    final_model_path: str | Path,
    final_model: nn.Module,
    log_dir: str | Path,
    max_iterations: int | None,
    save_interval: int = 1000,
    keep_last: int = 2,
    resume: bool | str = True,
    ema: Any = None,
    lr_scheduler: Any = None,
    preview: Any = None,
    loss_key: str | None = "loss",
) -> list[Any]:
    """The train handlers of a bundle's trainer, in the order they must run; those of process 0 only are dropped
    on the other processes of a distributed run (:func:`handlers_for_rank`).

    Resume from the newest checkpoint → stop at ``max_iterations`` → EMA update → LR schedule step → checkpoint
    every ``save_interval`` iterations (and the weights of ``final_model`` to ``final_model_path`` at the end) →
    sample preview → TensorBoard loss → progress bar.

    Args:
        ckpt_dir: folder of the ``checkpoint_<iteration>.pt`` files.
        checkpoint_objects: objects with ``state_dict()`` that a checkpoint holds (networks, EMA copy, optimisers,
            LR scheduler); the trainer is added by the handlers.
        final_model_path: where the weights for inference go, e.g. ``models/model.pt``.
        final_model: the module whose weights are exported, e.g. the EMA network.
        log_dir: TensorBoard folder.
        max_iterations: total training iterations (:class:`IterationLimit`); ``None`` for a trainer that counts
            epochs (its ``max_epochs``, e.g. DiffuseMorph's registration: the paper's 50 epochs).
        save_interval / keep_last: iterations between checkpoints; how many to keep.
        resume: resume from the newest checkpoint (``True``) or start from scratch.
        ema: an EMA handler (:class:`common.engines.DelayedEMAHandler`), or ``None``.
        lr_scheduler: a ``torch.optim.lr_scheduler`` stepped every iteration, or ``None``.
        preview: a :class:`common.engines.SamplePreviewHandler`, or ``None``.
        loss_key: where TensorBoard finds the loss in the trainer's output (:class:`LossOutput`): ``"loss"`` for
            MONAI's trainers, the key of a dict of named losses, or ``None`` when the output is that dict.
    """
    handlers: list[Any] = [ResumeFromLatestCheckpoint(ckpt_dir, checkpoint_objects, enabled=resume)]
    if max_iterations is not None:
        handlers.append(IterationLimit(max_iterations))
    if ema is not None:
        handlers.append(ema)
    if lr_scheduler is not None:
        handlers.append(LrScheduleHandler(lr_scheduler, epoch_level=False, print_lr=False))
    handlers.append(
        CheckpointSaver(
            ckpt_dir,
            checkpoint_objects,
            save_interval=save_interval,
            keep_last=keep_last,
            final_model={"path": final_model_path, "model": final_model},
        )
    )
    if preview is not None:
        handlers.append(preview)
    if process_rank() == 0:  # built on process 0 only: the writer creates its event file when constructed
        handlers.append(
            ClosingTensorBoardStatsHandler(
                log_dir=str(log_dir), tag_name="train_loss", output_transform=LossOutput(loss_key)
            )
        )
    handlers.append(ProgressBar(persist=False))
    return handlers_for_rank(handlers)
