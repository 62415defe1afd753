"""Test support shared by the test folders (``pythonpath = ["tests"]`` in pyproject.toml: ``from support import``).

Not shipped: bundle archives carry ``common/`` only (:mod:`common.packaging`), so what exists only for tests lives
here: untrained weights for smoke tests of inference, packaging and serving; the ``offline`` fixture; starting and
waiting for the MONAI Label server. Modules that use the fixtures name this module in ``pytest_plugins``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from common.bundle_runner import inference_sources
from common.data.fields import record_field_scale

REPO = Path(__file__).resolve().parents[1]
#: The inference of every bundle on its tiny CPU networks.
TINY_CONFIGS = ["inference.json", "tiny_cpu.json"]
#: The interpreter of the MONAI Label environment (``make install-label``) in which the label server runs.
LABEL_PYTHON = Path(os.environ.get("BRAINSYNTH_LABEL_PYTHON", REPO / ".venv-label" / "bin" / "python"))


def tiny_diffusemorph(seed: int, visible_fields: bool = True) -> torch.nn.Module:
    """A small :class:`common.networks.DiffuseMorph` (4 and 8 channels) for 16³-sized tests, initialised from ``seed``.

    MONAI zero-initialises the score network's output and nearly so the deformation head, so both give almost
    nothing; ``visible_fields`` re-initialises those two output layers (normal, std 0.1) for visibly non-zero fields.
    """
    from monai.networks.nets import DiffusionModelUNet, VoxelMorphUNet

    from common.networks import DiffuseMorph

    torch.manual_seed(seed)
    score = DiffusionModelUNet(
        spatial_dims=3, in_channels=3, out_channels=1, channels=(4, 8), attention_levels=(False, False),
        num_res_blocks=1, num_head_channels=4, norm_num_groups=4,
    )  # fmt: skip
    deformation = VoxelMorphUNet(
        spatial_dims=3, in_channels=2, unet_out_channels=4, channels=(4, 8), final_conv_channels=(4,)
    )
    network = DiffuseMorph(score, deformation)
    if visible_fields:
        torch.nn.init.normal_(deformation_head(network).weight, std=0.1)
        for parameter in network.score_network.out.parameters():
            torch.nn.init.normal_(parameter, std=0.1)
    return network


def deformation_head(network: torch.nn.Module) -> torch.nn.Conv3d:
    """The last convolution of a DiffuseMorph's deformation network: the one that outputs the field."""
    return [m for m in network.deformation_network.modules() if isinstance(m, torch.nn.Conv3d)][-1]


def write_untrained_weights(bundle: str | Path, configs: Sequence[str], seed: int = 0) -> list[Path]:
    """Write every file a bundle's inference loads (:func:`common.bundle_runner.inference_files`), from freshly
    initialised networks.

    For smoke tests of a bundle's inference, packaging or serving on tiny networks without training: the ``network``
    of the ``handlers`` (:func:`common.engines.inference_handlers`) goes to their ``weights`` (``models/model.pt``),
    ``autoencoder_def`` to ``autoencoder_path`` (Medical Diffusion's VQ-GAN, ``models/model_autoencoder.pt``) and a
    field scale of 1 voxel to ``field_scale_file`` (DiffuseMorph). Existing files are not replaced.

    Args:
        bundle: bundle folder or name (:func:`common.bundle_runner.bundle_dir`).
        configs: inference config files under its ``configs/``, e.g. ``["inference.json", "tiny_cpu.json"]``.
        seed: seed of the initial weights.

    Returns:
        the files written.

    Raises:
        FileExistsError: naming a file that is already there.
    """
    parser, files = inference_sources(bundle, configs)
    for path, _ in files:
        if path.exists():
            raise FileExistsError(f"{path}: already exists; untrained weights are written only where none are")
    torch.manual_seed(seed)
    for path, source in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        if source == "field_scale_file":
            record_field_scale(1.0, path)
            continue
        parsed = parser.get_parsed_content(source)
        states = {k: v.state_dict() for k, v in parsed.items()} if isinstance(parsed, dict) else parsed.state_dict()
        # one object: its bare state dict, as models/model.pt is written by training and read by the loader
        torch.save(next(iter(states.values())) if isinstance(parsed, dict) and len(states) == 1 else states, path)
    return [path for path, _ in files]


def untrained_bundle(name: str, root: Path, whole: bool = False, configs: Sequence[str] = TINY_CONFIGS) -> Path:
    """A copy of bundle ``name`` under ``root`` with what its inference on ``configs`` loads, untrained.

    Args:
        name: a bundle of this repository.
        root: parent folder of the copy (``root / name``).
        whole: copy the whole bundle folder (docs, LICENSE, ...: for packaging) without its ``models/``; by default
            its ``configs/`` only.
        configs: the inference config files whose networks are written (default: the tiny CPU networks).
    """
    folder = root / name
    if whole:
        shutil.copytree(REPO / "bundles" / name, folder, ignore=shutil.ignore_patterns("models"))
    else:
        shutil.copytree(REPO / "bundles" / name / "configs", folder / "configs")
    write_untrained_weights(folder, configs)
    return folder


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the test tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# The MONAI Label server, run from LABEL_PYTHON: tests/label_app are its HTTP clients.


def require_label_python() -> Path:
    """:data:`LABEL_PYTHON`; skips the test when it is missing, except under CI, where that fails it."""
    if not LABEL_PYTHON.is_file():
        message = f"{LABEL_PYTHON}: no MONAI Label environment; run `make install-label`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return LABEL_PYTHON


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def label_server_env(tmp: Path) -> dict[str, str]:
    """The server's environment: quiet warnings, no scoring updates, ``TMPDIR`` the test's folder ``tmp``."""
    return {
        **os.environ,
        "PYTHONWARNINGS": "ignore",
        "MONAI_LABEL_AUTO_UPDATE_SCORING": "false",
        "TMPDIR": str(tmp),
    }


def get_info(url: str, timeout: float = 5) -> dict:
    """``GET /info/`` of the server at ``url``."""
    with urllib.request.urlopen(f"{url}/info/", timeout=timeout) as response:
        return json.loads(response.read())


def wait_for_server(url: str, process: subprocess.Popen, log: Path, timeout: float = 240) -> dict:
    """Poll ``GET /info/`` until the server started as ``process`` answers; its answer.

    Fails the test, with the end of the server's ``log``, when the process ends first or ``timeout`` seconds pass.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return get_info(url)
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"monailabel server did not start:\n{log.read_text()[-6000:]}")
            time.sleep(0.25)


#: What ``python -m monai.bundle`` exposes to ``fire`` (its ``__main__`` calls ``fire.Fire()`` on these names).
_MONAI_BUNDLE_COMMANDS = (
    "ckpt_export", "download", "download_large_files", "init_bundle", "onnx_export", "run", "run_workflow",
    "trt_export", "verify_metadata", "verify_net_in_out",
)  # fmt: skip


def monai_bundle(argv: Sequence[str], cwd: Path, new_process: bool = False) -> subprocess.CompletedProcess:
    """``python -m monai.bundle <argv>`` in ``cwd``: the exit status and what it printed to stdout and stderr.

    ``new_process=True`` runs that very command. By default the same entry point runs in this process: ``fire``
    parses ``argv`` as it does on the command line, the bundle's ``logging.conf`` is applied for the duration and
    the host's logging restored after, and a failure's traceback goes to stderr with exit status 1. That saves the
    ~6 s of importing torch, MONAI and Ignite per run.
    """
    command = [sys.executable, "-m", "monai.bundle", *map(str, argv)]
    if new_process:
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    import fire
    import monai.bundle.scripts as scripts

    commands = {name: getattr(scripts, name) for name in _MONAI_BUNDLE_COMMANDS}
    stdout, stderr = io.StringIO(), io.StringIO()
    with (
        contextlib.chdir(cwd),
        _host_logging_kept(),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        try:
            fire.Fire(commands, command=[str(a) for a in argv], name="monai.bundle")
            returncode = 0
        except SystemExit as error:  # fire's own exits (bad flags, help)
            returncode = error.code if isinstance(error.code, int) else 1
        except Exception:
            traceback.print_exc()
            returncode = 1
    return subprocess.CompletedProcess(command, returncode, stdout.getvalue(), stderr.getvalue())


@contextlib.contextmanager
def _host_logging_kept():
    """Restore the root logger's handlers and level after a bundle run applied its ``logging.conf``."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
            handler.close()
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
