"""Run a bundle config from Python the way ``python -m monai.bundle run`` does, with optional extra handlers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ignite.engine import Events
from ignite.handlers import TimeLimit
from monai.bundle import ConfigWorkflow

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
