"""A diffusion problem with a known answer, to check samplers: Gaussian data and its exact noise predictor.

With data x0 ~ N(0, s^2) the noised x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps is N(0, v_t) with
v_t = ab_t s^2 + 1 - ab_t, and the ideal noise predictor is linear: E[eps | x_t] = sqrt(1 - ab_t) / v_t * x_t. Every
DDIM or ancestral DDPM step is then linear in x, so the variance a sampler reaches over its timesteps follows a
closed recursion (:func:`ideal_sample_std`), which the empirical std of its samples must match.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def oracle_noise(x: torch.Tensor, alpha_bar: float, data_std: float) -> torch.Tensor:
    """Exact E[eps | x_t] for x0 ~ N(0, data_std^2), at the timestep whose alpha_bar is ``alpha_bar``; any shape."""
    v = alpha_bar * data_std**2 + 1 - alpha_bar
    return math.sqrt(1 - alpha_bar) / v * x


def ideal_sample_std(alphas_cumprod: torch.Tensor, timesteps: Sequence[int], sampler: str, data_std: float) -> float:
    """Std of the samples of an exact sampler with the exact predictor, starting from x_T ~ N(0, 1).

    Args:
        alphas_cumprod: (T,) alpha_bar of the training schedule.
        timesteps: the training timesteps visited, from noisy to clean; the chain ends at alpha_bar = 1.
        sampler: ``"ddim"`` (eta 0: x_prev = sqrt(ab') x0_hat + sqrt(1 - ab') eps_hat) or ``"ddpm"`` (ancestral on
            the respaced chain, beta' = 1 - ab / ab', with the fixed-small posterior variance).
        data_std: s, the std of the data.
    """
    if sampler not in ("ddpm", "ddim"):
        raise ValueError(f"unknown sampler {sampler!r}; choose 'ddpm' or 'ddim'")
    ab = alphas_cumprod.double().tolist()
    variance = 1.0
    for k, t in enumerate(timesteps):
        a_t = ab[int(t)]
        a_prev = ab[int(timesteps[k + 1])] if k + 1 < len(timesteps) else 1.0
        v = a_t * data_std**2 + 1 - a_t
        x0_gain = math.sqrt(a_t) * data_std**2 / v  # x0_hat = x0_gain * x_t
        eps_gain = math.sqrt(1 - a_t) / v  # eps_hat = eps_gain * x_t
        if sampler == "ddim":
            gain, noise_variance = math.sqrt(a_prev) * x0_gain + math.sqrt(1 - a_prev) * eps_gain, 0.0
        else:
            beta = 1 - a_t / a_prev
            gain = math.sqrt(a_prev) * beta / (1 - a_t) * x0_gain + math.sqrt(1 - beta) * (1 - a_prev) / (1 - a_t)
            noise_variance = beta * (1 - a_prev) / (1 - a_t)
        variance = gain**2 * variance + noise_variance
    return math.sqrt(variance)


def sample_std(scheduler, data_std: float, num_samples: int = 20_000, seed: int = 0) -> float:
    """Empirical std of ``num_samples`` float64 samples of ``scheduler`` driven by :func:`oracle_noise`."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(num_samples, 1, dtype=torch.float64, generator=generator)
    for t in scheduler.timesteps:
        eps = oracle_noise(x, float(scheduler.alphas_cumprod[t]), data_std)
        x, _ = scheduler.step(eps, t, x, generator=generator)
    return x.std().item()
