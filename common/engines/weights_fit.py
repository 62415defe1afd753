"""Weights that do not fit the network of an inference config: one line naming the override they fit."""

from __future__ import annotations

from pathlib import Path

from ignite.engine import Engine, Events
from torch import nn

from common.engines.checkpoint import unwrap
from common.errors import InputError
from common.state_dicts import is_state_dict_mismatch, weights_mismatch_message

__all__ = ["WeightsFitHandler"]


class WeightsFitHandler:
    """Turn a ``CheckpointLoader`` failure of an inference config into one line naming the fix.

    Attached to ``Events.EXCEPTION_RAISED`` (list it first among the handlers, so that it sees the error before
    ``StatsHandler``): weights that do not fit ``network`` become an :class:`~common.errors.InputError` naming the
    override files they fit (:func:`common.state_dicts.weights_mismatch_message`), missing weights a
    ``FileNotFoundError`` saying to train first; every other exception is raised unchanged.

    Args:
        load_path: the weights the config's ``CheckpointLoader`` loads (``models/model.pt``).
        network: the network it loads them into.
        configs_dir: the bundle's ``configs/`` folder; when it does not exist (a ``bundle_root`` that holds only a
            run's outputs), ``configs/`` of the current folder.
        base_config: the config the others override (``inference.json``).
        net_id: config id of the network definition.
    """

    def __init__(
        self,
        load_path: str | Path,
        network: nn.Module,
        configs_dir: str | Path | None = None,
        base_config: str = "inference.json",
        net_id: str = "network_def",
    ) -> None:
        self.load_path = Path(load_path)
        self.network = network
        self.configs_dir = Path(configs_dir) if configs_dir is not None else None
        self.base_config = base_config
        self.net_id = net_id

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EXCEPTION_RAISED, self)

    def __call__(self, engine: Engine, error: BaseException) -> None:
        if isinstance(error, FileNotFoundError) and not self.load_path.exists():
            raise FileNotFoundError(
                f'{self.load_path}: no trained weights; train the bundle first (docs/README.md, "Train"), or point '
                "--bundle_root at the folder whose models/ holds them"
            ) from error
        if is_state_dict_mismatch(error):
            configs_dir = self.configs_dir
            if configs_dir is None or not (configs_dir / self.base_config).is_file():
                configs_dir = Path.cwd() / "configs"
            message = weights_mismatch_message(
                self.load_path, unwrap(self.network), configs_dir, self.base_config, self.net_id
            )
            raise InputError(message) from error
        raise error
