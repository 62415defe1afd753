import math

import pytest
import torch
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from common.diffusion import make_noise_scheduler


def _cosine_alpha_bar(t: int, T: int, s: float = 0.008) -> float:
    """Closed form of Nichol & Dhariwal's cosine schedule (Med-DDPM Eq. 2): f(t) / f(0)."""

    def f(u: float) -> float:
        return math.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2

    return f(t) / f(0)


def test_cosine_schedule_matches_closed_form():
    T = 250
    scheduler = make_noise_scheduler("ddpm", num_train_timesteps=T, schedule="cosine")
    expected = torch.tensor([_cosine_alpha_bar(t, T) for t in range(1, T + 1)], dtype=torch.float64)
    # MONAI indexes timesteps from 0: alphas_cumprod[t - 1] is alpha_bar_t. The last beta is clipped to 0.999.
    torch.testing.assert_close(scheduler.alphas_cumprod[:-1].double(), expected[:-1], rtol=1e-4, atol=1e-6)
    assert scheduler.betas.max() <= 0.999
    assert (scheduler.alphas_cumprod[1:] < scheduler.alphas_cumprod[:-1]).all()  # monotone


def test_ddpm_uses_all_steps_and_ddim_the_requested_number():
    ddpm = make_noise_scheduler("ddpm", num_train_timesteps=250)
    ddim = make_noise_scheduler("ddim", num_train_timesteps=250, num_inference_steps=50)
    assert isinstance(ddpm, DDPMScheduler) and len(ddpm.timesteps) == 250 and ddpm.timesteps[0] == 249
    assert isinstance(ddim, DDIMScheduler) and len(ddim.timesteps) == 50
    assert ddim.timesteps[0] > ddim.timesteps[-1]  # from noisy to clean


def test_unknown_sampler_is_rejected():
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        make_noise_scheduler("euler")
