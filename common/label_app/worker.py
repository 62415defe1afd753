"""A bundle's inference for one request, with its networks loaded once: what the server's worker processes run.

:func:`synthesise` runs a bundle's inference config as ``python -m monai.bundle run`` would, except that the
networks come from :func:`loaded_networks` (instantiated and loaded once per bundle and config files, then kept) and
that it can be cancelled between two network calls. :func:`serve` is the loop of a worker process of
:class:`common.label_app.pool.WorkerPool`. Nothing here imports MONAI Label.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from ignite.engine import Engine
from monai.bundle import ConfigParser
from monai.handlers import CheckpointLoader

from common.bundle_runner import run_bundle
from common.errors import root_cause

logger = logging.getLogger(__name__)

#: ``prctl`` option that signals a process when its parent dies (``linux/prctl.h``).
PR_SET_PDEATHSIG = 1


class BundleRunError(RuntimeError):
    """The bundle's inference failed on a valid request (e.g. missing weights); the message is the root cause."""


class RequestCancelled(RuntimeError):
    """The request was cancelled (its client went away) before its volume was generated."""


@dataclass(frozen=True)
class SynthesisJob:
    """One request's work, checked already (:meth:`common.label_app.tasks.BundleSynthesisTask.job`).

    Args:
        bundle_root: the bundle folder.
        configs: config files under its ``configs/``, merged in order.
        overrides: config values of this request (sampling, seed, the mask's path, ...).
        channel: the generated channel to return.
        work_dir: the request's folder, where the bundle writes; its owner removes it.
        label: the label volume for label-to-image bundles: the result is put back on its grid and orientation.
        details: what the response reports besides the latency.
    """

    bundle_root: str
    configs: tuple[str, ...]
    overrides: dict[str, Any]
    channel: str
    work_dir: str
    label: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


_networks: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
_networks_lock = threading.Lock()


def _load_networks(bundle_root: str, configs: Sequence[str]) -> dict[str, Any]:
    parser = ConfigParser()
    parser.read_config([str(Path(bundle_root) / "configs" / name) for name in configs])
    parser["bundle_root"] = bundle_root
    ids = [key for key, value in parser.config.items() if value == f"$@{key}_def.to(@device)"]
    overrides = {key: parser.get_parsed_content(key) for key in ids}
    loaded = [id(value) for value in overrides.values()]
    engine = Engine(lambda engine, batch: None)  # CheckpointLoader keeps an engine's max_epochs; there is none here
    network = parser.get_parsed_content("handlers#network")  # handlers: common.engines.inference_handlers
    if id(network) in loaded:  # else it loads on every request
        weights, device = (parser.get_parsed_content(f"handlers#{name}") for name in ("weights", "device"))
        CheckpointLoader(load_path=str(weights), load_dict={"model": network}, map_location=device)(engine)
        overrides["handlers#load_weights"] = False
    return overrides


def loaded_networks(bundle_root: str | Path, configs: Sequence[str]) -> dict[str, Any]:
    """The bundle's networks with their weights, as config overrides; loaded on the first call, then kept.

    Every top-level config id defined as ``"$@<id>_def.to(@device)"`` (``network``; Medical Diffusion's ``codec``,
    which loads the VQ-GAN weights) is instantiated, the weights of the ``handlers``
    (:func:`common.engines.inference_handlers`) are loaded into its network when that is among them, and the
    overrides map those ids to the loaded objects and leave the loading handlers out (``load_weights: false``).
    Cached per bundle folder and config files: weights written later are read after a restart.

    Raises:
        Exception: whatever instantiating or loading raises (e.g. ``FileNotFoundError`` for missing weights); nothing
            is cached then.
    """
    key = (str(bundle_root), tuple(configs))
    with _networks_lock:
        if key not in _networks:
            _networks[key] = _load_networks(str(bundle_root), configs)
        return _networks[key]


def preload_bundle(bundle_root: str | Path, configs: Sequence[str]) -> None:
    """Load the bundle's networks (:func:`loaded_networks`) and build its sampler (the config's ``inferer``) once, so
    that what the sampler loads once per process is loaded before the first request too: DiffuseMorph's MNI152
    template (:func:`common.data.load_mni152`: 6 s to resample at 128³ on a 2-core machine, 0.02 s once it is in the
    disk cache).

    Raises:
        Exception: whatever loading the networks or building the sampler raises.
    """
    networks = loaded_networks(bundle_root, configs)
    parser = ConfigParser()
    parser.read_config([str(Path(bundle_root) / "configs" / name) for name in configs])
    parser.update({"bundle_root": str(bundle_root), **networks})
    if "inferer" in parser:
        parser.get_parsed_content("inferer")


def _cancel_check(cancelled: Callable[[], bool]) -> Callable[..., None]:
    def hook(module: torch.nn.Module, args: Any) -> None:
        if cancelled():
            raise RequestCancelled("cancelled: the client went away")

    return hook


def _onto_label_grid(result: Path, label: str) -> None:
    """Reorient ``result`` (generated on the RAS grid the bundle reorients the label to) back to the label's own."""
    image, reference = nib.load(result), nib.load(label)
    if not np.allclose(image.affine, reference.affine, atol=1e-4):
        transform = nib.orientations.ornt_transform(
            nib.orientations.io_orientation(image.affine), nib.orientations.io_orientation(reference.affine)
        )
        image = image.as_reoriented(transform)
        nib.save(image, result)
    if image.shape[:3] != reference.shape[:3] or not np.allclose(image.affine, reference.affine, atol=1e-4):
        raise BundleRunError(
            f"the result's grid {image.shape[:3]} (affine {image.affine.tolist()}) is not the label's "
            f"{reference.shape[:3]} (affine {reference.affine.tolist()})"
        )


def synthesise(job: SynthesisJob, cancelled: Callable[[], bool] | None = None) -> tuple[str, dict[str, Any]]:
    """Generate one volume; return the path of the NIfTI of ``job.channel`` (under ``job.work_dir``) and details.

    Args:
        job: the request's work.
        cancelled: polled before every call of the bundle's networks; once it returns ``True`` the run stops with
            :class:`RequestCancelled`. Hooks are put on the shared networks, so give it only where one request at a
            time runs (a worker process).

    Raises:
        BundleRunError: the bundle's inference failed, with the root cause (e.g. the missing weights file).
        RequestCancelled: ``cancelled()`` returned ``True``.
    """
    start = time.perf_counter()
    output_dir = Path(job.work_dir) / "outputs"
    hooks = []
    try:
        networks = loaded_networks(job.bundle_root, job.configs)
        if cancelled is not None:
            modules = [value for value in networks.values() if isinstance(value, torch.nn.Module)]
            hooks = [module.register_forward_pre_hook(_cancel_check(cancelled)) for module in modules]
        overrides = {**job.overrides, **networks}
        run_bundle(job.bundle_root, job.configs, configure_logging=False, output_dir=str(output_dir), **overrides)
    except Exception as error:  # config evaluation wraps the cause: report the cause
        cause = root_cause(error)
        if isinstance(cause, RequestCancelled):
            raise cause from None
        raise BundleRunError(f"{type(cause).__name__}: {cause}") from error
    finally:
        for hook in hooks:
            hook.remove()
    (record,) = json.loads((output_dir / "outputs.json").read_text())
    result = Path(record[job.channel])
    if job.label is not None:
        _onto_label_grid(result, job.label)
    return str(result), {**job.details, "latencies": {"total": round(time.perf_counter() - start, 3)}}


def _exit_with_parent(parent: int) -> None:
    """Have Linux send SIGTERM to this process when its parent dies (``prctl(PR_SET_PDEATHSIG)``)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(1)


def serve(
    connection: Connection,
    cancel: Event,
    ready: Event,
    parent: int,
    num_threads: int | None,
    preload: Sequence[tuple[str, Sequence[str]]] = (),
) -> None:
    """Loop of a worker process: run each :class:`SynthesisJob` received and send back ``(result, error)``.

    ``(path, details)`` of :func:`synthesise` and ``None``, or ``None`` and the :class:`BundleRunError` or
    :class:`RequestCancelled`. The server clears ``cancel`` before it sends a job and sets it to cancel the job. The
    process ends when ``connection`` closes or the server process ``parent`` dies (SIGTERM on Linux); Ctrl-C is left
    to the server.

    Args:
        connection: the worker's end of the pipe to the server.
        cancel: set by the server to cancel the running job.
        ready: set here once the bundles of ``preload`` are loaded (:func:`preload_bundle`).
        parent: process id of the server.
        num_threads: torch's intra-op threads; ``None`` keeps torch's default (``OMP_NUM_THREADS``).
        preload: ``(bundle folder, config files)`` whose networks and sampler are loaded before the first job
            (:func:`preload_bundle`); one that fails (e.g. missing weights) is logged here and reported to the
            requests for it.
    """
    _exit_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    for bundle_root, configs in preload:
        try:
            preload_bundle(bundle_root, configs)
        except Exception as error:  # the requests for this bundle get the error with its root cause
            cause = root_cause(error)
            logger.warning(f"{bundle_root}: not preloaded: {type(cause).__name__}: {cause}")
    ready.set()
    while True:
        try:
            job = connection.recv()
        except EOFError:
            return
        try:
            reply = (synthesise(job, cancel.is_set), None)
        except (BundleRunError, RequestCancelled) as error:
            reply = (None, error)
        except Exception as error:  # a failure of this worker's own code: reported, and the worker goes on
            reply = (None, BundleRunError(f"{type(error).__name__}: {error}"))
        connection.send(reply)
