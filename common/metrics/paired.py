"""MSE, PSNR and SSIM of generated volumes against their paired references (e.g. the subject a mask came from)."""

from __future__ import annotations

import torch
from monai.metrics import MSEMetric, PSNRMetric, SSIMMetric

from .volumes import Volumes, stack_volumes


def paired_metrics(
    generated: Volumes, reference: Volumes, data_range: float = 1.0, kernel_size: int = 7
) -> dict[str, list[float] | float]:
    """Per-pair and mean MSE, PSNR and SSIM by MONAI's ``MSEMetric``, ``PSNRMetric`` and ``SSIMMetric``.

    PSNR is 20 log10(``data_range``) - 10 log10(MSE) in dB, so ``inf`` for identical volumes (MONAI returns
    ``inf``, and the mean is ``inf`` if any pair is). SSIM uses a Gaussian window of ``kernel_size`` voxels
    (sigma 1.5, no padding); 7 rather than the usual 11 suits small volumes.

    Args:
        generated: volumes (N, C, X, Y, Z) or a sequence of (C, X, Y, Z); 2D (N, C, H, W) works alike.
        reference: the paired volumes, same shape.
        data_range: intensity range (max - min) of the volumes.
        kernel_size: SSIM window side; every spatial side must be at least this.

    Returns:
        ``{"mse", "psnr", "ssim"}``: lists of N per-pair values, and ``"mse_mean"``, ``"psnr_mean"``, ``"ssim_mean"``.
    """
    y_pred, y = stack_volumes(generated), stack_volumes(reference)
    if y_pred.shape != y.shape:
        raise ValueError(f"generated and reference shapes differ: {tuple(y_pred.shape)} and {tuple(y.shape)}")
    if min(y.shape[2:]) < kernel_size:
        raise ValueError(f"SSIM with kernel_size {kernel_size} needs every side >= {kernel_size}, got {tuple(y.shape)}")
    metrics = {
        "mse": MSEMetric(reduction="none"),
        "psnr": PSNRMetric(max_val=data_range, reduction="none"),
        "ssim": SSIMMetric(spatial_dims=y.ndim - 2, data_range=data_range, win_size=kernel_size, reduction="none"),
    }
    report: dict[str, list[float] | float] = {}
    for name, metric in metrics.items():
        values: torch.Tensor = metric(y_pred=y_pred, y=y).view(-1)
        report[name] = values.tolist()
        report[f"{name}_mean"] = values.mean().item()
    return report
