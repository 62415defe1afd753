"""MONAI Label app serving the synthesis bundles (optional extra ``label``: ``pip install -e .[label]``).

MONAI Label runs an app *folder* and writes its logs and working folders (``logs/``, ``model/``, ...) into it, so
the app is not served from this package: :func:`write_app_dir` makes a working folder whose ``main.py`` imports
:class:`common.label_app.main.BrainSynthApp`, and :func:`start_server_command` is the ``monailabel start_server``
command for it (``brainsynth label`` runs both, then becomes the server, :func:`exec_server`). Nothing here imports
MONAI Label, and ``common`` does not import this package, so the bundles run without MONAI Label installed.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

APP_MAIN = '''"""MONAI Label app folder of the brain MRI diffusion bundles (written by ``brainsynth label``)."""

from common.label_app.main import BrainSynthApp  # noqa: F401  (MONAI Label looks for the MONAILabelApp here)
'''


def write_app_dir(folder: str | Path) -> Path:
    """Create (or refresh) the app folder ``folder`` with its ``main.py``; MONAI Label writes its logs there too."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.py").write_text(APP_MAIN)
    return folder


def start_server_command(
    app_dir: str | Path,
    studies: str | Path,
    bundles: Sequence[str | Path] = (),
    configs: Sequence[str] = (),
    host: str = "127.0.0.1",
    port: int = 8000,
    python: str | Path | None = None,
    sampler: str = "ddpm",
    num_inference_steps: int = 50,
    workers: int = 1,
    queue_size: int = 8,
) -> list[str]:
    """``python -m monailabel.main start_server`` with the app and its options (see :mod:`common.label_app.main`).

    Args:
        app_dir: the app folder written by :func:`write_app_dir`.
        studies: MONAI Label's datastore folder (the images a viewer lists; may be empty).
        bundles: bundle names under ``bundles/`` or bundle folders; default every bundle of this repository.
        configs: config files merged into each bundle's inference, default ``inference.json``.
        host / port: where the server listens.
        python: interpreter of the environment that has MONAI Label; default this one, which must have it.
        sampler / num_inference_steps: every task's default sampling (a request may ask for others): the respaced
            DDPM at 50 steps, the fast sampler measured to match the full chain (see the bundles' READMEs); a bundle
            whose T is smaller samples all its T steps.
        workers / queue_size: inference worker processes, each running one request at a time, and the requests that
            may wait for one; more are answered HTTP 503 (see :class:`common.label_app.pool.WorkerPool`).

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
    command = [str(python), "-m", "monailabel.main", "start_server", "--app", str(app_dir), "--studies", str(studies)]
    command += ["--host", host, "--port", str(port)]
    if bundles:
        command += ["--conf", "bundles", ",".join(str(bundle) for bundle in bundles)]
    if configs:
        command += ["--conf", "configs", ",".join(configs)]
    command += ["--conf", "sampler", sampler, "--conf", "num_inference_steps", str(num_inference_steps)]
    command += ["--conf", "workers", str(workers), "--conf", "queue_size", str(queue_size)]
    return command


def exec_server(command: Sequence[str]) -> NoReturn:
    """Replace this process by the server ``command`` (``os.execv``; the process id stays the same).

    The launcher does not wait on a child server: it *is* the server, so SIGTERM / SIGINT (Ctrl-C) sent to it reach
    the server itself, and killing it (even with SIGKILL) kills the server, whose inference workers then exit
    too (``PR_SET_PDEATHSIG``, :mod:`common.label_app.worker`). Nothing runs after this call.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], list(command))


__all__ = ["write_app_dir", "start_server_command", "exec_server"]
