"""The training and sampling speed options of every bundle's configs: fused Adam(W), flash attention, bf16 autocast,
activation checkpointing (see docs/benchmarks.md for what each gives)."""

from __future__ import annotations

import pytest
import torch
from conftest import FIELD_DIFFUSION_CONFIGS, LATENT_DIFFUSION_CONFIGS, bundle_config
from monai.networks.blocks.selfattention import SABlock
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper

#: (bundle, training configs merged in order, their optimizer ids, the inference config of the network or None)
TRAINING = [
    ("med_ddpm_brain_mri", ("train.json",), ["optimizer"], "inference.json"),
    ("cdpm_brain_mri", ("train.json",), ["optimizer"], "inference.json"),
    ("medical_diffusion_brain_mri", ("train_autoencoder.json",), ["optimizer", "discriminator_optimizer"], None),
    ("medical_diffusion_brain_mri", LATENT_DIFFUSION_CONFIGS, ["optimizer"], "inference.json"),
    ("diffusemorph_brain_mri", ("train_registration.json",), ["optimizer"], None),
    ("diffusemorph_brain_mri", FIELD_DIFFUSION_CONFIGS, ["optimizer"], "inference.json"),
]
IDS = [f"{bundle}-{configs[-1]}" for bundle, configs, *_ in TRAINING]
ATTENTION = [(bundle, configs, inference) for bundle, configs, _, inference in TRAINING if inference]
ATTENTION_IDS = [f"{bundle}-{configs[-1]}" for bundle, configs, _ in ATTENTION]


@pytest.mark.parametrize("bundle, configs, optimizers, inference", TRAINING, ids=IDS)
def test_optimisers_are_fused(bundle, configs, optimizers, inference):
    train = bundle_config(bundle, *configs, "tiny_cpu.json")
    for name in optimizers:
        assert train.get_parsed_content(name).defaults["fused"] is True


@pytest.mark.parametrize("bundle, configs, inference", ATTENTION, ids=ATTENTION_IDS)
def test_flash_attention_reaches_every_monai_attention_block_and_can_be_switched_off(bundle, configs, inference):
    for names in (configs, [inference]):
        for enabled in (True, False):
            parsed = bundle_config(bundle, *names, "tiny_cpu.json")
            parsed["use_flash_attention"] = enabled
            blocks = [m for m in parsed.get_parsed_content("network").modules() if isinstance(m, SABlock)]
            assert blocks and all(block.use_flash_attention is enabled for block in blocks)


@pytest.mark.parametrize("bundle, configs, inference", ATTENTION, ids=ATTENTION_IDS)
def test_amp_dtype_is_an_option_of_the_trainer(bundle, configs, inference):
    train = bundle_config(bundle, *configs)
    assert (train["amp"], train["amp_dtype"]) == (False, "float16")
    assert train.get_parsed_content("train#trainer#amp_kwargs") == {"dtype": torch.float16}
    train["amp_dtype"] = "bfloat16"
    assert train.get_parsed_content("train#trainer#amp_kwargs", lazy=False) == {"dtype": torch.bfloat16}


def test_med_ddpm_activation_checkpointing_and_bf16_train_on_cpu():
    """Off by default; on, every U-Net block is checkpointed, the weights keep their names, and a bf16-autocast
    training step gives the gradients of the plain network."""
    train = bundle_config("med_ddpm_brain_mri", "train.json", "tiny_cpu.json")
    assert train["activation_checkpointing"] is False
    torch.manual_seed(0)
    plain = train.get_parsed_content("network")
    assert not any(isinstance(module, CheckpointWrapper) for module in plain.modules())
    train["activation_checkpointing"] = True
    checkpointed = train.get_parsed_content("network", lazy=False)
    assert sum(isinstance(module, CheckpointWrapper) for module in checkpointed.modules()) == 2 * 3 + 1
    checkpointed.load_state_dict(plain.state_dict())  # same names, loads either way
    inputs, timesteps = torch.randn(1, 3, 16, 16, 16), torch.tensor([10])
    gradients = []
    for network in (plain, checkpointed):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = network(inputs, timesteps).float().abs().mean()
        loss.backward()
        gradients.append(torch.cat([p.grad.flatten() for p in network.parameters()]))
    assert torch.allclose(gradients[0], gradients[1], rtol=1e-2, atol=1e-4)
