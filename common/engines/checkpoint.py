"""Checkpoints and automatic resume for Ignite trainers: a thin layer over Ignite's ``Checkpoint`` and ``DiskSaver``.

Saving is Ignite's ``Checkpoint`` with an atomic ``DiskSaver`` (MONAI's ``CheckpointSaver`` writes in place,
``atomic=False``, so an interrupted write could leave a truncated file). Ignite writes a temporary file
(``tmp<random>``) in the folder, renames it to ``checkpoint_<iteration>.pt`` (mode ``0644``), saves on process 0
only, unwraps ``DistributedDataParallel`` networks and keeps the newest ``keep_last`` files. This module adds what
Ignite lacks:

- resume from the newest readable ``checkpoint_<iteration>.pt`` (:class:`ResumeFromLatestCheckpoint`);
- rotation across runs: Ignite's ``Checkpoint`` only knows the files it wrote in this process, so before its first
  save :class:`CheckpointSaver` hands it the checkpoints already in the folder;
- removal of old checkpoints after the new one is written (Ignite removes first, so with ``keep_last=1`` a kill
  during the write would leave no checkpoint): a kill at any moment loses at most one save interval;
- the final weights alone (e.g. the EMA network) in ``models/model.pt``.

Unreadable checkpoints (truncated by a full disk or an interrupted copy): resuming skips them, newest first, with
a warning naming each bad file, and continues from the newest checkpoint that loads; when none loads it raises an
:class:`~common.errors.InputError` naming the files. A later save at or past a skipped file's iteration replaces
or removes it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from torch import nn

from common.errors import InputError

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint_(\d+)\.pt$")

#: Temporary files of Ignite's atomic ``DiskSaver`` (``tempfile.NamedTemporaryFile``: ``tmp`` and 8 characters).
_TEMPORARY_PATTERN = re.compile(r"^tmp[a-z0-9_]{8}$")


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

    Ignite unwraps only inside ``Checkpoint``; the final ``model.pt`` export and
    :class:`~common.engines.WeightsFitHandler` need the bare module, so that their keys have no ``module.`` prefix.
    """
    return obj.module if isinstance(obj, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else obj


def _not_resuming_from_zero(record: logging.LogRecord) -> bool:
    """Logging filter: drop Ignite's "Engine run resuming from iteration 0, ..." (printed by every fresh MONAI
    trainer, whose state is preset, before :class:`ResumeFromLatestCheckpoint` says where training really starts)."""
    return not record.getMessage().startswith("Engine run resuming from iteration 0,")


class _RemoveAfterWriteDiskSaver(DiskSaver):
    """Ignite's atomic ``DiskSaver`` whose removals wait until the next checkpoint is written.

    ``Checkpoint`` asks to remove the oldest file before it writes the new one; deferring the removal keeps
    ``keep_last`` complete checkpoints on disk while the next one is written.
    """

    def __init__(self, dirname: str | Path) -> None:
        super().__init__(dirname, atomic=True, create_dir=True, require_empty=False)
        self._pending: list[str] = []

    def remove(self, filename: str) -> None:
        self._pending.append(filename)

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint, filename, metadata)
        pending, self._pending = self._pending, []
        if idist.get_rank() == self.save_on_rank:
            for name in pending:
                if name != filename:  # a rewrite of the same iteration replaced the file
                    (self.dirname / name).unlink(missing_ok=True)


class CheckpointSaver:
    """Save the full training state every ``save_interval`` iterations and when training ends.

    Ignite's ``Checkpoint`` writes ``checkpoint_<iteration>.pt`` atomically and keeps the newest ``keep_last``;
    before its first save the checkpoints already in ``ckpt_dir`` are handed to it, so rotation continues across
    resumed runs. Checkpoints of a later iteration than this run's first save (left by a run this one did not
    resume: resume disabled, or an unreadable file) are removed after that save, with a warning, so that the
    folder holds one run's history; so are temporary files of writes that a kill interrupted.

    Args:
        ckpt_dir: folder of ``checkpoint_<iteration>.pt`` files.
        save_dict: objects with ``state_dict()`` to save, e.g. ``{"network": ..., "ema": ..., "optimizer": ...,
            "lr_scheduler": ...}``; networks wrapped in ``DistributedDataParallel`` are saved unwrapped. The engine
            the handler is attached to is added as ``"trainer"`` (its state holds the iteration count), so configs
            need not reference the trainer from its own handlers.
        save_interval: iterations between checkpoints.
        keep_last: how many checkpoints to keep (older ones are deleted after a new one is written).
        final_model: optional ``{"path": ..., "model": module}``: at the end of training the module's weights alone
            (e.g. the EMA network, unwrapped from ``DistributedDataParallel``) are written atomically to ``path``
            (the bundle's ``models/model.pt``) for inference.
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
        self._checkpoint: Checkpoint | None = None

    def attach(self, engine: Engine) -> None:
        self.save_dict["trainer"] = engine
        self._checkpoint = Checkpoint(
            self.save_dict,
            _RemoveAfterWriteDiskSaver(self.ckpt_dir),
            filename_pattern="checkpoint_{global_step}.{ext}",
            n_saved=self.keep_last,
            global_step_transform=lambda engine, _: engine.state.iteration,
        )
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.save_interval), self.save)
        engine.add_event_handler(Events.COMPLETED, self.save)
        if self.final_model is not None:
            engine.add_event_handler(Events.COMPLETED, self.export_model)

    def save(self, engine: Engine) -> None:
        """Write ``checkpoint_<iteration>.pt``, unless this run just wrote it (``COMPLETED`` after a periodic save)."""
        if self._checkpoint is None:
            raise RuntimeError("CheckpointSaver.save before attach")
        last = self._checkpoint.last_checkpoint
        if last is None:
            self._adopt_files_on_disk(engine.state.iteration)
        elif Path(last).name == f"checkpoint_{engine.state.iteration}.pt":
            return
        self._checkpoint(engine)
        logger.info(f"saved checkpoint {self._checkpoint.last_checkpoint}")

    def _adopt_files_on_disk(self, iteration: int) -> None:
        """Hand Ignite's ``Checkpoint`` the newest ``keep_last`` checkpoints before ``iteration`` in ``ckpt_dir``;
        the other checkpoints are removed after the next write, temporary files of interrupted writes now."""
        if idist.get_rank() == 0:
            for path in self.ckpt_dir.glob("tmp*"):
                if _TEMPORARY_PATTERN.match(path.name):
                    path.unlink(missing_ok=True)
        found = checkpoints_in(self.ckpt_dir)
        before = [path for path in found if checkpoint_iteration(path) < iteration]
        later = [path.name for path in found if checkpoint_iteration(path) > iteration]
        if later:
            logger.warning(
                f"{self.ckpt_dir}: {later} are past iteration {iteration} of this run, which did not resume from "
                "them; they are removed after its next checkpoint"
            )
        kept = before[-self.keep_last :]
        self._checkpoint.load_state_dict({"_saved": [(checkpoint_iteration(path), path.name) for path in kept]})
        for name in [path.name for path in before[: -self.keep_last]] + later:
            self._checkpoint.save_handler.remove(name)

    def export_model(self, engine: Engine) -> None:
        """Write the weights of ``final_model["model"]`` alone to ``final_model["path"]`` (atomically)."""
        path = Path(self.final_model["path"])
        DiskSaver(path.parent, atomic=True, create_dir=True, require_empty=False)(
            unwrap(self.final_model["model"]).state_dict(), path.name
        )
        logger.info(f"wrote model weights {path}")


class ResumeFromLatestCheckpoint:
    """At ``Events.STARTED``, restore every object of ``load_dict`` from the newest readable checkpoint in
    ``ckpt_dir``.

    Restores network, EMA network, optimizer, LR scheduler and the trainer state (so the iteration count
    continues). Does nothing when ``enabled`` is false or the folder holds no checkpoint. An unreadable checkpoint
    (e.g. truncated) is skipped with a warning naming it, and the next older one is tried. Attach it before the
    other handlers. It logs where training starts, and silences Ignite's misleading "Engine run resuming from
    iteration 0" that precedes it.

    Args:
        ckpt_dir: folder written by :class:`CheckpointSaver`.
        load_dict: the same objects as the saver's ``save_dict``; the engine is added as ``"trainer"``.
        enabled: resume (``True``) or always start from scratch (``False``); the strings ``"true"`` and ``"false"``
            (any case) count as these, since ``--resume false`` on the command line arrives as a string.
        map_location: ``torch.load`` map location.

    Raises:
        InputError: ``enabled`` is neither a bool nor one of those strings; or, at ``STARTED``, no checkpoint of
            ``ckpt_dir`` can be read.
        KeyError: the checkpoint lacks objects of ``load_dict`` (it was written by another training config).
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
        found = checkpoints_in(self.ckpt_dir) if self.enabled else []
        if not found:
            reason = "resume disabled" if not self.enabled else f"no checkpoint in {self.ckpt_dir}"
            logger.info(f"training from iteration {engine.state.iteration} ({reason})")
            return
        path, checkpoint = self._newest_readable(found)
        # Ignite saves a single object as its bare state dict; Checkpoint.load_objects accepts that too
        missing = sorted(set(self.load_dict) - set(checkpoint)) if len(self.load_dict) > 1 else []
        if missing:
            raise KeyError(f"{path}: checkpoint lacks {missing}; it was not written by this training config")
        max_epochs = engine.state.max_epochs
        Checkpoint.load_objects(to_load=self.load_dict, checkpoint=checkpoint)
        engine.state.max_epochs = max_epochs  # a longer run may continue from a shorter one
        logger.info(f"resumed from {path} at iteration {engine.state.iteration}")

    def _newest_readable(self, found: list[Path]) -> tuple[Path, Any]:
        """The newest of ``found`` (oldest first) that ``torch.load`` reads, and its content."""
        errors = []
        for path in reversed(found):
            try:
                return path, torch.load(path, map_location=self.map_location, weights_only=True)
            except Exception as error:  # truncated or otherwise corrupt: torch raises several types
                logger.warning(f"{path}: cannot read checkpoint ({error}); trying the previous one")
                errors.append(f"{path.name} ({error})")
        raise InputError(
            f"{self.ckpt_dir}: no checkpoint can be read: {'; '.join(errors)}; delete them to train from scratch, "
            "or run with resume false"
        )
