"""Run a bundle config from Python the way ``python -m monai.bundle run`` does; the files a bundle's inference loads;
which config files weights that do not fit a network were made with."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Events
from ignite.handlers import TimeLimit
from monai.bundle import ConfigParser, ConfigWorkflow
from torch import nn

logger = logging.getLogger(__name__)

BUNDLES_DIR = Path(__file__).resolve().parent.parent / "bundles"


def bundle_dir(name: str) -> Path:
    """The folder of bundle ``name``, absolute.

    In this order: ``name`` itself when it is a bundle folder (a path such as ``.`` or ``bundles_downloaded/x``);
    the current folder when it is the bundle ``name`` (as when following a bundle README, which runs from the
    bundle's folder); ``bundles/<name>`` under the current folder (the root of a copy of this repository); this
    repository's ``bundles/<name>``.

    Raises:
        FileNotFoundError: none of these is a bundle folder (one with ``configs/``).
    """
    cwd = Path.cwd()
    for folder in (Path(name), cwd if cwd.name == name else None, cwd / "bundles" / name, BUNDLES_DIR / name):
        if folder is not None and (folder / "configs").is_dir():
            return folder.resolve()
    known = sorted(p.name for p in BUNDLES_DIR.glob("*") if (p / "configs").is_dir())
    raise FileNotFoundError(f"{name}: not a bundle folder (one with configs/); known bundles: {known}")


def run_bundle(
    bundle: str | Path,
    configs: Sequence[str],
    run_id: str = "run",
    time_limit_seconds: float | None = None,
    engine_id: str | None = None,
    configure_logging: bool = True,
    **overrides: Any,
) -> ConfigWorkflow:
    """Initialise and run a bundle workflow; ``configs`` are file names under the bundle's ``configs/``.

    Args:
        bundle: bundle name (folder under ``bundles/``) or path.
        configs: config files merged in order, e.g. ``["train.json", "tiny_cpu.json"]``.
        run_id: the config id to run (``"run"`` or ``"training"``).
        time_limit_seconds: stop the engine ``engine_id`` cleanly after this many seconds (Ignite ``TimeLimit``);
            its checkpoint and exported weights are still written on completion.
        engine_id: config id of the engine to limit, e.g. ``"train#trainer"``.
        configure_logging: apply the bundle's ``logging.conf``; ``False`` keeps the host's logging (a server).
        overrides: config values to override, e.g. ``dataset_dir="..."``.
    """
    folder = bundle_dir(str(bundle))
    overrides.setdefault("bundle_root", str(folder))
    workflow = ConfigWorkflow(
        config_file=[str(folder / "configs" / name) for name in configs],
        meta_file=str(folder / "configs" / "metadata.json"),
        logging_file=str(folder / "configs" / "logging.conf") if configure_logging else False,
        workflow_type=None,
        run_id=run_id,
        **overrides,
    )
    workflow.initialize()
    if time_limit_seconds is not None:
        if engine_id is None:
            raise ValueError("time_limit_seconds needs the engine_id of the engine to stop")
        engine = workflow.parser.get_parsed_content(engine_id)
        engine.add_event_handler(Events.ITERATION_COMPLETED, TimeLimit(limit_sec=int(time_limit_seconds)))
    workflow.run()
    workflow.finalize()
    return workflow


def _inference_parser(folder: Path, configs: Sequence[str]) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(folder / "configs" / name) for name in configs])
    parser["bundle_root"] = str(folder)
    return parser


def _loaded_files(parser: ConfigParser) -> list[tuple[Path, str]]:
    """``(file, config id of what it holds)`` for every file an inference config loads.

    The ``weights`` of the ``handlers`` (:func:`common.engines.inference_handlers`; ``models/model.pt``, holding
    its ``network``), ``autoencoder_path`` (Medical Diffusion's VQ-GAN ``autoencoder_def``,
    ``models/model_autoencoder.pt``) and ``field_scale_file`` (DiffuseMorph's ``models/field_scale.json``).
    """
    files = []
    if "handlers#weights" in parser:
        files.append((Path(parser.get_parsed_content("handlers#weights")), "handlers#network"))
    if "autoencoder_def" in parser:
        files.append((Path(parser.get_parsed_content("autoencoder_path")), "autoencoder_def"))
    if "field_scale_file" in parser:
        files.append((Path(parser.get_parsed_content("field_scale_file")), "field_scale_file"))
    return files


def inference_sources(
    bundle: str | Path, configs: Sequence[str] = ("inference.json",)
) -> tuple[ConfigParser, list[tuple[Path, str]]]:
    """The config parser of a bundle's inference configs, and ``(file, config id of what it holds)`` for every file
    they load (its ``models/`` weights, DiffuseMorph's field scale).

    Args:
        bundle: bundle folder or name (:func:`bundle_dir`).
        configs: inference config files under its ``configs/``, merged in order.
    """
    parser = _inference_parser(bundle_dir(str(bundle)), configs)
    return parser, _loaded_files(parser)


def inference_files(bundle: str | Path, configs: Sequence[str] = ("inference.json",)) -> list[Path]:
    """The files (weights, DiffuseMorph's field scale) that a bundle's inference loads, under its ``models/``.

    Args:
        bundle: bundle folder or name (:func:`bundle_dir`).
        configs: inference config files under its ``configs/``, merged in order.
    """
    return [path for path, _ in inference_sources(bundle, configs)[1]]


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
