import math

import pytest
import torch
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from common.diffusion import make_noise_scheduler


def _log_snr(u: float) -> float:
    """Closed form of the cosine log-SNR schedule on [-20, 20]: -2 log tan(a u + b)."""
    b = math.atan(math.exp(-10))
    a = math.atan(math.exp(10)) - b
    return -2 * math.log(math.tan(a * u + b))


def test_log_snr_spans_the_papers_range():
    assert _log_snr(0) == pytest.approx(20) and _log_snr(1) == pytest.approx(-20) and _log_snr(0.5) == pytest.approx(0)


def test_alpha_bar_is_the_sigmoid_of_the_log_snr():
    T = 256
    scheduler = make_noise_scheduler("ddpm", num_train_timesteps=T, schedule="cosine_log_snr")
    expected = torch.sigmoid(torch.tensor([_log_snr(t / T) for t in range(1, T + 1)], dtype=torch.float64))
    # alphas_cumprod[t - 1] is alpha_bar_t; only the last step is changed by clipping beta to 0.999
    torch.testing.assert_close(scheduler.alphas_cumprod[:-1].double(), expected[:-1], rtol=1e-4, atol=1e-9)
    log_snr = torch.log(scheduler.alphas_cumprod.double() / (1 - scheduler.alphas_cumprod.double()))
    assert (log_snr[1:] < log_snr[:-1]).all()  # monotone
    assert scheduler.betas.max() <= 0.999


def test_ends_approach_sigmoid_of_plus_and_minus_20_for_fine_grids():
    scheduler = make_noise_scheduler("ddpm", num_train_timesteps=100000, schedule="cosine_log_snr")
    alpha_bar = scheduler.alphas_cumprod.double()
    assert torch.log(alpha_bar[0] / (1 - alpha_bar[0])).item() > 19  # lambda(1e-5) = 19.4, -> 20 as u -> 0
    assert alpha_bar[-2].item() < 1e-5


def test_ddpm_and_ddim_use_the_schedule():
    ddpm = make_noise_scheduler("ddpm", num_train_timesteps=256, schedule="cosine_log_snr", num_inference_steps=256)
    ddim = make_noise_scheduler("ddim", num_train_timesteps=256, schedule="cosine_log_snr", num_inference_steps=16)
    assert isinstance(ddpm, DDPMScheduler) and isinstance(ddim, DDIMScheduler)
    torch.testing.assert_close(ddpm.alphas_cumprod, ddim.alphas_cumprod)
    sample, noise = torch.zeros(1, 3, 4, 4, 2), torch.randn(1, 3, 4, 4, 2)
    step = ddim.step(noise, ddim.timesteps[0], ddim.add_noise(sample, noise, ddim.timesteps[:1]))[0]
    assert torch.isfinite(step).all()


def test_empty_range_is_refused():
    with pytest.raises(ValueError, match="must exceed"):
        make_noise_scheduler("ddpm", num_train_timesteps=10, schedule="cosine_log_snr", log_snr_max=1, log_snr_min=2)
