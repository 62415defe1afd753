"""The handlers every inference config attaches, built once: check the weights fit, load them, write the volumes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from monai.handlers import CheckpointLoader
from torch import nn

from .weights_fit import WeightsFitHandler

__all__ = ["inference_handlers"]


def inference_handlers(
    network: nn.Module,
    weights: str | Path,
    configs_dir: str | Path,
    device: torch.device | str,
    writer: Any,
    base_config: str = "inference.json",
    load_weights: bool = True,
) -> list[Any]:
    """:class:`WeightsFitHandler` (a clear error when ``weights`` are missing or made for another network), MONAI's
    ``CheckpointLoader`` of ``weights`` into ``network``, then ``writer`` (e.g.
    :class:`common.engines.GeneratedVolumeWriter`), in this order.

    Args:
        network: the network the evaluator samples with.
        weights: its weights file, usually ``models/model.pt``.
        configs_dir: the bundle's ``configs/`` (named in the error when the weights do not fit).
        device: where the weights are loaded to.
        writer: the handler that saves each generated volume, or a list of handlers (DiffuseMorph writes volumes
            and fields).
        base_config: the config that defines the network (``network_def``), which the others override: named in
            the error when the weights do not fit (``train_registration.json`` for DiffuseMorph's field export).
        load_weights: ``False`` leaves out the two loading handlers, for a ``network`` that already holds its
            weights (the MONAI Label server loads them once per worker, :mod:`common.label_app.worker`).
    """
    writers = list(writer) if isinstance(writer, (list, tuple)) else [writer]
    if not load_weights:
        return writers
    return [
        WeightsFitHandler(load_path=weights, network=network, configs_dir=configs_dir, base_config=base_config),
        CheckpointLoader(load_path=str(weights), load_dict={"model": network}, map_location=device),
        *writers,
    ]
