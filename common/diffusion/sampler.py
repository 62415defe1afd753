"""Samplers of trained diffusion models, as ``Inferer``s that Ignite evaluators can drive."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable

import torch
from monai.inferers import DiffusionInferer, Inferer
from monai.networks.schedulers import Scheduler


class SeededSampler(Inferer):
    """An ``Inferer`` whose sampling chain can be seeded without touching the global random state.

    With a seed, call ``k`` of a run uses seed ``seed + k``, so repeated runs are reproducible while the batches of
    one run differ; ``None`` uses the global random state. Subclasses implement :meth:`sample`.
    """

    def __init__(self, seed: int | None = None) -> None:
        super().__init__()
        self.seed = seed
        self._calls = 0

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args, **kwargs) -> torch.Tensor:
        inputs = torch.as_tensor(inputs)
        if self.seed is None:
            return self.sample(inputs, network)
        devices = [inputs.device] if inputs.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed + self._calls)
            self._calls += 1
            return self.sample(inputs, network)

    @abstractmethod
    def sample(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor]) -> torch.Tensor:
        """Generate a batch from the engine's input batch."""


class ConditionalDiffusionSampler(SeededSampler):
    """Generate images from noise, conditioned on a tensor concatenated to the model input at every step.

    Used as the ``inferer`` of a ``monai.engines.SupervisedEvaluator`` whose batch input is the condition:
    ``sampler(condition, network)`` returns images of shape (B, out_channels, X, Y, Z) for a condition of shape
    (B, C_cond, X, Y, Z). Sampling uses ``monai.inferers.DiffusionInferer.sample`` with ``mode="concat"``.

    Args:
        scheduler: a MONAI DDPM/DDIM scheduler whose timesteps are already set (see ``make_noise_scheduler``).
        out_channels: channels of the generated image (1 for T1ce, 4 for BraTS).
        seed: seed of the sampling chain (initial noise and the noise of every ancestral DDPM step), see
            :class:`SeededSampler`.
        verbose: show a tqdm progress bar over the sampling steps.
    """

    def __init__(
        self, scheduler: Scheduler, out_channels: int = 1, seed: int | None = None, verbose: bool = True
    ) -> None:
        super().__init__(seed)
        self.inferer = DiffusionInferer(scheduler)
        self.out_channels = out_channels
        self.verbose = verbose

    def sample(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor]) -> torch.Tensor:
        shape = (inputs.shape[0], self.out_channels, *inputs.shape[2:])
        noise = torch.randn(shape, device=inputs.device)
        return self.inferer.sample(
            input_noise=noise, diffusion_model=network, conditioning=inputs, mode="concat", verbose=self.verbose
        )
