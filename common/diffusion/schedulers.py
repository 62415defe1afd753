"""One place to build DDPM/DDIM noise schedulers from config values, and the schedules MONAI lacks.

MONAI 1.6's samplers are exact only when they visit every training timestep: ``DDPMScheduler.step`` always steps
from t to t - 1 with beta_t, and ``DDIMScheduler.step`` jumps back a fixed ``T // N`` while its ``set_timesteps``
spaces the timesteps with ``linspace``. :class:`RespacedDDPMScheduler` and :class:`RespacedDDIMScheduler` keep
MONAI's interface (``timesteps`` in training-schedule indices, the training ``alphas_cumprod``,
``step(model_output, timestep, sample, generator=None)``) but step along the chain of the chosen timesteps
tau_1 > ... > tau_N: each step goes exactly to the next scheduled timestep, and the DDPM uses the respaced betas
beta'_k = 1 - alpha_bar(tau_k) / alpha_bar(tau_{k+1}) of improved DDPM (Nichol & Dhariwal 2021, section 4).
MONAI's own ``step`` does the arithmetic, run on a scheduler built over the respaced chain.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, NoiseSchedules, Scheduler

TIMESTEP_SPACINGS = ("trailing", "leading", "linspace")


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


@NoiseSchedules.add_def("respaced", "The chain of a training schedule restricted to some of its timesteps")
def respaced(num_train_timesteps: int, alphas_cumprod: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Schedule whose step k goes from alpha_bar(tau_k) to alpha_bar(tau_{k-1}), for kept timesteps tau ascending.

    Args:
        num_train_timesteps: N, the number of kept timesteps.
        alphas_cumprod: (N,) alpha_bar of the training schedule at the kept timesteps, in ascending timestep order.

    Returns:
        ``(betas, alphas, alphas_cumprod)``, each of shape (N,), with ``alphas_cumprod`` exactly the input.
    """
    if alphas_cumprod.shape != (num_train_timesteps,):
        raise ValueError(f"alphas_cumprod must have shape ({num_train_timesteps},), got {tuple(alphas_cumprod.shape)}")
    alphas = alphas_cumprod / torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
    return 1 - alphas, alphas, alphas_cumprod


def spaced_timesteps(num_train_timesteps: int, num_inference_steps: int, spacing: str = "trailing") -> torch.Tensor:
    """The ``num_inference_steps`` training timesteps a sampler visits, from noisy to clean, as in diffusers.

    ``"trailing"`` (default) counts back from T - 1 in strides of T / N, so the chain always starts at the
    training schedule's last timestep (Lin et al. 2024, "Common diffusion noise schedules and sample steps are
    flawed"); ``"leading"`` takes multiples of T // N from 0 (MONAI's DDIM stride, misses T - 1 unless N = T);
    ``"linspace"`` rounds ``linspace(0, T - 1, N)`` (both ends). All three give T - 1, ..., 0 for N = T.

    Returns:
        (N,) int64 tensor of distinct training indices in decreasing order.
    """
    if spacing not in TIMESTEP_SPACINGS:
        raise ValueError(f"unknown timestep spacing {spacing!r}; choose one of {list(TIMESTEP_SPACINGS)}")
    T, N = num_train_timesteps, num_inference_steps
    if spacing == "trailing":
        steps = np.round(T - np.arange(N) * T / N) - 1
    elif spacing == "leading":
        steps = (np.arange(N) * (T // N))[::-1]
    else:
        steps = np.round(np.linspace(0, T - 1, N))[::-1]
    return torch.from_numpy(steps.astype(np.int64).copy())


def check_inference_steps(num_inference_steps: object, num_train_timesteps: int) -> int:
    """``num_inference_steps`` as an int in [1, T], or a ``ValueError`` that says what is allowed."""
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, (int, np.integer)):
        raise ValueError(
            f"num_inference_steps must be a whole number from 1 to {num_train_timesteps}, got {num_inference_steps!r}"
        )
    if not 1 <= num_inference_steps <= num_train_timesteps:
        raise ValueError(
            f"num_inference_steps must be from 1 to {num_train_timesteps} (the training schedule's T), "
            f"got {num_inference_steps}"
        )
    return int(num_inference_steps)


class _RespacedChain:
    """Stepping along the chain of the timesteps set by ``set_timesteps``, shared by the respaced DDPM and DDIM.

    ``set_timesteps`` builds ``self.chain``, a scheduler of the MONAI class ``chain_class`` over the respaced
    schedule (:func:`respaced`) whose timestep k is the k-th smallest chosen training timestep, with this scheduler's
    clipping and prediction type; ``step`` translates the training timestep it is given into k and lets MONAI's
    ``step`` of that scheduler do the work.

    Args:
        timestep_spacing: which timesteps to visit, see :func:`spaced_timesteps`.
        kwargs: arguments of ``chain_class``.
    """

    chain_class: type[DDPMScheduler] | type[DDIMScheduler]
    timesteps: torch.Tensor
    alphas_cumprod: torch.Tensor
    num_train_timesteps: int
    num_inference_steps: int | None
    clip_sample: bool
    clip_sample_values: list[float]
    prediction_type: str

    def __init__(self, *args, timestep_spacing: str = "trailing", **kwargs) -> None:
        self.timestep_spacing = timestep_spacing
        super().__init__(*args, **kwargs)
        self.set_timesteps(self.num_train_timesteps)

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """Choose ``num_inference_steps`` training timesteps (``self.timestep_spacing``) and respace the chain.

        Raises:
            ValueError: unless 1 <= ``num_inference_steps`` <= ``num_train_timesteps``.
        """
        steps = check_inference_steps(num_inference_steps, self.num_train_timesteps)
        timesteps = spaced_timesteps(self.num_train_timesteps, steps, self.timestep_spacing)
        ascending = timesteps.flip(0)
        self.chain = self._chain_scheduler(self.alphas_cumprod[ascending])
        self._chain_index = {int(t): k for k, t in enumerate(ascending)}
        self.num_inference_steps = steps
        self.timesteps = timesteps.to(device)

    def _chain_options(self) -> dict[str, Any]:
        """Arguments of ``chain_class`` beyond the ones its two subclasses share."""
        return {}

    def _chain_scheduler(self, alphas_cumprod: torch.Tensor) -> Scheduler:
        """A ``chain_class`` scheduler over :func:`respaced` with ``alphas_cumprod`` (N,), ascending timesteps."""
        return self.chain_class(
            num_train_timesteps=len(alphas_cumprod),
            schedule="respaced",
            alphas_cumprod=alphas_cumprod,
            clip_sample=self.clip_sample,
            prediction_type=self.prediction_type,
            clip_sample_min=self.clip_sample_values[0],
            clip_sample_max=self.clip_sample_values[1],
            **self._chain_options(),
        )

    def chain_index(self, timestep: int | torch.Tensor) -> int:
        """Position k of training ``timestep`` in the respaced chain (0 = the cleanest chosen timestep)."""
        try:
            return self._chain_index[int(timestep)]
        except KeyError:
            raise ValueError(
                f"timestep {int(timestep)} is not one of the {self.num_inference_steps} timesteps set by "
                f"set_timesteps ({self.timesteps.tolist()})"
            ) from None


class RespacedDDPMScheduler(_RespacedChain, DDPMScheduler):
    """MONAI's ``DDPMScheduler`` sampling ancestrally on the respaced chain of any ``num_inference_steps`` <= T.

    With N = T it is exactly MONAI's DDPM. With N < T each step goes from tau_k to the next chosen timestep with
    beta'_k = 1 - alpha_bar(tau_k) / alpha_bar(tau_{k+1}) and the posterior variance of ``variance_type``
    (``"fixed_small"``: the true posterior's, ``"fixed_large"``: beta'_k).

    Args:
        timestep_spacing: which timesteps to visit, see :func:`spaced_timesteps`.
        kwargs: arguments of ``monai.networks.schedulers.DDPMScheduler``.
    """

    chain_class = DDPMScheduler

    def _chain_options(self) -> dict[str, Any]:
        return {"variance_type": self.variance_type}

    def step(
        self, model_output: torch.Tensor, timestep: int, sample: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One ancestral step from training ``timestep`` to the next scheduled one: ``(x_prev, predicted x_0)``."""
        return self.chain.step(model_output, self.chain_index(timestep), sample, generator)


class RespacedDDIMScheduler(_RespacedChain, DDIMScheduler):
    """MONAI's ``DDIMScheduler`` whose every step lands exactly on the next scheduled timestep.

    The last step goes to alpha_bar = 1 (``set_alpha_to_one``) or to the training schedule's alpha_bar_0.

    Args:
        timestep_spacing: which timesteps to visit, see :func:`spaced_timesteps`.
        kwargs: arguments of ``monai.networks.schedulers.DDIMScheduler``.
    """

    chain_class = DDIMScheduler

    def _chain_scheduler(self, alphas_cumprod: torch.Tensor) -> DDIMScheduler:
        chain = super()._chain_scheduler(alphas_cumprod)
        chain.final_alpha_cumprod = self.final_alpha_cumprod
        return chain

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int,
        sample: torch.Tensor,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One DDIM step (``eta`` 0: deterministic) to the next scheduled timestep: ``(x_prev, predicted x_0)``."""
        return self.chain.step(model_output, self.chain_index(timestep), sample, eta, generator)


SAMPLERS = {"ddpm": RespacedDDPMScheduler, "ddim": RespacedDDIMScheduler}


def make_noise_scheduler(
    sampler: str = "ddpm",
    num_train_timesteps: int = 1000,
    schedule: str = "cosine",
    num_inference_steps: int | None = None,
    clip_sample: bool = True,
    timestep_spacing: str = "trailing",
    variance_type: str = "fixed_small",
    **schedule_args: float,
) -> Scheduler:
    """Build a respaced DDPM or DDIM scheduler over the training schedule, set to ``num_inference_steps`` steps.

    Args:
        sampler: ``"ddpm"`` (ancestral sampling on the respaced chain) or ``"ddim"`` (deterministic, eta 0).
        num_train_timesteps: T of the training schedule.
        schedule: MONAI schedule name: ``"cosine"`` (Nichol & Dhariwal), ``"linear_beta"``, ``"scaled_linear_beta"``,
            ``"sigmoid_beta"``, or ``"cosine_log_snr"`` (:func:`cosine_log_snr`).
        num_inference_steps: sampling steps, 1 to T; ``None`` uses all ``num_train_timesteps``.
        clip_sample: clamp the predicted x0 to [-1, 1] at every step.
        timestep_spacing: ``"trailing"``, ``"leading"`` or ``"linspace"`` (:func:`spaced_timesteps`).
        variance_type: DDPM posterior variance, ``"fixed_small"`` or ``"fixed_large"`` (ignored by DDIM).
        schedule_args: extra arguments of the schedule (e.g. ``s`` for cosine, ``beta_start``/``beta_end``).

    Raises:
        ValueError: for an unknown sampler or spacing, or a step count outside [1, T].
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
    if variance_type not in ("fixed_small", "fixed_large"):
        raise ValueError(f"unknown variance_type {variance_type!r}; choose 'fixed_small' or 'fixed_large'")
    schedule_config = {"num_train_timesteps": num_train_timesteps, "schedule": schedule, **schedule_args}
    sampler_options = {"variance_type": variance_type} if sampler == "ddpm" else {}
    scheduler = SAMPLERS[sampler](
        clip_sample=clip_sample, timestep_spacing=timestep_spacing, **schedule_config, **sampler_options
    )
    scheduler.set_timesteps(num_train_timesteps if num_inference_steps is None else num_inference_steps)
    scheduler.schedule_config = schedule_config  # what sampling_scheduler rebuilds the schedule from
    return scheduler


def sampling_scheduler(
    training_scheduler: Scheduler, sampler: str = "ddim", num_inference_steps: int | None = None, **options: Any
) -> Scheduler:
    """A new scheduler over the same training schedule as ``training_scheduler``, set up for sampling.

    Configs declare their noise schedule once (the training scheduler, made by :func:`make_noise_scheduler`) and
    derive the samplers of previews from it, so the two cannot drift apart.

    Args:
        training_scheduler: a scheduler made by :func:`make_noise_scheduler`.
        sampler / num_inference_steps: as in :func:`make_noise_scheduler`.
        options: other arguments of :func:`make_noise_scheduler` (``clip_sample``, ``timestep_spacing``,
            ``variance_type``).

    Raises:
        ValueError: ``training_scheduler`` was not made by :func:`make_noise_scheduler`.
    """
    config = getattr(training_scheduler, "schedule_config", None)
    if config is None:
        raise ValueError(f"{type(training_scheduler).__name__} was not made by make_noise_scheduler")
    return make_noise_scheduler(sampler=sampler, num_inference_steps=num_inference_steps, **config, **options)
