"""One place to build MONAI's DDPM/DDIM noise schedulers from config values."""

from __future__ import annotations

from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, Scheduler

SAMPLERS = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}


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
        schedule: MONAI schedule name: ``"cosine"`` (Nichol & Dhariwal), ``"linear_beta"``, ``"scaled_linear_beta"``
            or ``"sigmoid_beta"``.
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
