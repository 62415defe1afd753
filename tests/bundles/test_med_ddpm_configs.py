"""The default configs are the paper's configuration (Dorjsembe et al. 2024, Sect. III-B and III-F)."""

from __future__ import annotations

import pytest
import torch
from conftest import bundle_config, on_meta
from monai.bundle import ConfigParser
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from common.engines import DelayedEMAHandler

BUNDLE = "med_ddpm_brain_mri"


@pytest.fixture(scope="module")
def train() -> ConfigParser:
    return bundle_config(BUNDLE, "train.json")


def test_network_is_the_papers(train):
    network = on_meta(train, "network")
    assert (network.in_channels, network.out_channels) == (3, 1)  # T1ce + 2 mask channels -> noise
    assert list(network.block_out_channels) == [64, 64, 128, 192, 256]  # first layer 64 channels
    assert sum(p.numel() for p in network.parameters()) == pytest.approx(40.2e6, rel=0.01)
    # attention on the level whose feature maps are 16³ for 128³ inputs (128 / 2**3 = 16)
    assert train["spatial_size"] == [128, 128, 128]
    assert train["network_def"]["attention_levels"] == [False, False, False, True, False]


def test_schedule_loss_optimiser_and_ema_are_the_papers(train):
    scheduler = train.get_parsed_content("noise_scheduler")
    assert isinstance(scheduler, DDPMScheduler) and scheduler.num_train_timesteps == 250
    assert isinstance(train.get_parsed_content("loss"), torch.nn.L1Loss)
    optimizer = train.get_parsed_content("optimizer")
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.param_groups[0]["lr"] == 1e-5
    lr_scheduler = train.get_parsed_content("lr_scheduler")
    assert dict(lr_scheduler.milestones) == {50000: 1} and lr_scheduler.gamma == 0.1  # 1e-5 -> 1e-6 after 50k
    assert train.get_parsed_content("max_iterations") == 100000 and train["batch_size"] == 1
    ema = train.get_parsed_content("ema")
    assert isinstance(ema, DelayedEMAHandler) and ema.momentum == pytest.approx(0.005)  # decay 0.995
    assert (ema.start, ema.every) == (2000, 10)  # reference trainer: copies until step 2,000, then every 10 steps
    assert train["max_iterations"] % train["epoch_length"] == 0


def test_inference_defaults_sample_with_the_full_ddpm_chain():
    inference = bundle_config(BUNDLE, "inference.json")
    scheduler = inference.get_parsed_content("noise_scheduler")
    assert isinstance(scheduler, DDPMScheduler) and len(scheduler.timesteps) == 250
    inference["sampler"] = "ddim"
    inference["num_inference_steps"] = 50
    inference.parse(reset=True)
    assert isinstance(inference.get_parsed_content("noise_scheduler"), DDIMScheduler)


def test_brats_override_is_the_papers_multimodal_setup():
    brats = bundle_config(BUNDLE, "train.json", "brats_multimodal.json")
    network = on_meta(brats, "network")
    assert (network.in_channels, network.out_channels) == (8, 4)  # 4 modalities + 4 mask channels
    # "same setups" as the whole-head model, with the reference's BraTS network: 2 residual blocks per level
    assert tuple(network.num_res_blocks) == (2,) * 5
    assert sum(p.numel() for p in network.parameters()) == pytest.approx(58.3e6, rel=0.01)
    assert brats["spatial_size"] == [192, 192, 144] and brats["max_iterations"] == 200000
