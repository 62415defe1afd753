"""MONAI Label inference task of a bundle: its request parameters, its label volume, and the run."""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from monai.bundle import ConfigParser
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from common.bundle_runner import bundle_dir
from common.diffusion.schedulers import SAMPLERS, check_inference_steps
from common.label_app.worker import SynthesisJob, synthesise

#: Request parameters passed to every bundle as config overrides (shown as the task's options in the viewer).
SAMPLING_PARAMS = ("seed", "sampler", "num_inference_steps")
#: Extra request parameters of label-to-image bundles: Med-DDPM's mask edits.
MASK_EDIT_PARAMS = ("tumour_scale", "tumour_shift")
#: Suffixes of the label files read (NIfTI).
LABEL_SUFFIXES = (".nii", ".nii.gz")
#: Seeds are given to ``numpy.random.seed`` by MONAI's ``set_determinism``, which takes 0 to 2**32 - 1.
MAX_SEED = 2**32 - 1


def _is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_seed(value: Any) -> int | None:
    if value is not None and not (_is_integer(value) and 0 <= value <= MAX_SEED):
        raise ValueError(f"seed must be null or a whole number from 0 to {MAX_SEED}, got {value!r}")
    return value


def _check_sampler(value: Any) -> str:
    if value not in SAMPLERS:
        raise ValueError(f"unknown sampler {value!r}; choose one of {sorted(SAMPLERS)}")
    return value


def _check_tumour_scale(value: Any) -> float:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (is_number and math.isfinite(value) and value > 0):
        raise ValueError(f"tumour_scale must be a number above 0 (1 keeps the tumour's size), got {value!r}")
    return float(value)


def _check_tumour_shift(value: Any) -> list[int]:
    if not (isinstance(value, list) and len(value) == 3 and all(_is_integer(v) for v in value)):
        raise ValueError(f"tumour_shift must be 3 whole numbers of voxels, e.g. [0, 4, 0], got {value!r}")
    return value


class BundleSynthesisTask(InferTask):
    """Generate one volume with a bundle's inference config and return it as a NIfTI file.

    A bundle whose inference config reads ``masks`` (Med-DDPM) is a *label-to-image* task: the request's ``label``,
    the label volume drawn in the viewer (``(D, H, W)`` integer classes on the model's grid, uploaded as the
    ``label`` file of ``POST /infer/{model}``), is the mask, and the result is the synthesised MRI on the mask's
    grid, with its affine. The other bundles are unconditional: a new volume is returned.

    The result is one channel (``channel``, default the first of the bundle's ``channel_names``, e.g. ``t1ce``),
    intensities in [0, 1]. A request runs the bundle as ``python -m monai.bundle run`` would, with the networks
    loaded once per bundle and config files (:func:`common.label_app.worker.loaded_networks`).

    Over HTTP a request is checked before any work (:meth:`check_params`, :meth:`check_label`) and run by the
    server's workers (:mod:`common.label_app.routes`); calling the task runs it in this process.

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
        self.spatial_size = tuple(int(size) for size in parser.get_parsed_content("spatial_size"))
        self.num_classes = int(parser.get_parsed_content("num_classes")) if self.label_to_image else 0
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

    def _check_channel(self, value: Any) -> str:
        if value not in self.channel_names:
            raise ValueError(f"channel {value!r} is not generated by {self.bundle_root.name}: {self.channel_names}")
        return value

    def _check_steps(self, value: Any) -> int:
        return check_inference_steps(value, self.num_train_timesteps)

    def schema(self) -> dict[str, Callable[[Any], Any]]:
        """The request parameters this task takes (its :meth:`config`), each with its check."""
        checks = {
            "seed": _check_seed,
            "sampler": _check_sampler,
            "num_inference_steps": self._check_steps,
            "tumour_scale": _check_tumour_scale,
            "tumour_shift": _check_tumour_shift,
            "channel": self._check_channel,
        }
        return {key: checks[key] for key in self.config()}

    def check_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The task's options (:meth:`config`) updated with the request's ``params``, every value checked.

        Raises:
            ValueError: naming a parameter this task does not take (files, the label included, are uploaded, never
                named by a path on the server) or a value it refuses.
        """
        schema = self.schema()
        unknown = sorted(set(params) - set(schema))
        if unknown:
            paths = {"label", "image"} & set(unknown)
            files = " (files are uploaded, never named by a path on the server)" if paths else ""
            raise ValueError(f"unknown parameter(s) {unknown}{files}; {self.bundle_root.name} takes {sorted(schema)}")
        return {key: check(params.get(key, self.config()[key])) for key, check in schema.items()}

    def check_label(self, path: str | Path) -> None:
        """Check the label volume of a label-to-image request: a readable 3D NIfTI of whole numbers from 0 to
        ``num_classes - 1`` on the model's grid (``spatial_size``, in any axis order and direction).

        Raises:
            ValueError: saying what is wrong with the label.
        """
        name = Path(path).name
        if not name.endswith(LABEL_SUFFIXES):
            raise ValueError(f"label {name!r}: send the label volume as NIfTI ({' or '.join(LABEL_SUFFIXES)})")
        try:
            image = nib.load(path)
            data = np.asanyarray(image.dataobj)
        except Exception as error:  # nibabel and gzip raise many types for a truncated or foreign file
            raise ValueError(f"label: not a readable NIfTI volume ({type(error).__name__}: {error})") from error
        while data.ndim > 3 and data.shape[-1] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            raise ValueError(f"label: expected a 3D volume, got shape {data.shape}")
        classes = f"whole numbers from 0 to {self.num_classes - 1}"
        if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)):
            raise ValueError(f"label: values must be {classes}; found values that are not whole numbers")
        values = np.unique(data)
        wrong = values[(values < 0) | (values >= self.num_classes)]
        if wrong.size:
            raise ValueError(f"label: values must be {classes}; found {wrong[:10].astype(int).tolist()}")
        axes = nib.orientations.io_orientation(image.affine)[:, 0].astype(int)
        ras_shape = [0, 0, 0]
        for axis, size in zip(axes, data.shape, strict=True):
            ras_shape[axis] = size
        if tuple(ras_shape) != self.spatial_size:
            raise ValueError(
                f"label: its grid {'x'.join(map(str, data.shape))} is not the model's "
                f"{'x'.join(map(str, self.spatial_size))} (RAS order); resample the label onto the model's grid first "
                "(the result has the label's grid and affine)"
            )

    def job(self, params: Mapping[str, Any], label: str | None, work_dir: str) -> SynthesisJob:
        """The work of a request whose ``params`` (:meth:`check_params`) and ``label`` (:meth:`check_label`) are
        checked, writing under ``work_dir``.

        Raises:
            ValueError: a label-to-image request without a label.
        """
        overrides = {key: value for key, value in params.items() if key != "channel"}
        if self.label_to_image:
            if not label:
                raise ValueError(
                    f"{self.bundle_root.name} synthesises an image from a label volume: send the label drawn in the "
                    "viewer as the request's 'label' file"
                )
            overrides.update(masks=str(label), num_samples_per_mask=1)
        else:
            overrides.update(num_volumes=1)
        details = {"bundle": self.bundle_root.name, "channels": self.channel_names, **params}
        return SynthesisJob(
            str(self.bundle_root), tuple(self.configs), overrides, params["channel"], work_dir, label, details
        )

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Run the bundle in this process (MONAI Label's in-process API: ``request["label"]`` is a path here).

        Returns:
            the path of a temporary NIfTI, which the caller deletes, and the request's details.

        Raises:
            ValueError: a bad request (no label for a label-to-image bundle, a bad label, an unknown channel or
                sampler, a step count outside [1, T]).
            BundleRunError: the bundle's inference failed, with the root cause (e.g. the missing weights file).
        """
        params = self.check_params({key: request[key] for key in self.config() if key in request})
        label = request.get("label") if self.label_to_image else None
        if label:
            if not Path(label).is_file():
                raise ValueError(f"{label}: label volume not found")
            self.check_label(label)
        with tempfile.TemporaryDirectory(prefix="brainsynth_label_") as work_dir:
            path, details = synthesise(self.job(params, label, work_dir))
            with tempfile.NamedTemporaryFile(suffix=".nii.gz", prefix=f"{params['channel']}_", delete=False) as result:
                shutil.copyfile(path, result.name)
        return result.name, details
