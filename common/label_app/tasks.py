"""MONAI Label inference task that runs a bundle's ``inference.json`` for one request."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from common.bundle_runner import bundle_dir, run_bundle
from common.diffusion.schedulers import SAMPLERS, check_inference_steps

#: Request parameters passed to every bundle as config overrides (shown as the task's options in the viewer).
SAMPLING_PARAMS = ("seed", "sampler", "num_inference_steps")
#: Extra request parameters of label-to-image bundles: Med-DDPM's mask edits.
MASK_EDIT_PARAMS = ("tumour_scale", "tumour_shift")


class BundleRunError(RuntimeError):
    """The bundle's inference failed on a valid request (e.g. missing weights); the message is the root cause."""


def _root_cause(error: BaseException) -> BaseException:
    while error.__cause__ is not None:
        error = error.__cause__
    return error


class BundleSynthesisTask(InferTask):
    """Generate one volume with a bundle's inference config and return it as a NIfTI file.

    A bundle whose inference config reads ``masks`` (Med-DDPM) is a *label-to-image* task: the request's ``label``,
    the label volume drawn in the viewer (``(D, H, W)`` integer classes, uploaded as the ``label`` file of
    ``POST /infer/{model}``), is the mask, and the result is the synthesised MRI with the mask's affine. The other
    bundles are unconditional: the request's image only satisfies MONAI Label's API and a new volume is returned.

    The result is one channel (``channel``, default the first of the bundle's ``channel_names``, e.g. ``t1ce``),
    intensities in [0, 1]. Each request loads the weights and runs the bundle as ``python -m monai.bundle run``
    would, so a request behaves exactly like the bundle on the command line.

    Args:
        bundle: bundle name under ``bundles/`` or path of a bundle folder (e.g. a downloaded archive, unpacked).
        configs: config files under the bundle's ``configs/``, merged in order, e.g.
            ``("inference.json", "tiny_cpu.json")``.
        sampler / num_inference_steps: default sampling of a request, at most the bundle's T steps; ``None``
            keeps the configs' own.
        description: shown in the viewer; default the bundle's metadata ``name``.
    """

    def __init__(
        self,
        bundle: str | Path,
        configs: Sequence[str] = ("inference.json",),
        sampler: str | None = None,
        num_inference_steps: int | None = None,
        description: str | None = None,
    ) -> None:
        self.bundle_root = bundle_dir(str(bundle))
        self.configs = list(configs)
        parser = ConfigParser()
        parser.read_config([str(self.bundle_root / "configs" / name) for name in self.configs])
        parser.read_meta(str(self.bundle_root / "configs" / "metadata.json"))
        self.label_to_image = "masks" in parser.config
        self.channel_names = list(parser.get_parsed_content("channel_names"))
        self.num_train_timesteps = int(parser.get_parsed_content("num_train_timesteps"))
        options = SAMPLING_PARAMS + (MASK_EDIT_PARAMS if self.label_to_image else ())
        defaults = {key: parser.config[key] for key in options if key in parser.config}
        if sampler is not None:
            defaults["sampler"] = sampler
        if num_inference_steps is not None:
            defaults["num_inference_steps"] = min(num_inference_steps, self.num_train_timesteps)
        super().__init__(
            type=InferType.OTHERS,
            labels=None,
            dimension=3,
            description=description or parser.get("_meta_#name", self.bundle_root.name),
            config={**defaults, "channel": self.channel_names[0]},
        )

    def is_valid(self) -> bool:
        return (self.bundle_root / "configs" / self.configs[0]).is_file()

    def _overrides(self, request: dict[str, Any]) -> dict[str, Any]:
        """Bundle config overrides from the request: the task's options and, for label-to-image, the mask."""
        overrides = {key: request[key] for key in self.config() if key in request and key != "channel"}
        if "sampler" in overrides and overrides["sampler"] not in SAMPLERS:
            raise ValueError(f"unknown sampler {overrides['sampler']!r}; choose one of {sorted(SAMPLERS)}")
        if "num_inference_steps" in overrides:
            overrides["num_inference_steps"] = check_inference_steps(
                overrides["num_inference_steps"], self.num_train_timesteps
            )
        if self.label_to_image:
            label = request.get("label")
            if not label:
                raise ValueError(
                    f"{self.bundle_root.name} synthesises an image from a label volume: send the label drawn in the "
                    "viewer as the request's 'label' file"
                )
            if not Path(label).is_file():
                raise FileNotFoundError(f"{label}: label volume not found")
            overrides.update(masks=str(label), num_samples_per_mask=1)
        else:
            overrides.update(num_volumes=1)
        return overrides

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Run the bundle; return the path of a temporary NIfTI (the server deletes it once sent) and its details.

        Raises:
            ValueError / FileNotFoundError: a bad request (no label for a label-to-image bundle, unknown channel or
                sampler, a step count outside [1, T]).
            BundleRunError: the bundle's inference failed, with the root cause (e.g. the missing weights file).
        """
        channel = request.get("channel", self.channel_names[0])
        if channel not in self.channel_names:
            raise ValueError(f"channel {channel!r} is not generated by {self.bundle_root.name}: {self.channel_names}")
        overrides = self._overrides(request)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="brainsynth_label_") as output_dir:
            try:
                run_bundle(self.bundle_root, self.configs, configure_logging=False, output_dir=output_dir, **overrides)
            except Exception as error:  # config evaluation wraps the cause: report the cause
                cause = _root_cause(error)
                raise BundleRunError(f"{type(cause).__name__}: {cause}") from error
            (record,) = json.loads((Path(output_dir) / "outputs.json").read_text())
            with tempfile.NamedTemporaryFile(suffix=".nii.gz", prefix=f"{channel}_", delete=False) as result:
                shutil.copyfile(record[channel], result.name)
        details = {
            "bundle": self.bundle_root.name,
            "channel": channel,
            "channels": self.channel_names,
            **{key: value for key, value in overrides.items() if key in self.config()},
            "latencies": {"total": round(time.perf_counter() - start, 3)},
        }
        return result.name, details
