"""Weights against networks: whether a ``load_state_dict`` failure is a mismatch of tensors, and which of a bundle's
config files define a network the weights fit, for a one-line error that names the override to add.

A leaf module (torch and MONAI's ``ConfigParser`` only), so that the sampler of the latent DDPM
(``common.diffusion.latent``), the inference handlers (``common.engines.weights_fit``) and the runner share it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser
from torch import nn

__all__ = ["CPU_OVERRIDE", "fitting_configs", "is_state_dict_mismatch", "weights_mismatch_message"]

logger = logging.getLogger(__name__)

#: The override every bundle documents for CPUs.
CPU_OVERRIDE = "tiny_cpu.json"
#: Config files that are not overrides of a network.
NOT_OVERRIDES = ("metadata.json",)


def is_state_dict_mismatch(error: BaseException) -> bool:
    """Whether ``error`` is PyTorch's ``load_state_dict`` failure (missing, unexpected or differently shaped keys)."""
    return isinstance(error, RuntimeError) and "Error(s) in loading state_dict" in str(error)


def _shapes(state_dict: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state_dict.items() if isinstance(value, torch.Tensor)}


def _state_dict(checkpoint: Any) -> Mapping[str, Any]:
    """The network's state dict in a loaded checkpoint: the bare state dict of ``models/model.pt``, or its one entry."""
    if isinstance(checkpoint, Mapping) and len(checkpoint) == 1:
        (value,) = checkpoint.values()
        if isinstance(value, Mapping):
            return value
    return checkpoint


def fitting_configs(
    state_dict: Mapping[str, Any],
    configs_dir: str | Path,
    base_config: str = "inference.json",
    net_id: str = "network_def",
) -> list[str]:
    """The config files of ``configs_dir`` that, merged after ``base_config``, define a network ``net_id`` with the
    tensor names and shapes of ``state_dict``; :data:`CPU_OVERRIDE` first, then by name.

    Networks are built on PyTorch's ``meta`` device (shapes only, no memory); an override that cannot be merged
    with ``base_config`` or does not define ``net_id`` is skipped.
    """
    target = _shapes(state_dict)
    found = []
    for candidate in sorted(Path(configs_dir).glob("*.json"), key=lambda path: (path.name != CPU_OVERRIDE, path.name)):
        if candidate.name in (base_config, *NOT_OVERRIDES):
            continue
        parser = ConfigParser()
        try:  # an override of another config (train.json, ...) may not merge with base_config
            parser.read_config([str(Path(configs_dir) / base_config), str(candidate)])
            if net_id not in parser:
                continue
            with torch.device("meta"):
                network = parser.get_parsed_content(net_id)
        except Exception as error:
            logger.debug(f"{candidate.name} does not build {net_id} on top of {base_config}: {error}")
            continue
        if isinstance(network, nn.Module) and _shapes(network.state_dict()) == target:
            found.append(candidate.name)
    return found


def _first_difference(weights: Mapping[str, tuple[int, ...]], network: Mapping[str, tuple[int, ...]]) -> str:
    for key, shape in network.items():
        if key not in weights:
            return f"{key} is missing from the weights"
        if weights[key] != shape:
            return f"{key} is {weights[key]} in the weights, {shape} in the network"
    extra = sorted(set(weights) - set(network))
    return f"{extra[0]} is in the weights only" if extra else "the tensors differ"


def weights_mismatch_message(
    weights: str | Path,
    network: nn.Module,
    configs_dir: str | Path,
    base_config: str = "inference.json",
    net_id: str = "network_def",
) -> str:
    """One line saying that ``weights`` do not fit ``network`` and which config files they fit, if any."""
    state_dict = _state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    difference = _first_difference(_shapes(state_dict), _shapes(network.state_dict()))
    message = f"{weights}: the weights do not fit the network of these configs ({difference})"
    fits = fitting_configs(state_dict, configs_dir, base_config, net_id)
    if not fits:
        return (
            f"{message}, nor that of {base_config} with any one override of {configs_dir}; run with the config files "
            "and overrides they were trained with"
        )
    listed = " or ".join(f"{base_config} + {name}" for name in fits)
    quoted = ",".join(f"'configs/{name}'" for name in (base_config, fits[0]))
    return (
        f'{message}; they fit {listed}: add it to the config files, e.g. --config_file "[{quoted}]" '
        f'(brainsynth: --configs {base_config},{fits[0]}, or --run "[{base_config},{fits[0]}]")'
    )
