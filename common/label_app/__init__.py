"""MONAI Label app serving the synthesis bundles (optional extra ``label``: ``pip install -e .[label]``).

:data:`APP_DIR` is the app folder that ``monailabel start_server --app`` takes, and :func:`start_server_command`
the whole command (``brainsynth label`` runs it). Nothing here imports MONAI Label, and ``common`` does not import
this package, so the bundles run without MONAI Label installed.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent


def start_server_command(
    studies: str | Path,
    bundles: Sequence[str | Path] = (),
    configs: Sequence[str] = (),
    host: str = "127.0.0.1",
    port: int = 8000,
    python: str | Path | None = None,
) -> list[str]:
    """``python -m monailabel.main start_server`` with this app and its options (see :mod:`common.label_app.main`).

    Args:
        studies: MONAI Label's datastore folder (the images a viewer lists; may be empty).
        bundles: bundle names under ``bundles/`` or bundle folders; default every bundle of this repository.
        configs: config files merged into each bundle's inference, default ``inference.json``.
        host / port: where the server listens.
        python: interpreter of the environment that has MONAI Label; default this one, which must have it.

    Raises:
        ModuleNotFoundError: when ``python`` is this interpreter and MONAI Label is not installed in it.
    """
    if python is None:
        if importlib.util.find_spec("monailabel") is None:
            raise ModuleNotFoundError(
                "MONAI Label is not installed in this environment: `make install-label` builds .venv-label with it "
                "(or `pip install torch==2.14.1 torchvision==0.29.1 && pip install -e .[label]`)"
            )
        python = sys.executable
    command = [str(python), "-m", "monailabel.main", "start_server", "--app", str(APP_DIR), "--studies", str(studies)]
    command += ["--host", host, "--port", str(port)]
    if bundles:
        command += ["--conf", "bundles", ",".join(str(bundle) for bundle in bundles)]
    if configs:
        command += ["--conf", "configs", ",".join(configs)]
    return command


__all__ = ["APP_DIR", "start_server_command"]
