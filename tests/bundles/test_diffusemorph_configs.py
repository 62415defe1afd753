"""The default DiffuseMorph configs are the paper's configuration (Nadeem et al. 2024, Sect. 3 and 5)."""

from __future__ import annotations

import pytest
import torch
from conftest import FIELD_DIFFUSION_CONFIGS, bundle_config, on_meta
from monai.bundle import ConfigParser
from monai.networks.schedulers import DDPMScheduler

BUNDLE = "diffusemorph_brain_mri"


@pytest.fixture(scope="module")
def registration() -> ConfigParser:
    return bundle_config(BUNDLE, "train_registration.json")


@pytest.fixture(scope="module")
def diffusion() -> ConfigParser:
    parser = bundle_config(BUNDLE, *FIELD_DIFFUSION_CONFIGS)
    parser["field_scale"] = 1.0  # no exported fields needed to inspect the config
    return parser


def test_registration_schedule_losses_and_optimiser_are_the_papers(registration):
    scheduler = registration.get_parsed_content("noise_scheduler")
    assert isinstance(scheduler, DDPMScheduler) and scheduler.num_train_timesteps == 2000
    assert scheduler.betas[0].item() == pytest.approx(1e-6) and scheduler.betas[-1].item() == pytest.approx(1e-2)
    assert registration["registration_weight"] == 10.0 and registration["max_epochs"] == 50
    optimizer = registration.get_parsed_content("optimizer")
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.param_groups[0]["lr"] == 1e-4
    iteration = registration.get_parsed_content("train#trainer#iteration_update")
    assert iteration.registration_weight == 10.0 and iteration.similarity.kernel_size == 9
    assert isinstance(registration.get_parsed_content("train#trainer#loss_function"), torch.nn.MSELoss)  # Eq. 2


def test_registration_augments_each_pair_with_flips_and_rotations(registration):
    """Sect. 3: horizontal and vertical flips and 90° rotations, each with probability 0.5 (of the (X, Y) plane of
    the paper's 32 x 128 x 128 volumes), applied to template and subject alike as in the DiffuseMorph code."""
    augmentation = registration.get_parsed_content("train#trainer#iteration_update").augmentation
    flips, rotation = augmentation.transforms[:2], augmentation.transforms[2]
    assert [(type(t).__name__, t.prob, t.flipper.spatial_axis) for t in flips] == [
        ("RandFlip", 0.5, 0),
        ("RandFlip", 0.5, 1),
    ]
    assert type(rotation).__name__ == "RandRotate90" and rotation.prob == 0.5
    assert (rotation.max_k, tuple(rotation.spatial_axes)) == (1, (0, 1))


def test_registration_networks_are_a_score_unet_and_a_voxelmorph_backbone(registration):
    network = on_meta(registration, "network")
    assert type(network.score_network).__name__ == "DiffusionModelUNet"
    assert (network.score_network.in_channels, network.score_network.out_channels) == (3, 1)  # [m, f, x_t] -> e
    assert type(network.deformation_network).__name__ == "VoxelMorphUNet"
    assert network.deformation_network.in_channels == 2  # [m, latent]
    assert sum(p.numel() for p in network.score_network.parameters()) == pytest.approx(0.72e6, rel=0.01)
    assert registration["spatial_size"] == [128, 128, 32]  # the paper's 32 x 128 x 128, depth last (RAS Z)


def test_field_ddpm_is_the_papers(diffusion):
    scheduler = diffusion.get_parsed_content("noise_scheduler")
    alpha_bar = scheduler.alphas_cumprod.double()
    log_snr = torch.log(alpha_bar / (1 - alpha_bar))
    assert (diffusion["log_snr_max"], diffusion["log_snr_min"]) == (20.0, -20.0)
    assert log_snr[0] > 9 and log_snr[-2] < -9 and (log_snr[1:] < log_snr[:-1]).all()
    assert diffusion["max_iterations"] == 100000 and diffusion["max_iterations"] % diffusion["epoch_length"] == 0
    optimizer = diffusion.get_parsed_content("optimizer")
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.param_groups[0]["lr"] == 1e-4
    ema = diffusion.get_parsed_content("ema")
    assert ema.momentum == pytest.approx(0.005)  # EMA decay 0.995
    assert (ema.start, ema.every) == (0, 1)  # no reference code for stage 2: every iteration from the first
    assert type(diffusion.get_parsed_content("loss")).__name__ == "MSELoss"  # Eq. 14
    network = diffusion.get_parsed_content("network")
    assert type(network).__name__ == "FactorisedDiffusionUNet" and network.in_channels == 3
    out = network(torch.zeros(1, 3, 16, 16, 4), torch.tensor([5]))  # fields (B, 3, X, Y, Z), depth last
    assert out.shape == (1, 3, 16, 16, 4)


def test_generation_samples_256_steps_and_writes_tissue_maps():
    inference = bundle_config(BUNDLE, "inference.json")
    inference["field_scale"] = 1.0
    sampler = inference.get_parsed_content("inferer")
    assert isinstance(sampler.inferer.scheduler, DDPMScheduler) and len(sampler.inferer.scheduler.timesteps) == 256
    assert inference["channel_names"] == ["t1", "gm", "wm"] and sampler.template.shape == (3, 128, 128, 32)


def test_full_3d_override_is_cubic():
    parser = bundle_config(BUNDLE, *FIELD_DIFFUSION_CONFIGS, "full_3d.json")
    assert parser["spatial_size"] == [128, 128, 128] and parser.get_parsed_content("network_def#max_distance") == 127
