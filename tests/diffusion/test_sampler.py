import torch

from common.diffusion import ConditionalDiffusionSampler, make_noise_scheduler


class RecordingNetwork(torch.nn.Module):
    """Predicts zero noise and records the inputs it was called with."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context=None) -> torch.Tensor:
        self.calls.append(x.clone())
        return torch.zeros_like(x[:, :1])


def test_sampler_concatenates_condition_at_every_step():
    scheduler = make_noise_scheduler("ddim", num_train_timesteps=100, num_inference_steps=7)
    sampler = ConditionalDiffusionSampler(scheduler, out_channels=1, seed=0, verbose=False)
    condition = torch.rand(2, 2, 8, 8, 8)
    network = RecordingNetwork()
    images = sampler(condition, network)
    assert images.shape == (2, 1, 8, 8, 8)
    assert len(network.calls) == 7
    for call in network.calls:
        assert call.shape == (2, 3, 8, 8, 8)
        torch.testing.assert_close(call[:, 1:], condition)  # channels after the image are the condition


def test_seeded_sampler_is_reproducible():
    def run() -> torch.Tensor:
        scheduler = make_noise_scheduler("ddpm", num_train_timesteps=20)
        return ConditionalDiffusionSampler(scheduler, seed=3, verbose=False)(
            torch.ones(1, 2, 4, 4, 4), RecordingNetwork()
        )

    torch.testing.assert_close(run(), run())


def test_seeded_sampler_leaves_global_random_state_alone():
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    scheduler = make_noise_scheduler("ddpm", num_train_timesteps=5)
    ConditionalDiffusionSampler(scheduler, seed=3, verbose=False)(torch.ones(1, 2, 4, 4, 4), RecordingNetwork())
    torch.testing.assert_close(torch.rand(3), expected)


class OracleNetwork(torch.nn.Module):
    """The ideal noise predictor for a data set of one image ``x0``: eps = (x_t - sqrt(ab_t) x0) / sqrt(1 - ab_t)."""

    def __init__(self, x0: torch.Tensor, alphas_cumprod: torch.Tensor) -> None:
        super().__init__()
        self.x0, self.alphas_cumprod = x0, alphas_cumprod

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context=None) -> torch.Tensor:
        alpha_bar = self.alphas_cumprod[timesteps.long()].view(-1, 1, 1, 1, 1)
        return (x[:, :1] - alpha_bar.sqrt() * self.x0) / (1 - alpha_bar).sqrt()


def test_sampling_with_the_ideal_denoiser_recovers_the_image():
    x0 = torch.rand(1, 1, 6, 6, 6) * 2 - 1
    for sampler, steps in (("ddpm", None), ("ddpm", 25), ("ddim", 10)):
        scheduler = make_noise_scheduler(sampler, num_train_timesteps=250, num_inference_steps=steps)
        oracle = OracleNetwork(x0, scheduler.alphas_cumprod)
        sample = ConditionalDiffusionSampler(scheduler, seed=0, verbose=False)(torch.zeros(1, 2, 6, 6, 6), oracle)
        torch.testing.assert_close(sample, x0, atol=1e-4, rtol=0, msg=f"{sampler} with {steps} steps")
