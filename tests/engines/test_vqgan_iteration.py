"""One VQ-GAN iteration in a MONAI SupervisedTrainer: generator always, discriminators after adversarial_start."""

from __future__ import annotations

import pytest
import torch
from monai.engines import SupervisedTrainer
from monai.networks.nets import PatchDiscriminator

from common.engines import VQGANIteration, random_depth_slices
from common.errors import InputError
from common.networks import make_vqgan_autoencoder


def parameters(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


def run_trainer(adversarial_start: int, iterations: int = 2) -> dict:
    """Train a tiny VQ-GAN on 16³ volumes; returns the networks' parameters before/after and the last output."""
    torch.manual_seed(0)
    autoencoder = make_vqgan_autoencoder(2, base_channels=4, num_embeddings=16, embedding_dim=4)
    discriminators = [PatchDiscriminator(dims, channels=4, in_channels=1, num_layers_d=1) for dims in (2, 3)]
    discriminator_parameters = [p for d in discriminators for p in d.parameters()]
    iteration = VQGANIteration(
        *discriminators, torch.optim.Adam(discriminator_parameters, lr=1e-2), adversarial_start=adversarial_start
    )
    before = [parameters(m) for m in (autoencoder, *discriminators)]
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, epoch_length=iterations,
        train_data_loader=[{"image": torch.rand(2, 1, 16, 16, 8) * 2 - 1}] * iterations,
        network=autoencoder, optimizer=torch.optim.Adam(autoencoder.parameters(), lr=1e-2),
        loss_function=torch.nn.L1Loss(), iteration_update=iteration, decollate=False,
    )  # fmt: skip
    trainer.run()
    after = [parameters(m) for m in (autoencoder, *discriminators)]
    changed = [not torch.equal(b, a) for b, a in zip(before, after, strict=True)]
    return {"changed": changed, "output": trainer.state.output}


def test_before_adversarial_start_only_the_generator_trains():
    result = run_trainer(adversarial_start=2)
    assert result["changed"] == [True, False, False]
    output = result["output"]
    assert set(output) == {"loss", *VQGANIteration.LOSS_NAMES}
    assert output["l1"] > 0 and output["commitment"] > 0
    assert output["adversarial"] == 0 and output["feature_matching"] == 0 and output["discriminator"] == 0
    assert output["loss"] == pytest.approx((output["l1"] + output["commitment"]).item())


def test_after_adversarial_start_both_discriminators_train():
    result = run_trainer(adversarial_start=1)
    assert result["changed"] == [True, True, True]
    output = result["output"]
    assert output["discriminator"] > 0 and output["feature_matching"] > 0 and output["adversarial"] != 0
    parts = sum(output[name] for name in VQGANIteration.LOSS_NAMES if name != "discriminator")
    assert output["loss"] == pytest.approx(parts.item(), rel=1e-5)


class ScaledFeatures(torch.nn.Module):
    """Stand-in discriminator: intermediate features x, 2x and 3x of its input, then logits (a learnable scale)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x, 2 * x, 3 * x, self.scale * x]


def test_feature_matching_sums_the_layers():
    """With features x, 2x, 3x the layer L1 distances are 1, 2 and 3 times L1(x̂, x): their sum is 6 times it (the
    reference code's sum; a mean over the layers would give 2 times it)."""
    torch.manual_seed(0)
    autoencoder = make_vqgan_autoencoder(2, base_channels=4, num_embeddings=16, embedding_dim=4)
    discriminators = [ScaledFeatures(), ScaledFeatures()]
    iteration = VQGANIteration(
        *discriminators, torch.optim.SGD([d.scale for d in discriminators], lr=0.1), adversarial_start=0,
        l1_weight=4.0, feature_matching_weight=4.0, slice_adversarial_weight=0.0, volume_adversarial_weight=1.0,
    )  # fmt: skip
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, epoch_length=1,
        train_data_loader=[{"image": torch.rand(2, 1, 16, 16, 8) * 2 - 1}],
        network=autoencoder, optimizer=torch.optim.Adam(autoencoder.parameters(), lr=1e-2),
        loss_function=torch.nn.L1Loss(), iteration_update=iteration, decollate=False,
    )  # fmt: skip
    trainer.run()
    output = trainer.state.output
    # feature_matching = 4 * 1 * (1 + 2 + 3) * L1(x̂, x) on the volume (the slice discriminator's weight is 0)
    assert output["feature_matching"].item() == pytest.approx(6 * output["l1"].item(), rel=1e-5)


def test_random_depth_slices_take_one_slice_per_volume():
    volumes = torch.arange(2 * 3 * 4 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 4, 5)
    slices = random_depth_slices(volumes, torch.tensor([4, 1]))
    assert slices.shape == (2, 3, 4, 4)
    torch.testing.assert_close(slices[0], volumes[0, ..., 4])
    torch.testing.assert_close(slices[1], volumes[1, ..., 1])


@pytest.mark.parametrize("name", ["l1_weight", "perceptual_weight", "feature_matching_weight"])
def test_negative_loss_weights_are_refused(name):
    discriminators = [PatchDiscriminator(dims, channels=4, in_channels=1, num_layers_d=1) for dims in (2, 3)]
    optimizer = torch.optim.Adam([p for d in discriminators for p in d.parameters()])
    with pytest.raises(InputError, match=f"loss weights must be >= 0.*{name}"):
        VQGANIteration(*discriminators, optimizer, **{name: -1.0})
