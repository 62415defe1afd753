"""The MONAI Label app: one inference task per bundle (served from a folder made by ``write_app_dir``).

Options (``--conf KEY VALUE``):

- ``bundles``: comma-separated bundle names under ``bundles/`` or bundle folders; default every bundle of this
  repository that has a ``configs/inference.json``.
- ``configs``: comma-separated config files merged into every bundle's inference config, default
  ``inference.json`` (e.g. ``inference.json,tiny_cpu.json`` for the tiny CPU models of the tests).
- ``sampler``, ``num_inference_steps``: every task's default sampling, default ``ddpm`` and ``50`` (the respaced
  DDPM; at most each bundle's T). A request may ask for another sampler or step count.
- ``workers``: inference worker processes, default ``1`` (see :class:`common.label_app.pool.WorkerPool`): each runs
  one request at a time with its own copy of the networks and ``CPUs / workers`` torch threads.
- ``queue_size``: requests that may wait for a worker, default ``8``; more are answered HTTP 503.
- ``preload``: ``true`` (default) loads every task's networks, and what its sampler loads once per process
  (DiffuseMorph's MNI152 template), in each worker at start, so that no request pays for it; ``false`` loads them
  on the first request of each bundle. Either way they stay loaded.

Each task is named after its bundle folder: ``POST /infer/med_ddpm_brain_mri`` with the drawn label volume as
``label`` returns the synthesised MRI; ``POST /infer/cdpm_brain_mri`` (or any unconditional bundle) returns a new
volume. :mod:`common.label_app.routes` serves it: bad requests answer HTTP 400 with the reason, an unknown model
404, a full queue 503, and a bundle that fails (e.g. without its weights) HTTP 500 with the root cause.
``GET /info/`` also reports the queue (``"queue": {"workers", "ready", "queue_size", "running", "waiting"}``).
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

from fastapi import HTTPException
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask

from common.bundle_runner import BUNDLES_DIR
from common.label_app.pool import WorkerPool
from common.label_app.routes import install_infer_route
from common.label_app.tasks import BundleSynthesisTask
from common.label_app.worker import BundleRunError

DISTRIBUTION = "brain-mri-diffusion-bundles"
"""The distribution (pyproject.toml's ``name``) that installs ``common``."""


def _version() -> str:
    """The installed version of :data:`DISTRIBUTION`, ``unknown`` where ``common`` is not installed (a copy)."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _conf_list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


class BrainSynthApp(MONAILabelApp):
    """MONAI Label app whose inference tasks are :class:`BundleSynthesisTask` s, one per bundle."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.bundles = _conf_list(conf.get("bundles")) or sorted(
            str(p) for p in BUNDLES_DIR.glob("*") if (p / "configs" / "inference.json").is_file()
        )
        self.configs = _conf_list(conf.get("configs")) or ["inference.json"]
        self.sampling = {
            "sampler": conf.get("sampler", "ddpm"),
            "num_inference_steps": conf.get("num_inference_steps", "50"),
        }
        self.pool: WorkerPool | None = None
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="Brain MRI diffusion bundles",
            description="Synthesise 3D brain MRI: from a drawn label volume (Med-DDPM) or unconditionally.",
            version=_version(),
        )

    def init_infers(self) -> dict[str, InferTask]:
        sampler, steps = self.sampling["sampler"], int(self.sampling["num_inference_steps"])
        tasks = [BundleSynthesisTask(bundle, self.configs, sampler, steps) for bundle in self.bundles]
        return {task.bundle_root.name: task for task in tasks}

    def tasks(self) -> dict[str, BundleSynthesisTask]:
        """The inference tasks by name."""
        return self._infers

    def on_init_complete(self) -> None:
        """In the server (MONAI Label calls this from its event loop at start-up): start the worker pool and serve
        ``POST /infer/{model}`` through it (:mod:`common.label_app.routes`)."""
        from monailabel.app import app  # the running server's FastAPI app; importing it elsewhere would build one

        super().on_init_complete()
        preload = self.conf.get("preload", "true").lower() == "true"
        self.pool = WorkerPool(
            workers=int(self.conf.get("workers", "1")),
            queue_size=int(self.conf.get("queue_size", "8")),
            preload=[(str(task.bundle_root), task.configs) for task in self.tasks().values()] if preload else (),
        )
        self.pool.start()
        install_infer_route(app, self)

    def info(self) -> dict[str, Any]:
        """MONAI Label's app info, with the inference queue's state in the server."""
        info = super().info()
        if self.pool is not None:
            info["queue"] = self.pool.stats()
        return info

    def infer(self, request: dict[str, Any], datastore=None) -> dict[str, Any]:
        """MONAI Label's in-process inference (not ``POST /infer``, see :mod:`common.label_app.routes`), its errors
        answered with the reason: HTTP 400 for a bad request, 500 when the bundle fails (e.g. missing weights)."""
        try:
            return super().infer(request, datastore)
        except BundleRunError as error:
            raise HTTPException(status_code=500, detail=f"{request.get('model')}: {error}") from error
        except (ValueError, FileNotFoundError) as error:
            raise HTTPException(status_code=400, detail=f"{request.get('model')}: {error}") from error

    def batch_infer(self, request: dict[str, Any], datastore=None) -> dict[str, Any]:
        """Not served: batch inference runs a task on the datastore's images and could name any file on the server
        as a label; these tasks generate one volume per ``POST /infer/{model}``."""
        raise HTTPException(status_code=400, detail="batch inference is not served; use POST /infer/{model}")
