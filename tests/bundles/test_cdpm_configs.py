"""The default cDPM configs are the paper's configuration (Peng et al. 2023, Sect. 3.1-3.2)."""

from __future__ import annotations

import pytest
import torch
from conftest import bundle_config, on_meta
from monai.bundle import ConfigParser
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

BUNDLE = "cdpm_brain_mri"


@pytest.fixture(scope="module")
def train() -> ConfigParser:
    return bundle_config(BUNDLE, "train.json")


def test_data_and_slice_sets_are_the_papers(train):
    assert train["spatial_size"] == [128, 128, 128] and train["max_slices"] == 20  # tau_max = 20
    assert train["slice_axis"] == 2  # axial slices of RAS-oriented volumes
    names = [t["_target_"] for t in train["intensity_transforms"]]
    assert names == ["ScaleIntensityd", "ScaleIntensityRanged"]  # [0, 1] as in the paper, then the model's [-1, 1]
    assert (train["intensity_transforms"][0]["minv"], train["intensity_transforms"][0]["maxv"]) == (0.0, 1.0)


def test_network_is_a_2d_slice_attention_unet(train):
    network = on_meta(train, "network")
    assert network.unet.block_out_channels == [128, 128, 256, 384, 512]  # base 128, mult (1, 1, 2, 3, 4)
    assert (network.unet.in_channels, network.unet.out_channels) == (2, 1)  # slice + condition indicator -> noise
    slice_blocks = [name for name, _ in network.named_modules() if name.endswith("slice_attention")]
    assert len(slice_blocks) == 2 * 2 + 1 + 2 * 3  # two attention levels down, middle, two up (3 blocks each)
    assert sum(p.numel() for p in network.parameters()) == pytest.approx(100.8e6, rel=0.01)


def test_train_and_inference_networks_embed_the_absolute_slice_position(train):
    """An extension of the paper: stage 1 has no condition slices, so only an absolute position tells it where it is."""
    inference = bundle_config(BUNDLE, "inference.json")
    assert inference.get("network_def") == train.get("network_def")  # weights trained by one load into the other
    network = on_meta(train, "network_def")
    assert network.absolute_position and network.unet.class_embedding.depth == 128  # axial depth of 128^3 volumes
    resliced = bundle_config(BUNDLE, "train.json")
    resliced["slice_axis"], resliced["spatial_size"] = 0, [96, 128, 128]
    assert on_meta(resliced, "network_def").unet.class_embedding.depth == 96  # the depth along slice_axis


def test_optimiser_batch_iterations_loss_and_ema_are_the_papers(train):
    optimizer = train.get_parsed_content("optimizer")
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.param_groups[0]["lr"] == 1e-4
    assert train["batch_size"] == 3 and train["max_iterations"] == 200000
    assert train["max_iterations"] % train["epoch_length"] == 0
    assert type(train.get_parsed_content("loss")).__name__ == "SliceNoiseLoss"  # MSE on the target slices' noise
    ema = train.get_parsed_content("ema")
    assert ema.momentum == pytest.approx(1e-4)  # EMA decay 0.9999
    assert (ema.start, ema.every) == (0, 1)  # improved-diffusion (reference): every step from the first
    scheduler = train.get_parsed_content("noise_scheduler")
    assert isinstance(scheduler, DDPMScheduler) and scheduler.num_train_timesteps == 1000
    assert scheduler.betas[0].item() == pytest.approx(1e-4) and scheduler.betas[-1].item() == pytest.approx(0.02)


def test_inference_builds_128_slices_in_13_stages_of_10():
    inference = bundle_config(BUNDLE, "inference.json")
    sampler = inference.get_parsed_content("inferer")
    plan = sampler.plan(128)
    assert len(plan) == 13 and plan[0] == ([], list(range(10)))
    assert all(conditions == list(range(targets[0] - 10, targets[0])) for conditions, targets in plan[1:])
    assert isinstance(sampler.scheduler, DDPMScheduler) and len(sampler.scheduler.timesteps) == 1000
    assert sampler.scheduler.variance_type == "fixed_large"  # the reference's sigma_t^2 = beta_t
    inference["sampler"] = "ddim"
    inference["num_inference_steps"] = 50
    inference.parse(reset=True)
    assert isinstance(inference.get_parsed_content("noise_scheduler"), DDIMScheduler)
