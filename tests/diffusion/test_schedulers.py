import math

import pytest
import torch
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from common.diffusion import make_noise_scheduler
from common.diffusion.gaussian_oracle import ideal_sample_std, sample_std
from common.diffusion.schedulers import spaced_timesteps

# The training schedules of the bundles: Med-DDPM, cDPM, Medical Diffusion, DiffuseMorph stage 2 and stage 1.
SCHEDULES = {
    "cosine_250": {"num_train_timesteps": 250, "schedule": "cosine"},
    "linear_1000": {"num_train_timesteps": 1000, "schedule": "linear_beta", "beta_start": 1e-4, "beta_end": 0.02},
    "cosine_300": {"num_train_timesteps": 300, "schedule": "cosine"},
    "cosine_log_snr_256": {"num_train_timesteps": 256, "schedule": "cosine_log_snr"},
    "linear_2000": {"num_train_timesteps": 2000, "schedule": "linear_beta", "beta_start": 1e-6, "beta_end": 0.01},
}
DATA_STD = 0.5
NUM_SAMPLES = 20_000


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


def test_both_samplers_take_the_requested_number_of_steps_from_the_last_timestep():
    ddpm = make_noise_scheduler("ddpm", num_train_timesteps=250)
    ddim = make_noise_scheduler("ddim", num_train_timesteps=250, num_inference_steps=50)
    assert isinstance(ddpm, DDPMScheduler) and len(ddpm.timesteps) == 250 and ddpm.timesteps[0] == 249
    assert isinstance(ddim, DDIMScheduler) and len(ddim.timesteps) == 50 and ddim.timesteps[0] == 249
    assert (ddim.timesteps[1:] < ddim.timesteps[:-1]).all()  # from noisy to clean


@pytest.mark.parametrize(
    "spacing, expected",
    [
        ("trailing", [249, 199, 149, 99, 49]),
        ("leading", [200, 150, 100, 50, 0]),
        ("linspace", [249, 187, 124, 62, 0]),
    ],
)
def test_timestep_spacings(spacing, expected):
    assert spaced_timesteps(250, 5, spacing).tolist() == expected
    assert spaced_timesteps(250, 250, spacing).tolist() == list(range(249, -1, -1))
    scheduler = make_noise_scheduler("ddim", num_train_timesteps=250, num_inference_steps=5, timestep_spacing=spacing)
    assert scheduler.timesteps.tolist() == expected


@pytest.mark.parametrize("steps", [0, -1, 251, 2.5, "5", True])
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_impossible_step_counts_are_refused(sampler, steps):
    with pytest.raises(ValueError, match="num_inference_steps must be"):
        make_noise_scheduler(sampler, num_train_timesteps=250, num_inference_steps=steps)


def test_unknown_sampler_spacing_and_variance_are_rejected():
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        make_noise_scheduler("euler")
    with pytest.raises(ValueError, match="unknown timestep spacing 'even'"):
        make_noise_scheduler("ddim", timestep_spacing="even")
    with pytest.raises(ValueError, match="unknown variance_type 'learned'"):
        make_noise_scheduler("ddpm", variance_type="learned")


def test_a_timestep_outside_the_chain_is_refused():
    scheduler = make_noise_scheduler("ddpm", num_train_timesteps=250, num_inference_steps=10)
    with pytest.raises(ValueError, match="timestep 248 is not one of the 10 timesteps"):
        scheduler.step(torch.zeros(1), 248, torch.zeros(1))


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_all_steps_is_monais_own_sampler(sampler):
    """With N = T the respaced chain is the training chain: the same numbers as MONAI's scheduler, noise included."""
    ours = make_noise_scheduler(sampler, num_train_timesteps=50, clip_sample=True)
    theirs = (DDPMScheduler if sampler == "ddpm" else DDIMScheduler)(num_train_timesteps=50, schedule="cosine")
    theirs.set_timesteps(50)
    x = torch.randn(4, 1, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    outputs = []
    for scheduler in (ours, theirs):
        sample, generator = x.clone(), torch.Generator().manual_seed(1)
        for t in scheduler.timesteps:
            sample, _ = scheduler.step(torch.tanh(sample), t, sample, generator=generator)
        outputs.append(sample)
    torch.testing.assert_close(outputs[0], outputs[1])


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_samplers_reach_the_ideal_variance_with_the_exact_predictor(sampler, name):
    """x0 ~ N(0, 0.5^2) and the exact predictor: at every step count the sample std matches the closed form (2 %)."""
    schedule = SCHEDULES[name]
    T = schedule["num_train_timesteps"]
    for steps in sorted({10, 50, 100, T}):
        scheduler = make_noise_scheduler(sampler, num_inference_steps=steps, clip_sample=False, **schedule)
        empirical = sample_std(scheduler, DATA_STD, NUM_SAMPLES, seed=steps)
        expected = ideal_sample_std(scheduler.alphas_cumprod, scheduler.timesteps.tolist(), sampler, DATA_STD)
        assert empirical == pytest.approx(expected, rel=0.02), f"{sampler} {steps}/{T} steps on {name}"
        if steps == T:
            assert expected == pytest.approx(DATA_STD, rel=0.02)  # the full chain recovers the data distribution


def test_monais_own_samplers_fail_the_oracle():
    """The defect the respaced chain fixes: MONAI's DDPM steps t -> t - 1 whatever N, its DDIM jumps T // N."""
    ddpm = DDPMScheduler(num_train_timesteps=250, schedule="cosine", clip_sample=False)
    ddim = DDIMScheduler(num_train_timesteps=250, schedule="cosine", clip_sample=False)
    for sampler, scheduler in (("ddpm", ddpm), ("ddim", ddim)):
        scheduler.set_timesteps(100)
        expected = ideal_sample_std(scheduler.alphas_cumprod, scheduler.timesteps.tolist(), sampler, DATA_STD)
        assert sample_std(scheduler, DATA_STD, NUM_SAMPLES) > 1.1 * expected
