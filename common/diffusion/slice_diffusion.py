"""cDPM's diffusion around a slice-set network: training forward, loss, and staged generation of whole volumes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import Inferer
from monai.networks.schedulers import Scheduler
from torch import nn
from tqdm import tqdm

from common.diffusion.sampler import SeededSampler
from common.slice_roles import CONDITION, TARGET

SliceNetwork = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``network(slices (B, K, C, H, W), timesteps (B,), slice_indices (B, K), slice_roles (B, K)) -> noise``."""


class SliceDiffusionInferer(Inferer):
    """Training forward of a slice-set diffusion model: noise the target slices only and predict that noise.

    ``inferer(slices, network, noise=, timesteps=, slice_indices=, slice_roles=)`` diffuses every target slot of
    ``slices`` (B, K, C, H, W) to its sample's timestep with ``noise``, keeps the condition slots clean (X^C in
    Eq. 5) and returns the network's noise prediction (B, K, C, H, W).

    Args:
        scheduler: the training noise scheduler (its ``add_noise``).
    """

    def __init__(self, scheduler: Scheduler) -> None:
        super().__init__()
        self.scheduler = scheduler

    def __call__(
        self,
        inputs: torch.Tensor,
        network: SliceNetwork,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
        slice_indices: torch.Tensor,
        slice_roles: torch.Tensor,
    ) -> torch.Tensor:
        noisy = self.scheduler.add_noise(original_samples=inputs, noise=noise, timesteps=timesteps)
        is_target = (slice_roles == TARGET)[:, :, None, None, None]
        return network(torch.where(is_target, noisy, inputs), timesteps, slice_indices, slice_roles)


class SliceNoiseLoss(nn.Module):
    """Eq. 6 of cDPM: mean squared error between predicted and true noise over the target slices only.

    ``loss(prediction, {"noise": noise, "target_mask": is_target})`` with prediction and noise (B, K, C, H, W)
    and ``is_target`` (B, K) bool; condition and padding slots do not contribute.
    """

    def forward(self, prediction: torch.Tensor, target: Mapping[str, torch.Tensor]) -> torch.Tensor:
        is_target = target["target_mask"].bool()
        return F.mse_loss(prediction[is_target], target["noise"][is_target])


class StagedSliceSampler(SeededSampler):
    """Generate whole volumes with a slice-set model in stages (cDPM, Fig. 1 right).

    Stage 1 generates the first ``first_stage_size`` slices from noise with no condition; every later stage
    generates the next ``stage_size`` slices conditioned on up to ``condition_size`` slices generated before:
    the most recent ones (``condition_mode="previous"``, the paper's scheme) or half the most recent and half
    spread evenly over all earlier slices (``"spread"``, for far dependencies). The paper builds 128 slices in
    13 stages of 10, each conditioned on the previous 10.

    ``sampler(inputs, network)`` generates ``len(inputs)`` volumes as one batch (only the batch size and device of
    ``inputs`` are used) and returns (B, C, X, Y, Z) in the model's intensity range.

    Args:
        scheduler: a MONAI DDPM/DDIM scheduler whose timesteps are set (``make_noise_scheduler``).
        spatial_size: (X, Y, Z) of the generated volumes.
        axis: spatial axis of the slices (as in training).
        image_channels: channels of a slice.
        stage_size / first_stage_size / condition_size / condition_mode: the staging described above;
            ``first_stage_size`` defaults to ``stage_size``.
        max_slices: tau_max of training; a stage with more condition + target slices is refused.
        seed: see :class:`SeededSampler`.
        verbose: progress bars over stages and denoising steps.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        spatial_size: Sequence[int],
        axis: int = 2,
        image_channels: int = 1,
        stage_size: int = 10,
        condition_size: int = 10,
        first_stage_size: int | None = None,
        condition_mode: str = "previous",
        max_slices: int | None = None,
        seed: int | None = None,
        verbose: bool = True,
    ) -> None:
        super().__init__(seed)
        if condition_mode not in ("previous", "spread"):
            raise ValueError(f"condition_mode must be 'previous' or 'spread', got {condition_mode!r}")
        self.first_stage_size = stage_size if first_stage_size is None else first_stage_size
        if min(stage_size, self.first_stage_size) < 1 or condition_size < 0:
            raise ValueError("stage sizes must be at least 1 and condition_size at least 0")
        if max_slices is not None and max(self.first_stage_size, stage_size + condition_size) > max_slices:
            raise ValueError(
                f"a stage of {stage_size} targets + {condition_size} conditions (first stage {self.first_stage_size})"
                f" exceeds the {max_slices} slices the model was trained on"
            )
        self.scheduler = scheduler
        self.spatial_size, self.axis, self.image_channels = tuple(spatial_size), axis, image_channels
        self.stage_size, self.condition_size, self.condition_mode = stage_size, condition_size, condition_mode
        self.verbose = verbose

    def plan(self, depth: int) -> list[tuple[list[int], list[int]]]:
        """(condition indices, target indices) of every stage that builds ``depth`` slices."""
        stages, start = [], 0
        while start < depth:
            size = self.first_stage_size if start == 0 else self.stage_size
            targets = list(range(start, min(start + size, depth)))
            stages.append((self._conditions(start), targets))
            start += size
        return stages

    def _conditions(self, num_generated: int) -> list[int]:
        if num_generated <= self.condition_size:
            return list(range(num_generated))
        if self.condition_mode == "previous":
            return list(range(num_generated - self.condition_size, num_generated))
        near = (self.condition_size + 1) // 2
        far = np.linspace(0, num_generated - near - 1, self.condition_size - near).round().astype(int)
        return sorted({*far.tolist(), *range(num_generated - near, num_generated)})

    @torch.no_grad()
    def sample(self, inputs: torch.Tensor, network: SliceNetwork) -> torch.Tensor:
        batch, device = inputs.shape[0], inputs.device
        depth = self.spatial_size[self.axis]
        plane = [size for axis, size in enumerate(self.spatial_size) if axis != self.axis]
        volume = torch.zeros(batch, depth, self.image_channels, *plane, device=device)
        for conditions, targets in tqdm(self.plan(depth), desc="stages", disable=not self.verbose):
            volume[:, targets] = self.generate_stage(network, volume[:, conditions], conditions, targets)
        return volume.movedim(1, 2 + self.axis)  # (B, D, C, H, W) -> (B, C, X, Y, Z)

    @torch.no_grad()
    def generate_stage(
        self, network: SliceNetwork, condition_slices: torch.Tensor, conditions: list[int], targets: list[int]
    ) -> torch.Tensor:
        """Generate the slices at indices ``targets`` from noise, given the clean slices at indices ``conditions``.

        One stage of :meth:`sample`; called alone it generates any slices, e.g. an unconditioned set at any depth
        (``benchmarks/cdpm_slice_position.py``). Draws from the global random state.

        Args:
            network: the slice-set network.
            condition_slices: (B, len(conditions), C, H, W); (B, 0, C, H, W) for none.
            conditions / targets: slice indices of the condition and of the generated slices.

        Returns:
            (B, len(targets), C, H, W) generated slices.
        """
        batch, num_conditions, device = condition_slices.shape[0], len(conditions), condition_slices.device
        indices = torch.as_tensor(conditions + targets, device=device).expand(batch, -1)
        roles = torch.as_tensor([CONDITION] * num_conditions + [TARGET] * len(targets), device=device)
        roles = roles.expand(batch, -1)
        sample = torch.randn(batch, len(targets), *condition_slices.shape[2:], device=device)
        for t in tqdm(self.scheduler.timesteps, desc="denoising", leave=False, disable=not self.verbose):
            timesteps = torch.full((batch,), int(t), device=device, dtype=torch.long)
            noise = network(torch.cat([condition_slices, sample], dim=1), timesteps, indices, roles)
            sample, _ = self.scheduler.step(noise[:, num_conditions:], int(t), sample)
        return sample
