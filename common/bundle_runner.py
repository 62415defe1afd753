"""Run a bundle config from Python the way ``python -m monai.bundle run`` does; untrained weights for smoke tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Events
from ignite.handlers import TimeLimit
from monai.bundle import ConfigParser, ConfigWorkflow

BUNDLES_DIR = Path(__file__).resolve().parent.parent / "bundles"


def bundle_dir(name: str) -> Path:
    """Folder of a bundle of this repository, or the path given if it is a bundle folder itself."""
    candidate = Path(name)
    folder = candidate if (candidate / "configs").is_dir() else BUNDLES_DIR / name
    if not (folder / "configs").is_dir():
        known = sorted(p.name for p in BUNDLES_DIR.glob("*") if (p / "configs").is_dir())
        raise FileNotFoundError(f"{name}: not a bundle folder; known bundles: {known}")
    return folder


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

    Each ``CheckpointLoader``'s ``load_path`` (``models/model.pt``, holding its ``load_dict``), ``autoencoder_path``
    (Medical Diffusion's VQ-GAN ``autoencoder_def``, ``models/model_autoencoder.pt``) and ``field_scale_file``
    (DiffuseMorph's ``models/field_scale.json``).
    """
    files = []
    for index, handler in enumerate(parser.get("handlers", [])):
        if isinstance(handler, dict) and handler.get("_target_") == "CheckpointLoader":
            files.append(
                (Path(parser.get_parsed_content(f"handlers#{index}#load_path")), f"handlers#{index}#load_dict")
            )
    if "autoencoder_def" in parser:
        files.append((Path(parser.get_parsed_content("autoencoder_path")), "autoencoder_def"))
    if "field_scale_file" in parser:
        files.append((Path(parser.get_parsed_content("field_scale_file")), "field_scale_file"))
    return files


def inference_files(bundle: str | Path, configs: Sequence[str] = ("inference.json",)) -> list[Path]:
    """The files (weights, DiffuseMorph's field scale) that a bundle's inference loads, under its ``models/``.

    Args:
        bundle: bundle name under ``bundles/`` or bundle folder.
        configs: inference config files under its ``configs/``, merged in order.
    """
    folder = bundle_dir(str(bundle))
    return [path for path, _ in _loaded_files(_inference_parser(folder, configs))]


def write_untrained_weights(bundle: str | Path, configs: Sequence[str], seed: int = 0) -> list[Path]:
    """Write every file a bundle's inference loads (:func:`inference_files`), from freshly initialised networks.

    For smoke tests of a bundle's inference, packaging or serving on tiny networks without training: each
    ``CheckpointLoader``'s ``load_dict`` goes to its ``load_path`` (``models/model.pt``), ``autoencoder_def`` to
    ``autoencoder_path`` (Medical Diffusion's VQ-GAN, ``models/model_autoencoder.pt``) and a field scale of 1 voxel
    to ``field_scale_file`` (DiffuseMorph). Existing files are not replaced.

    Args:
        bundle: bundle name under ``bundles/`` or bundle folder.
        configs: inference config files under its ``configs/``, e.g. ``["inference.json", "tiny_cpu.json"]``.
        seed: seed of the initial weights.

    Returns:
        the files written.

    Raises:
        FileExistsError: naming a file that is already there.
    """
    parser = _inference_parser(bundle_dir(str(bundle)), configs)
    files = _loaded_files(parser)
    for path, _ in files:
        if path.exists():
            raise FileExistsError(f"{path}: already exists; untrained weights are written only where none are")
    torch.manual_seed(seed)
    for path, source in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        if source == "field_scale_file":
            path.write_text(json.dumps({"field_scale": 1.0, "unit": "voxel"}))
            continue
        parsed = parser.get_parsed_content(source)
        states = {k: v.state_dict() for k, v in parsed.items()} if isinstance(parsed, dict) else parsed.state_dict()
        # one object: its bare state dict, as models/model.pt is written by training and read by the loader
        torch.save(next(iter(states.values())) if isinstance(parsed, dict) and len(states) == 1 else states, path)
    return [path for path, _ in files]
