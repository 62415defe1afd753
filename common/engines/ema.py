"""An EMA of the network's weights that starts late and updates every few iterations, as the reference trainers do."""

from __future__ import annotations

from ignite.engine import Engine, Events
from ignite.handlers import EMAHandler
from torch import nn


class DelayedEMAHandler(EMAHandler):
    """Ignite's ``EMAHandler`` with a start iteration and an update interval.

    Until iteration ``start`` (included) the EMA network is set to a copy of the online network after every
    iteration. After it, the EMA is updated every ``every`` iterations, at iterations ``start + every``,
    ``start + 2 * every``, ...: θ_EMA ← (1 − ``momentum``) · θ_EMA + ``momentum`` · θ (ignite's update, buffers
    as ``handle_buffers`` says). ``start=0, every=1`` is ignite's ``EMAHandler``, which updates after every
    iteration from the first.

    The trainers of Med-DDPM and Medical Diffusion (lucidrains' DDPM trainer) copy the weights until step 2,000
    and then update with decay 0.995 every 10 steps: ``start=2000, every=10, momentum=0.005``. They copy only on
    every 10th step before the start; the copy is exact here at every iteration, so the EMA equals the online
    network until ``start``.

    The timing follows ``engine.state.iteration``, which resuming restores (``common.engines.CheckpointSaver`` /
    ``ResumeFromLatestCheckpoint`` save and load ``ema_model``), so a resumed run continues on the same schedule.

    Args:
        model: the online network (unwrapped when it is ``DistributedDataParallel``).
        momentum: weight of the online network in an update, 1 − decay.
        start: last iteration at which the EMA is a copy of the online network; 0 to average from the first.
        every: iterations between two EMA updates after ``start``.
        handle_buffers: ``"copy"``, ``"update"`` or ``"ema_train"``, as in ``EMAHandler``.

    Raises:
        ValueError: if ``start`` is negative or ``every`` is below 1 (and ``EMAHandler``'s own checks).
    """

    def __init__(
        self, model: nn.Module, momentum: float = 0.0002, start: int = 0, every: int = 1, handle_buffers: str = "copy"
    ) -> None:
        if start < 0 or every < 1:
            raise ValueError(f"start must be >= 0 and every >= 1, got start={start}, every={every}")
        super().__init__(model, momentum=momentum, handle_buffers=handle_buffers)
        self.start, self.every = start, every

    def copies_at(self, iteration: int) -> bool:
        """Whether the EMA network is set to the online network after ``iteration``."""
        return iteration <= self.start

    def updates_at(self, iteration: int) -> bool:
        """Whether the EMA network is updated after ``iteration``."""
        return iteration > self.start and (iteration - self.start) % self.every == 0

    def copy_model(self) -> None:
        """Set the EMA network's parameters and buffers to the online network's."""
        self.ema_model.load_state_dict(self.model.state_dict())

    def attach(self, engine: Engine, name: str = "ema_momentum", warn_if_exists: bool = True) -> None:
        """Copy after the iterations up to ``start``, then update every ``every`` iterations (``EMAHandler.attach``).

        Args:
            engine: the trainer.
            name: ``engine.state`` attribute holding the momentum, as in ``EMAHandler.attach``.
            warn_if_exists: warn if that attribute exists already, as in ``EMAHandler.attach``.
        """
        copying = Events.ITERATION_COMPLETED(event_filter=lambda _, iteration: self.copies_at(iteration))
        engine.add_event_handler(copying, lambda _: self.copy_model())
        updating = Events.ITERATION_COMPLETED(event_filter=lambda _, iteration: self.updates_at(iteration))
        super().attach(engine, name=name, warn_if_exists=warn_if_exists, event=updating)
