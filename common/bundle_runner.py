"""Run a bundle config from Python the way ``python -m monai.bundle run`` does; the files a bundle's inference
loads."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ignite.engine import Events
from ignite.handlers import TimeLimit
from monai.bundle import ConfigParser, ConfigWorkflow

from common.errors import InputError

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
    try:
        workflow = ConfigWorkflow(
            config_file=[str(folder / "configs" / name) for name in configs],
            meta_file=str(folder / "configs" / "metadata.json"),
            logging_file=str(folder / "configs" / "logging.conf") if configure_logging else False,
            workflow_type=None,
            run_id=run_id,
            **overrides,
        )
    except KeyError as error:  # merging a nested key (``train#preview``) whose section no earlier file defines
        if not str(error.args[0]).startswith(_MISSING_SECTION):
            raise
        section = str(error.args[0]).removeprefix(_MISSING_SECTION)
        problem = f"they set keys inside `{section}`, which no earlier file defines"
        raise InputError(_incomplete_configs(folder, configs, problem)) from None
    try:
        workflow.initialize()
    except ValueError as error:
        if _UNDEFINED_REFERENCE not in str(error):
            raise
        problem = str(error).splitlines()[0].rstrip(".").replace(" in the config content", " in these files")
        raise InputError(_incomplete_configs(folder, configs, problem)) from None
    if time_limit_seconds is not None:
        if engine_id is None:
            raise ValueError("time_limit_seconds needs the engine_id of the engine to stop")
        engine = workflow.parser.get_parsed_content(engine_id)
        engine.add_event_handler(Events.ITERATION_COMPLETED, TimeLimit(limit_sec=int(time_limit_seconds)))
    workflow.run()
    workflow.finalize()
    return workflow


#: MONAI's messages for a nested key whose section no earlier config file defines, and for an ``@id`` that no
#: merged config file defines.
_MISSING_SECTION = "query key: "
_UNDEFINED_REFERENCE = "is not defined in the config content"


def _incomplete_configs(folder: Path, configs: Sequence[str], problem: str) -> str:
    """One line for config files that do not make a whole workflow, typically a later stage's overlay given alone."""
    return (
        f"{folder / 'configs'}: {', '.join(configs)}: {problem}; a later training stage's config is an overlay: give "
        "the config of the bundle's first stage before it, as the bundle's docs/README.md shows"
    )


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
