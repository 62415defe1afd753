"""DiffuseMorphIteration's augmentation: the template and the subject of a pair are flipped and rotated alike."""

from __future__ import annotations

import pytest
import torch
from monai.engines import SupervisedTrainer
from monai.networks.schedulers import DDPMScheduler
from monai.transforms import Compose, Flip, RandFlip, RandRotate90

from common.engines import DiffuseMorphIteration

SHAPE = (6, 6, 4)


def template() -> torch.Tensor:
    """An asymmetric template (1, X, Y, Z), so that each flip / rotation of its plane gives another volume."""
    return torch.arange(torch.Size(SHAPE).numel(), dtype=torch.float32).view(1, *SHAPE) / 144


def plane_transforms(volume: torch.Tensor) -> list[torch.Tensor]:
    """The 8 flips and rotations of the (X, Y) plane of ``volume`` (B, C, X, Y, Z)."""
    rotations = [torch.rot90(volume, k, dims=(2, 3)) for k in range(4)]
    return rotations + [torch.flip(r, dims=(2,)) for r in rotations]


def paper_augmentation() -> Compose:
    """The bundle's augmentation: flips of X and of Y, a 90° rotation of the plane, each with probability 0.5."""
    return Compose(
        [
            RandFlip(prob=0.5, spatial_axis=0),
            RandFlip(prob=0.5, spatial_axis=1),
            RandRotate90(prob=0.5, max_k=1, spatial_axes=(0, 1)),
        ]
    )


def iteration(augmentation) -> DiffuseMorphIteration:
    return DiffuseMorphIteration(
        template(), DDPMScheduler(num_train_timesteps=10), kernel_size=3, augmentation=augmentation
    )


def test_each_pair_is_transformed_alike_and_the_transforms_vary():
    torch.manual_seed(0)
    step = iteration(paper_augmentation())
    moving = template()[None].expand(4, -1, -1, -1, -1)
    fixed = moving + 1.0  # a subject whose every voxel is the template's plus 1
    seen = set()
    for _ in range(8):
        augmented_moving, augmented_fixed = step.augment(moving, fixed)
        assert augmented_moving.shape == augmented_fixed.shape == (4, 1, *SHAPE)
        torch.testing.assert_close(augmented_fixed, augmented_moving + 1.0)  # the same transform on both
        candidates = plane_transforms(template()[None])
        for sample in augmented_moving:
            matches = [k for k, candidate in enumerate(candidates) if torch.equal(sample[None], candidate)]
            assert matches, "not a flip or rotation of the template's plane"
            seen.add(matches[0])
    assert len(seen) > 4  # the 8 outcomes are drawn at random, not always the same


def test_a_rotation_that_changes_the_shape_is_reported():
    step = DiffuseMorphIteration(
        torch.zeros(1, 6, 4, 4), DDPMScheduler(num_train_timesteps=10), augmentation=RandRotate90(prob=1.0)
    )
    with pytest.raises(ValueError, match="rotate only planes whose two sizes are equal"):
        step.augment(torch.zeros(1, 1, 6, 4, 4), torch.zeros(1, 1, 6, 4, 4))


class Recorder(torch.nn.Module):
    """Stand-in DiffuseMorph: records the (moving, fixed) pair it is given; zero noise estimate and field."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.zeros(()))
        self.pairs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, moving, fixed, noisy, timesteps) -> tuple[torch.Tensor, torch.Tensor]:
        self.pairs.append((moving.detach().clone(), fixed.detach().clone()))
        field = self.scale * torch.zeros(fixed.shape[0], 3, *fixed.shape[2:])
        return self.scale * noisy, field


def test_the_network_is_trained_on_the_augmented_pair():
    network = Recorder()
    subject = torch.rand(1, 1, *SHAPE)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, epoch_length=1, train_data_loader=[{"image": subject}],
        network=network, optimizer=torch.optim.SGD(network.parameters(), lr=0.1), loss_function=torch.nn.MSELoss(),
        iteration_update=iteration(Flip(spatial_axis=0)), decollate=False,
    )  # fmt: skip
    trainer.run()
    (moving, fixed), *_ = network.pairs
    torch.testing.assert_close(moving, torch.flip(template()[None], dims=(2,)))
    torch.testing.assert_close(fixed, torch.flip(subject, dims=(2,)))
