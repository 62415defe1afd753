"""One place to build MONAI's DDPM/DDIM noise schedulers from config values, and the schedules MONAI lacks."""

from __future__ import annotations

import math

import torch
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, NoiseSchedules, Scheduler

SAMPLERS = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}


@NoiseSchedules.add_def("cosine_log_snr", "Cosine log-SNR schedule of Kingma et al. 2021 / Ho et al. 2022")
def cosine_log_snr(
    num_train_timesteps: int, log_snr_max: float = 20.0, log_snr_min: float = -20.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Discretised continuous cosine log-SNR schedule, lambda(u) = -2 log tan(a u + b) for u in [0, 1].

    ``a`` and ``b`` put the log-SNR at ``log_snr_max`` for u = 0 and at ``log_snr_min`` for u = 1 (the video
    diffusion models' range [-20, 20] by default). Step t = 1..T has alpha_bar_t = sigmoid(lambda(t / T)) (the
    signal share of x_t), beta_t = 1 - alpha_bar_t / alpha_bar_{t-1} clipped to at most 0.999, and MONAI index
    ``t - 1``. Register-once: importing :mod:`common.diffusion` makes ``schedule="cosine_log_snr"`` available to
    every MONAI scheduler.

    Returns:
        ``(betas, alphas, alphas_cumprod)``, each of shape (T,).
    """
    if not log_snr_max > log_snr_min:
        raise ValueError(f"log_snr_max ({log_snr_max}) must exceed log_snr_min ({log_snr_min})")
    b = math.atan(math.exp(-log_snr_max / 2))
    a = math.atan(math.exp(-log_snr_min / 2)) - b
    u = torch.linspace(0, 1, num_train_timesteps + 1, dtype=torch.float64)
    log_snr = -2 * torch.log(torch.tan(a * u + b))
    alpha_bar = torch.sigmoid(log_snr)
    betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clip(0.0, 0.999)
    alphas = 1 - betas
    return betas.float(), alphas.float(), torch.cumprod(alphas, dim=0).float()


def make_noise_scheduler(
    sampler: str = "ddpm",
    num_train_timesteps: int = 1000,
    schedule: str = "cosine",
    num_inference_steps: int | None = None,
    clip_sample: bool = True,
    **schedule_args: float,
) -> Scheduler:
    """Build a DDPM or DDIM scheduler over the training schedule, set to ``num_inference_steps`` sampling steps.

    Args:
        sampler: ``"ddpm"`` (ancestral sampling; fewer steps than training use a respaced schedule)
            or ``"ddim"`` (deterministic, eta 0).
        num_train_timesteps: T of the training schedule.
        schedule: MONAI schedule name: ``"cosine"`` (Nichol & Dhariwal), ``"linear_beta"``, ``"scaled_linear_beta"``,
            ``"sigmoid_beta"``, or ``"cosine_log_snr"`` (:func:`cosine_log_snr`).
        num_inference_steps: sampling steps; ``None`` uses all ``num_train_timesteps``.
        clip_sample: clamp the predicted x0 to [-1, 1] at every step.
        schedule_args: extra arguments of the schedule (e.g. ``s`` for cosine, ``beta_start``/``beta_end``).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
    scheduler = SAMPLERS[sampler](
        num_train_timesteps=num_train_timesteps, schedule=schedule, clip_sample=clip_sample, **schedule_args
    )
    scheduler.set_timesteps(num_inference_steps or num_train_timesteps)
    return scheduler
