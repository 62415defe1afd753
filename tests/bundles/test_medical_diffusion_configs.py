"""The default Medical Diffusion configs are the paper's configuration (Khader et al. 2023, Supplementary Table 1)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import LATENT_DIFFUSION_CONFIGS, REPO, bundle_config, on_meta
from monai.bundle import ConfigParser
from monai.networks.blocks.spatialattention import SpatialAttentionBlock
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from common.engines import DelayedEMAHandler
from common.networks import FactorisedDiffusionUNet, RestartingEMAQuantizer, SliceAttentionBlock

BUNDLE = "medical_diffusion_brain_mri"


@pytest.fixture(scope="module")
def autoencoder_config() -> ConfigParser:
    return bundle_config(BUNDLE, "train_autoencoder.json")


@pytest.fixture(scope="module")
def diffusion_config() -> ConfigParser:
    return bundle_config(BUNDLE, *LATENT_DIFFUSION_CONFIGS)


def test_vqgan_is_the_papers(autoencoder_config):
    assert autoencoder_config["spatial_size"] == [64, 64, 64]  # ADNI resized to 64³
    autoencoder = on_meta(autoencoder_config, "autoencoder_def")
    quantizer = autoencoder.quantizer.quantizer
    assert isinstance(quantizer, RestartingEMAQuantizer)
    assert quantizer.embedding.weight.shape == (16384, 8)  # codebook size and dimensionality
    assert (quantizer.decay, quantizer.commitment_cost) == (0.99, 0.25)
    # Suppl. Table 1, ADNI column: compression (2, 2, 2), so 64³ -> 32³ latents
    assert autoencoder_config["compression"] == 2
    assert autoencoder.encode(torch.zeros(1, 1, 64, 64, 64, device="meta")).shape == (1, 8, 32, 32, 32)
    assert autoencoder.encoder.channels == [16]  # one level of the reference's n_hiddens 16


def test_vqgan_objective_and_optimisation_are_the_papers(autoencoder_config):
    iteration = autoencoder_config["iteration"]
    assert iteration["_target_"] == "common.engines.VQGANIteration"
    expected = {
        "l1_weight": 4.0, "use_perceptual_loss": True, "perceptual_weight": 4.0, "perceptual_network": "vgg",
        "adversarial_start": 10000,
        "slice_adversarial_weight": 1.0, "volume_adversarial_weight": 1.0, "feature_matching_weight": 4.0,
        "max_grad_norm": 1.0, "batch_size": 2, "max_iterations": 100000, "learning_rate": 3e-4,
    }  # fmt: skip
    assert {key: autoencoder_config[key] for key in expected} == expected
    for name in ("optimizer", "discriminator_optimizer"):
        optimizer = autoencoder_config.get_parsed_content(name)
        assert isinstance(optimizer, torch.optim.Adam) and tuple(optimizer.defaults["betas"]) == (0.5, 0.9)
    for name, dims in (("discriminator_2d", 2), ("discriminator_3d", 3)):
        assert autoencoder_config[f"{name}_def"]["spatial_dims"] == dims


def test_default_perceptual_loss_fails_clearly_without_local_weights(autoencoder_config, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(RuntimeError) as error:  # MONAI wraps the factory's error
        autoencoder_config.get_parsed_content("perceptual_loss", lazy=False)
    assert "--use_perceptual_loss False" in str(error.value.__cause__)


def test_latent_ddpm_is_the_papers(diffusion_config):
    network = on_meta(diffusion_config, "network")
    assert isinstance(network, FactorisedDiffusionUNet)
    assert network.unet.block_out_channels == [32, 64, 128, 256] and network.in_channels == 8
    # attention placed as the reference's Unet3D: 9 spatial + 10 depth attention blocks (MONAI's placement: 21 + 21)
    assert sum(isinstance(module, SpatialAttentionBlock) for module in network.modules()) == 9
    assert sum(isinstance(module, SliceAttentionBlock) for module in network.modules()) == 10
    assert sum(p.numel() for p in network.parameters()) == pytest.approx(15.87e6, rel=0.001)
    scheduler = diffusion_config.get_parsed_content("noise_scheduler")
    assert isinstance(scheduler, DDPMScheduler) and scheduler.num_train_timesteps == 300
    assert scheduler.betas[-1].item() < 0.9999 and scheduler.betas[0].item() < 1e-3  # cosine schedule
    assert isinstance(diffusion_config.get_parsed_content("loss"), torch.nn.L1Loss)
    assert diffusion_config.get_parsed_content("optimizer").defaults["lr"] == 1e-4
    assert (diffusion_config["batch_size"], diffusion_config["max_iterations"]) == (10, 150000)
    ema = diffusion_config.get_parsed_content("ema")
    assert isinstance(ema, DelayedEMAHandler) and ema.momentum == pytest.approx(0.005)  # EMA decay 0.995
    assert (ema.start, ema.every) == (2000, 10)  # the reference trainer: copies until step 2,000, then every 10
    assert diffusion_config.get_parsed_content("latent_size") == [32, 32, 32]


def test_metadata_declares_the_default_latent_shape(diffusion_config):
    latent_size = diffusion_config.get_parsed_content("latent_size")
    metadata = json.loads((REPO / "bundles" / BUNDLE / "configs" / "metadata.json").read_text())
    data_format = metadata["network_data_format"]
    assert data_format["inputs"]["latent"]["spatial_shape"] == latent_size
    assert data_format["outputs"]["pred"]["spatial_shape"] == latent_size


def test_compression_4_is_an_override():
    config = bundle_config(BUNDLE, "train_autoencoder.json")
    config["compression"] = 4
    latents = on_meta(config, "autoencoder_def").encode(torch.zeros(1, 1, 64, 64, 64, device="meta"))
    assert latents.shape == (1, 8, 16, 16, 16)


def test_latent_ddpm_needs_the_trained_autoencoder(diffusion_config, tmp_path):
    diffusion_config["bundle_root"] = str(tmp_path)
    diffusion_config.parse(reset=True)
    with pytest.raises(RuntimeError) as error:  # MONAI wraps the codec's FileNotFoundError
        diffusion_config.get_parsed_content("codec")
    assert isinstance(error.value.__cause__, FileNotFoundError)
    assert f"{tmp_path}/models/model_autoencoder.pt: trained VQ-GAN autoencoder not found" in str(error.value.__cause__)
    assert "configs/train_autoencoder.json" in str(error.value.__cause__)


@pytest.mark.parametrize(
    ("override", "latent_size"), [("size_128.json", [32, 32, 32]), ("size_256x256x32.json", [64, 64, 8])]
)
def test_size_overrides_give_the_papers_latent_sizes(override, latent_size):
    config = bundle_config(BUNDLE, "inference.json", override)
    assert config["compression"] == 4  # Suppl. Table 1: (4, 4, 4) for LIDC-IDRI, MRNet and Duke
    assert config.get_parsed_content("latent_size") == latent_size
    assert config.get_parsed_content("network_def#max_distance") == latent_size[2] - 1


def test_inference_samples_with_300_ddpm_steps_or_ddim():
    config = bundle_config(BUNDLE, "inference.json")
    assert isinstance(config.get_parsed_content("noise_scheduler"), DDPMScheduler)
    assert len(config.get_parsed_content("noise_scheduler").timesteps) == 300
    config["sampler"], config["num_inference_steps"] = "ddim", 50
    config.parse(reset=True)
    scheduler = config.get_parsed_content("noise_scheduler")
    assert isinstance(scheduler, DDIMScheduler) and len(scheduler.timesteps) == 50
