"""The MONAI Label app: one inference task per bundle (served from a folder made by ``write_app_dir``).

Options (``--conf KEY VALUE``):

- ``bundles``: comma-separated bundle names under ``bundles/`` or bundle folders; default every bundle of this
  repository that has a ``configs/inference.json``.
- ``configs``: comma-separated config files merged into every bundle's inference config, default
  ``inference.json`` (e.g. ``inference.json,tiny_cpu.json`` for the tiny CPU models of the tests).
- ``sampler``, ``num_inference_steps``: every task's default sampling, default ``ddpm`` and ``50`` (the respaced
  DDPM; at most each bundle's T). A request may ask for another sampler or step count.

Each task is named after its bundle folder: ``POST /infer/med_ddpm_brain_mri`` with the drawn label volume as
``label`` returns the synthesised MRI; ``POST /infer/cdpm_brain_mri`` (or any unconditional bundle) returns a new
volume. Bad requests (no label, an unknown channel, a missing file) answer HTTP 400 with the reason, and a bundle
that fails (e.g. without its weights) HTTP 500 with the root cause.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask

import common
from common.bundle_runner import BUNDLES_DIR
from common.label_app.tasks import BundleRunError, BundleSynthesisTask


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
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="Brain MRI diffusion bundles",
            description="Synthesise 3D brain MRI: from a drawn label volume (Med-DDPM) or unconditionally.",
            version=common.__version__,
        )

    def init_infers(self) -> dict[str, InferTask]:
        sampler, steps = self.sampling["sampler"], int(self.sampling["num_inference_steps"])
        tasks = [BundleSynthesisTask(bundle, self.configs, sampler, steps) for bundle in self.bundles]
        return {task.bundle_root.name: task for task in tasks}

    def infer(self, request: dict[str, Any], datastore=None) -> dict[str, Any]:
        """MONAI Label's inference, its errors answered with the reason: HTTP 400 for a bad request, 500 when the
        bundle fails (e.g. its weights are missing)."""
        try:
            return super().infer(request, datastore)
        except BundleRunError as error:
            raise HTTPException(status_code=500, detail=f"{request.get('model')}: {error}") from error
        except (ValueError, FileNotFoundError) as error:
            raise HTTPException(status_code=400, detail=f"{request.get('model')}: {error}") from error
