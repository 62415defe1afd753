"""Export DiffuseMorph's fields: register the template onto every subject with a ``SupervisedEvaluator`` and write
the displacement fields (stage 2's training data, ``fields.json``), the warped templates and the registration quality.

This is the pipeline step between the DiffuseMorph bundle's two stages (``configs/export_fields.json``): an evaluator
whose ``inferer`` is :class:`RegistrationInferer` and whose handlers are :func:`common.engines.inference_handlers`
(the registration weights are loaded by MONAI's ``CheckpointLoader``, as in every inference config) with a
:class:`RegisteredFieldWriter` writing the files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from monai.networks.blocks import Warp
from monai.networks.utils import eval_mode
from monai.utils import convert_to_tensor
from tqdm import tqdm

from common.data.fields import save_field, write_fields_datalist
from common.data.nifti import nifti_stem, source_name
from common.errors import InputError
from common.metrics import folding_fraction, normalised_cross_correlation, paired_metrics
from common.visualize import save_triplanar_preview

logger = logging.getLogger(__name__)

__all__ = ["RegisteredFieldWriter", "RegistrationInferer"]


def _moving(template: torch.Tensor) -> torch.Tensor:
    """The template's T1 channel as a batch of one (1, 1, X, Y, Z), float32, without metadata."""
    template = convert_to_tensor(template, dtype=torch.float32, track_meta=False)
    if template.ndim != 4:
        raise ValueError(f"template must be (C, X, Y, Z), got {tuple(template.shape)}")
    return template[None, :1]


class RegistrationInferer:
    """``inferer`` of a MONAI ``SupervisedEvaluator`` over subjects: the field registering the template onto each.

    Calls ``network.register(template, subject)`` of a :class:`common.networks.DiffuseMorph` (G at t = 0, then M;
    one pass, no reverse diffusion).

    Args:
        template: (C, X, Y, Z) template volumes, channel 0 the T1 in [0, 1] (:func:`common.data.load_template`).

    Returns (from a call with subjects (B, 1, X, Y, Z) in [0, 1] and the network):
        (B, 3, X, Y, Z) displacement fields in voxels, on the subjects' grid.

    Raises:
        InputError: naming the subjects' files when their grid size differs from the template's.
    """

    def __init__(self, template: torch.Tensor) -> None:
        self.moving = _moving(template)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        fixed = convert_to_tensor(inputs, dtype=torch.float32, track_meta=False)
        if fixed.shape[2:] != self.moving.shape[2:]:
            raise InputError(
                f"{source_name(inputs)}: shape {tuple(fixed.shape[2:])} differs from the template's "
                f"{tuple(self.moving.shape[2:])}; set spatial_size to the template's grid"
            )
        register = getattr(network, "module", network).register  # DiffuseMorph, also when wrapped in DDP
        return register(self.moving.to(fixed.device).expand(fixed.shape[0], -1, -1, -1, -1), fixed)


def _similarity(images: torch.Tensor, subjects: torch.Tensor, kernel_size: int) -> dict[str, list[float]]:
    """Per-subject NCC, SSIM and PSNR of (N, 1, X, Y, Z) volumes in [0, 1] against the subjects."""
    paired = paired_metrics(images, subjects, data_range=1.0, kernel_size=kernel_size)
    return {
        "ncc": normalised_cross_correlation(images, subjects).tolist(),
        "ssim": paired["ssim"],
        "psnr": paired["psnr"],
    }


class RegisteredFieldWriter:
    """Write each registered subject's field, warped template and previews; at the end ``fields.json`` and
    ``registration_quality.json``.

    Reads the field (3, X, Y, Z) of ``engine.state.output[i][field_key]`` and the subject (1, X, Y, Z) in [0, 1] of
    ``engine.state.batch[i][image_key]`` (MONAI evaluators decollate both). For each subject ``<name>`` (its file
    name) it writes in ``output_dir``::

        fields/<name>_field.nii.gz            (X, Y, Z, 3) float32 displacement in voxels on the subject's grid
        warped/<name>_warped_template.nii.gz  the template T1 warped onto the subject, in [0, 1]
        warped/<name>.png                     tri-planar views: subject, template, warped template
        trajectory/<name>_trajectory.nii.gz   (X, Y, Z, K) template warped with latent scales eta = linspace(0, 1, K)
        trajectory/<name>_trajectory.png      one row per eta (only with ``trajectory_steps`` K >= 2)

    and when the run completes ``fields.json`` (the datalist of the fields for the field DDPM, with ``field_scale``
    = the largest |displacement|) and ``registration_quality.json``: per subject and on average, NCC (global), SSIM
    and PSNR of template vs subject ("before") and warped template vs subject ("after"), and the field's folding
    fraction (share of voxels with Jacobian determinant <= 0). Warping is MONAI's ``Warp`` (bilinear, border
    padding), as in training.

    Args:
        template: (C, X, Y, Z) template volumes, channel 0 the T1 in [0, 1].
        output_dir: output folder (created).
        trajectory_steps: number K of latent scales of the continuous deformation to write (the engine's network,
            a :class:`common.networks.DiffuseMorph`, computes them); 0 writes none.
        kernel_size: SSIM window side.
        field_key / image_key: keys of the field in the outputs and of the subject in the batch.
    """

    def __init__(
        self,
        template: torch.Tensor,
        output_dir: str | Path,
        trajectory_steps: int = 0,
        kernel_size: int = 7,
        field_key: str = "pred",
        image_key: str = "image",
    ) -> None:
        if trajectory_steps == 1 or trajectory_steps < 0:
            raise ValueError(f"trajectory_steps must be 0 (off) or at least 2, got {trajectory_steps}")
        self.moving = _moving(template)
        self.output_dir = Path(output_dir)
        self.etas = torch.linspace(0, 1, trajectory_steps).tolist()
        self.kernel_size = kernel_size
        self.field_key, self.image_key = field_key, image_key
        self.warp = Warp(mode="bilinear", padding_mode="border")
        self.report: dict[str, Any] = {}
        self._reset()

    def _reset(self) -> None:
        self.names: list[str] = []
        self.fields: list[Path] = []
        self.folding: list[float] = []
        self.warped: list[torch.Tensor] = []
        self.subjects: list[torch.Tensor] = []
        self.scale = 0.0
        self.progress: tqdm | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def started(self, engine: Engine) -> None:
        self._reset()
        for folder in ("fields", "warped", "trajectory") if self.etas else ("fields", "warped"):
            (self.output_dir / folder).mkdir(parents=True, exist_ok=True)
        total = len(engine.state.dataloader.dataset) if hasattr(engine.state.dataloader, "dataset") else None
        self.progress = tqdm(total=total, desc="Registering subjects", unit="subject")

    def __call__(self, engine: Engine) -> None:
        for item, output in zip(engine.state.batch, engine.state.output, strict=True):
            self.write(item[self.image_key], torch.as_tensor(output[self.field_key]), engine.network)
            if self.progress is not None:
                self.progress.update(1)

    @torch.no_grad()
    def write(self, image: torch.Tensor, field: torch.Tensor, network: torch.nn.Module) -> None:
        """Write the files of one subject ``image`` (1, X, Y, Z) and its ``field`` (3, X, Y, Z)."""
        name = nifti_stem(source_name(image)) or f"subject_{len(self.names):03d}"
        affine = image.affine.numpy() if isinstance(image, MetaTensor) else np.eye(4)
        field = field.float()[None]
        moving = self.moving.to(field.device)
        fixed = convert_to_tensor(image, dtype=torch.float32, track_meta=False)[None].to(field.device)
        warped = self.warp(moving, field)
        self.fields.append(save_field(field[0], affine, self.output_dir / "fields" / f"{name}_field.nii.gz"))
        warped_array = warped[0, 0].cpu().numpy()
        nib.save(
            nib.Nifti1Image(warped_array, affine), str(self.output_dir / "warped" / f"{name}_warped_template.nii.gz")
        )
        volumes = [fixed[0, 0].cpu().numpy(), moving[0, 0].cpu().numpy(), warped_array]
        save_triplanar_preview(volumes, self.output_dir / "warped" / f"{name}.png")
        if self.etas:
            registration = getattr(network, "module", network)
            with eval_mode(registration):
                trajectory = registration.trajectory(moving, fixed, self.etas)
            sequence = [self.warp(moving, step)[0, 0].cpu().numpy() for step in trajectory]
            path = self.output_dir / "trajectory" / f"{name}_trajectory"
            nib.save(nib.Nifti1Image(np.stack(sequence, axis=-1), affine), f"{path}.nii.gz")
            save_triplanar_preview(sequence, f"{path}.png")
        self.names.append(name)
        self.folding.append(folding_fraction(field).item())
        self.scale = max(self.scale, field.abs().max().item())
        self.warped.append(warped.cpu())
        self.subjects.append(fixed.cpu())

    def completed(self, engine: Engine) -> None:
        if self.progress is not None:
            self.progress.close()
        self.report = self.write_reports()

    def write_reports(self) -> dict[str, Any]:
        """Write ``fields.json`` and ``registration_quality.json``; return the latter's content.

        Raises:
            InputError: no subject was registered.
        """
        if not self.names:
            raise InputError("no subjects to register")
        subjects, warped = torch.cat(self.subjects), torch.cat(self.warped)
        before = _similarity(self.moving.expand_as(subjects), subjects, self.kernel_size)
        after = _similarity(warped, subjects, self.kernel_size)
        per_subject = [
            {
                "subject": name,
                "field": str(self.fields[i]),
                **{f"{metric}_before": before[metric][i] for metric in before},
                **{f"{metric}_after": after[metric][i] for metric in after},
                "folding_fraction": self.folding[i],
            }
            for i, name in enumerate(self.names)
        ]
        metric_names = [key for key in per_subject[0] if key not in ("subject", "field")]
        write_fields_datalist(self.fields, self.scale, self.output_dir / "fields.json")
        report = {
            "unit": "field displacements in voxels; NCC global, SSIM and PSNR on [0, 1] intensities",
            "field_scale": self.scale,
            "mean": {f"{name}_mean": float(np.mean([entry[name] for entry in per_subject])) for name in metric_names},
            "subjects": per_subject,
        }
        (self.output_dir / "registration_quality.json").write_text(json.dumps(report, indent=2) + "\n")
        logger.info(
            f"registered {len(self.names)} subject(s); fields and registration_quality.json in {self.output_dir}"
        )
        return report
