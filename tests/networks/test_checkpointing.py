"""Activation checkpointing of MONAI's diffusion U-Net."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import DiffusionModelUNet

from common.networks import checkpoint_blocks


def tiny_unet() -> DiffusionModelUNet:
    torch.manual_seed(0)
    return DiffusionModelUNet(
        spatial_dims=3, in_channels=2, out_channels=1, channels=(8, 16), attention_levels=(False, True),
        num_res_blocks=1, num_head_channels=8, norm_num_groups=4,
    )  # fmt: skip


def test_gradients_and_weight_names_are_unchanged():
    plain, checkpointed = tiny_unet(), checkpoint_blocks(tiny_unet())
    assert list(checkpointed.state_dict()) == list(plain.state_dict())
    inputs, timesteps = torch.randn(2, 2, 8, 8, 8), torch.tensor([3, 7])
    for network in (plain, checkpointed):
        network(inputs, timesteps).square().mean().backward()
    for (name, expected), actual in zip(plain.named_parameters(), checkpointed.parameters(), strict=True):
        assert torch.allclose(expected.grad, actual.grad, atol=1e-6), name


def test_disabled_returns_the_network_unchanged_and_refuses_strings():
    network = tiny_unet()
    modules = list(network.modules())
    assert checkpoint_blocks(network, enabled=False) is network and list(network.modules()) == modules
    with pytest.raises(TypeError, match="enabled must be a boolean"):
        checkpoint_blocks(network, enabled="false")
