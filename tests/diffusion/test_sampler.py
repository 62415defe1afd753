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
