"""Register every training subject to the template with a trained DiffuseMorph; export fields and their quality.

This is the bridge between the DiffuseMorph bundle's two stages: the fields it writes are the training data of
the field DDPM, and ``registration_quality.json`` reports how well they register (NCC, SSIM, PSNR of template and
subject before and after warping, and the share of folded voxels of each field).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.networks.blocks import Warp
from monai.utils import convert_to_tensor
from tqdm import tqdm

from common.data.fields import save_field, write_fields_datalist
from common.data.nifti import nifti_stem, source_name
from common.metrics import folding_fraction, normalised_cross_correlation, paired_metrics
from common.visualize import save_triplanar_preview

logger = logging.getLogger(__name__)

__all__ = ["export_registration", "load_weights"]


def load_weights(network: torch.nn.Module, path: str | Path, stage: str = "configs/train_registration.json") -> None:
    """Load a state dict written by ``CheckpointSaver(final_model=...)`` into ``network``.

    Raises:
        FileNotFoundError: naming ``path`` and the training config that writes it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: trained weights not found; train first with {stage}")
    network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def _similarity(images: torch.Tensor, subjects: torch.Tensor, kernel_size: int) -> dict[str, list[float]]:
    """Per-subject NCC, SSIM and PSNR of (N, 1, X, Y, Z) volumes in [0, 1] against the subjects."""
    paired = paired_metrics(images, subjects, data_range=1.0, kernel_size=kernel_size)
    return {
        "ncc": normalised_cross_correlation(images, subjects).tolist(),
        "ssim": paired["ssim"],
        "psnr": paired["psnr"],
    }


def _summary(per_subject: list[dict[str, Any]], names: Sequence[str]) -> dict[str, float]:
    return {f"{name}_mean": float(np.mean([entry[name] for entry in per_subject])) for name in names}


@torch.no_grad()
def export_registration(
    network: torch.nn.Module,
    template: torch.Tensor,
    subjects: Sequence[dict[str, Any]],
    output_dir: str | Path,
    trajectory_steps: int = 0,
    kernel_size: int = 7,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Register the template onto every subject and write fields, warped templates, previews and quality figures.

    For each subject ``<name>`` (its file name) it writes in ``output_dir``::

        fields/<name>_field.nii.gz          (X, Y, Z, 3) float32 displacement in voxels on the subject's grid
        warped/<name>_warped_template.nii.gz  the template T1 warped onto the subject, in [0, 1]
        warped/<name>.png                   tri-planar views: subject, template, warped template
        trajectory/<name>_trajectory.nii.gz (X, Y, Z, K) template warped with latent scales eta = linspace(0, 1, K)
        trajectory/<name>_trajectory.png    one row per eta (only with ``trajectory_steps`` K >= 2)

    then ``fields.json`` (datalist of the fields for the field DDPM, with ``field_scale`` = largest |displacement|)
    and ``registration_quality.json``: per subject and on average, NCC (global), SSIM and PSNR of template vs
    subject ("before") and warped template vs subject ("after"), and the field's folding fraction (share of voxels
    with Jacobian determinant <= 0).

    Args:
        network: a trained :class:`common.networks.DiffuseMorph` (weights loaded).
        template: (C, X, Y, Z) template, channel 0 the T1 in [0, 1] (see :func:`common.data.load_template`).
        subjects: loaded items ``{"image": (1, X, Y, Z) in [0, 1]}``, e.g. a MONAI ``Dataset``.
        output_dir: output folder (created).
        trajectory_steps: number K of latent scales of the continuous deformation to write; 0 writes none.
        kernel_size: SSIM window side.
        device: device to run the network on.

    Returns:
        The content of ``registration_quality.json``.
    """
    if trajectory_steps == 1 or trajectory_steps < 0:
        raise ValueError(f"trajectory_steps must be 0 (off) or at least 2, got {trajectory_steps}")
    output_dir = Path(output_dir)
    for folder in ("warped", "trajectory") if trajectory_steps else ("warped",):
        (output_dir / folder).mkdir(parents=True, exist_ok=True)
    network = network.to(device).eval()
    warp = Warp(mode="bilinear", padding_mode="border")
    moving = convert_to_tensor(template, dtype=torch.float32, track_meta=False)[None, :1].to(device)
    etas = torch.linspace(0, 1, trajectory_steps).tolist()
    names, fields, warped_all, subject_all, folding, scale = [], [], [], [], [], 0.0
    for item in tqdm(subjects, desc="Registering subjects", unit="subject"):
        image = item["image"]
        name = nifti_stem(source_name(image)) or f"subject_{len(names):03d}"
        affine = image.affine.numpy() if isinstance(image, MetaTensor) else np.eye(4)
        fixed = torch.as_tensor(image)[None].float().to(device)
        if fixed.shape[2:] != moving.shape[2:]:
            raise ValueError(f"{source_name(image)}: shape {tuple(fixed.shape[2:])} differs from the template's")
        field = network.register(moving, fixed)
        warped = warp(moving, field)
        fields.append(save_field(field[0], affine, output_dir / "fields" / f"{name}_field.nii.gz"))
        warped_array = warped[0, 0].cpu().numpy()
        nib.save(nib.Nifti1Image(warped_array, affine), str(output_dir / "warped" / f"{name}_warped_template.nii.gz"))
        volumes = [fixed[0, 0].cpu().numpy(), moving[0, 0].cpu().numpy(), warped_array]
        save_triplanar_preview(volumes, output_dir / "warped" / f"{name}.png")
        if etas:
            sequence = [warp(moving, f)[0, 0].cpu().numpy() for f in network.trajectory(moving, fixed, etas)]
            path = output_dir / "trajectory" / f"{name}_trajectory"
            nib.save(nib.Nifti1Image(np.stack(sequence, axis=-1), affine), f"{path}.nii.gz")
            save_triplanar_preview(sequence, f"{path}.png")
        names.append(name)
        folding.append(folding_fraction(field).item())
        scale = max(scale, field.abs().max().item())
        warped_all.append(warped.cpu())
        subject_all.append(fixed.cpu())
    if not names:
        raise ValueError("no subjects to register")
    subjects_tensor, warped_tensor = torch.cat(subject_all), torch.cat(warped_all)
    before = _similarity(moving.cpu().expand_as(subjects_tensor), subjects_tensor, kernel_size)
    after = _similarity(warped_tensor, subjects_tensor, kernel_size)
    per_subject = [
        {
            "subject": name,
            "field": str(fields[i]),
            **{f"{metric}_before": before[metric][i] for metric in before},
            **{f"{metric}_after": after[metric][i] for metric in after},
            "folding_fraction": folding[i],
        }
        for i, name in enumerate(names)
    ]
    metric_names = [key for key in per_subject[0] if key not in ("subject", "field")]
    write_fields_datalist(fields, scale, output_dir / "fields.json")
    report = {
        "unit": "field displacements in voxels; NCC global, SSIM and PSNR on [0, 1] intensities",
        "field_scale": scale,
        "mean": _summary(per_subject, metric_names),
        "subjects": per_subject,
    }
    (output_dir / "registration_quality.json").write_text(json.dumps(report, indent=2) + "\n")
    logger.info(f"registered {len(names)} subject(s); fields and registration_quality.json in {output_dir}")
    return report
