"""Atomic checkpoints and automatic resume for Ignite trainers.

MONAI's ``CheckpointSaver`` writes in place (``atomic=False``), so an interrupted write can leave a truncated
file that a later resume would load. These handlers write to a temporary file in the same folder and
``os.replace`` it, keep the newest ``keep_last`` checkpoints, and resume from the newest one.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from torch import nn

from common.errors import InputError

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint_(\d+)\.pt$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_atomically(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place (never a partial file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as tmp:
            torch.save(obj, tmp)
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp creates 0600 files; give the usual permissions
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def checkpoint_iteration(path: str | Path) -> int:
    """The iteration in a ``checkpoint_<iteration>.pt`` file name."""
    match = CHECKPOINT_PATTERN.match(Path(path).name)
    if match is None:
        raise ValueError(f"{path}: not a checkpoint_<iteration>.pt file name")
    return int(match.group(1))


def checkpoints_in(ckpt_dir: str | Path) -> list[Path]:
    """The ``checkpoint_<iteration>.pt`` files of ``ckpt_dir``, oldest iteration first."""
    found = [
        (int(m.group(1)), p) for p in Path(ckpt_dir).glob("checkpoint_*.pt") if (m := CHECKPOINT_PATTERN.match(p.name))
    ]
    return [path for _, path in sorted(found)]


def latest_checkpoint(ckpt_dir: str | Path) -> Path | None:
    """The ``checkpoint_<iteration>.pt`` in ``ckpt_dir`` with the highest iteration, or ``None``."""
    found = checkpoints_in(ckpt_dir)
    return found[-1] if found else None


def unwrap(obj: Any) -> Any:
    """The module inside a ``DistributedDataParallel`` (or ``DataParallel``) wrapper; other objects as they are.

    Checkpoints and exported weights then hold the same keys (no ``module.`` prefix) whether or not the run was
    distributed, as ignite's ``Checkpoint`` does; ``Checkpoint.load_objects`` unwraps when loading.
    """
    return obj.module if isinstance(obj, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else obj


def _not_resuming_from_zero(record: logging.LogRecord) -> bool:
    """Logging filter: drop Ignite's "Engine run resuming from iteration 0, ..." (printed by every fresh MONAI
    trainer, whose state is preset, before :class:`ResumeFromLatestCheckpoint` says where training really starts)."""
    return not record.getMessage().startswith("Engine run resuming from iteration 0,")


def _state_dicts(objects: Mapping[str, Any]) -> dict[str, Any]:
    return {name: unwrap(obj).state_dict() for name, obj in objects.items()}


class CheckpointSaver:
    """Save the full training state every ``save_interval`` iterations and when training ends.

    Args:
        ckpt_dir: folder of ``checkpoint_<iteration>.pt`` files.
        save_dict: objects with ``state_dict()`` to save, e.g. ``{"network": ..., "ema": ..., "optimizer": ...,
            "lr_scheduler": ...}``; networks wrapped in ``DistributedDataParallel`` are saved unwrapped. The engine
            the handler is attached to is added as ``"trainer"`` (its state holds the iteration count), so configs
            need not reference the trainer from its own handlers.
        save_interval: iterations between checkpoints.
        keep_last: how many checkpoints to keep (older ones are deleted after a new one is written).
        final_model: optional ``{"path": ..., "model": module}``: at the end of training the module's weights alone
            (e.g. the EMA network, unwrapped from ``DistributedDataParallel``) are written to ``path`` (the bundle's
            ``models/model.pt``) for inference.
    """

    def __init__(
        self,
        ckpt_dir: str | Path,
        save_dict: Mapping[str, Any],
        save_interval: int = 1000,
        keep_last: int = 2,
        final_model: Mapping[str, Any] | None = None,
    ) -> None:
        if save_interval < 1 or keep_last < 1:
            raise ValueError("save_interval and keep_last must be at least 1")
        self.ckpt_dir = Path(ckpt_dir)
        self.save_dict = dict(save_dict)
        self.save_interval = save_interval
        self.keep_last = keep_last
        self.final_model = final_model
        self._last_saved_iteration: int | None = None

    def attach(self, engine: Engine) -> None:
        self.save_dict["trainer"] = engine
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.save_interval), self.save)
        engine.add_event_handler(Events.COMPLETED, self.save)
        if self.final_model is not None:
            engine.add_event_handler(Events.COMPLETED, self.export_model)

    def save(self, engine: Engine) -> None:
        if engine.state.iteration == self._last_saved_iteration:
            return  # COMPLETED right after a periodic save: nothing new to write
        path = self.ckpt_dir / f"checkpoint_{engine.state.iteration}.pt"
        save_atomically(_state_dicts(self.save_dict), path)
        self._last_saved_iteration = engine.state.iteration
        logger.info(f"saved checkpoint {path}")
        for old in checkpoints_in(self.ckpt_dir)[: -self.keep_last]:
            old.unlink(missing_ok=True)

    def export_model(self, engine: Engine) -> None:
        path = save_atomically(unwrap(self.final_model["model"]).state_dict(), self.final_model["path"])
        logger.info(f"wrote model weights {path}")


class ResumeFromLatestCheckpoint:
    """At ``Events.STARTED``, restore every object of ``load_dict`` from the newest checkpoint in ``ckpt_dir``.

    Restores network, EMA network, optimizer, LR scheduler and the trainer state (so the iteration count
    continues). Does nothing when ``enabled`` is false or the folder holds no checkpoint. Attach it before the
    other handlers. It logs where training starts, and silences Ignite's misleading "Engine run resuming from
    iteration 0" that precedes it.

    Args:
        ckpt_dir: folder written by :class:`CheckpointSaver`.
        load_dict: the same objects as the saver's ``save_dict``; the engine is added as ``"trainer"``.
        enabled: resume (``True``) or always start from scratch (``False``); the strings ``"true"`` and ``"false"``
            (any case) count as these, since ``--resume false`` on the command line arrives as a string.
        map_location: ``torch.load`` map location.

    Raises:
        InputError: ``enabled`` is neither a bool nor one of those strings.
    """

    def __init__(
        self,
        ckpt_dir: str | Path,
        load_dict: Mapping[str, Any],
        enabled: bool | str = True,
        map_location: Any = "cpu",
    ) -> None:
        if isinstance(enabled, str) and enabled.lower() in ("true", "false"):
            enabled = enabled.lower() == "true"
        if not isinstance(enabled, bool):
            raise InputError(f"resume must be True or False, got {enabled!r}")
        self.ckpt_dir = Path(ckpt_dir)
        self.load_dict = dict(load_dict)
        self.enabled = enabled
        self.map_location = map_location

    def attach(self, engine: Engine) -> None:
        self.load_dict["trainer"] = engine
        engine.logger.addFilter(_not_resuming_from_zero)
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        path = latest_checkpoint(self.ckpt_dir) if self.enabled else None
        if path is None:
            reason = "resume disabled" if not self.enabled else f"no checkpoint in {self.ckpt_dir}"
            logger.info(f"training from iteration {engine.state.iteration} ({reason})")
            return
        try:
            checkpoint = torch.load(path, map_location=self.map_location, weights_only=True)
        except Exception as error:
            raise RuntimeError(
                f"{path}: cannot read checkpoint ({error}); delete it to resume from an older one"
            ) from error
        missing = sorted(set(self.load_dict) - set(checkpoint))
        if missing:
            raise KeyError(f"{path}: checkpoint lacks {missing}; it was not written by this training config")
        max_epochs = engine.state.max_epochs
        Checkpoint.load_objects(to_load=self.load_dict, checkpoint=checkpoint)
        engine.state.max_epochs = max_epochs  # a longer run may continue from a shorter one
        logger.info(f"resumed from {path} at iteration {engine.state.iteration}")
