"""The factorised space/depth diffusion U-Net: in-plane convolutions, spatial then depth attention."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import DiffusionInferer
from monai.networks.blocks.spatialattention import SpatialAttentionBlock
from monai.networks.schedulers import DDPMScheduler

from common.networks import FactorisedAttention, FactorisedDiffusionUNet, SliceAttentionBlock


def depth_attention_blocks(network: FactorisedDiffusionUNet) -> list[SliceAttentionBlock]:
    return [module for module in network.modules() if isinstance(module, SliceAttentionBlock)]


def tiny_network(in_channels: int = 2, out_channels: int = 3) -> FactorisedDiffusionUNet:
    """A small network whose zero-initialised output convolution has random weights, so outputs are not all 0."""
    torch.manual_seed(0)
    network = FactorisedDiffusionUNet(
        in_channels, out_channels, channels=(8, 16), attention_levels=(False, True), num_res_blocks=1,
        num_head_channels=8, norm_num_groups=4, max_distance=7,
    ).eval()  # fmt: skip
    torch.nn.init.normal_(network.unet.out[2].conv.weight, std=0.1)
    return network


def enable_depth_attention(network: FactorisedDiffusionUNet) -> None:
    """Give the zero-initialised output projections of the depth attention random weights."""
    for block in depth_attention_blocks(network):
        torch.nn.init.normal_(block.out_proj.weight, std=0.5)


def test_output_keeps_volume_shape_and_odd_depth():
    network = tiny_network()
    x = torch.randn(2, 2, 8, 12, 5)  # depth 5 is never downsampled, so it need not be even
    assert network(x, torch.tensor([3, 7])).shape == (2, 3, 8, 12, 5)


def test_depth_attention_follows_the_input_and_every_spatial_attention():
    network = tiny_network()
    factorised = [module for module in network.modules() if isinstance(module, FactorisedAttention)]
    spatial = [module for module in network.modules() if isinstance(module, SpatialAttentionBlock)]
    assert len(factorised) == len(spatial) == 3  # once per level: level 2 down and up, and the middle block
    assert len(depth_attention_blocks(network)) == 4  # and once after the input convolution
    calls: list[str] = []
    network.unet.conv_in.depth_attention.register_forward_hook(lambda *_: calls.append("depth"))
    for block in factorised:
        block.spatial_attention.register_forward_hook(lambda *_: calls.append("spatial"))
        block.slice_attention.register_forward_hook(lambda *_: calls.append("depth"))
    network(torch.randn(1, 2, 8, 8, 4), torch.tensor([5]))
    assert calls == ["depth"] + ["spatial", "depth"] * 3


def test_attention_placement_is_the_reference_unet3d():
    """Medical Diffusion's Unet3D (dim 32, mults 1, 2, 4, 8): 4 down + 1 middle + 4 up spatial attention blocks,
    each followed by depth attention, plus depth attention after the input convolution."""
    network = FactorisedDiffusionUNet(8, 8, max_distance=31)
    assert sum(isinstance(module, SpatialAttentionBlock) for module in network.modules()) == 9
    assert len(depth_attention_blocks(network)) == 10
    assert sum(parameter.numel() for parameter in network.parameters()) == 15_873_480


@torch.no_grad()
def test_a_change_in_one_slice_reaches_other_slices_only_through_depth_attention():
    network = tiny_network()
    x = torch.randn(1, 2, 8, 8, 6)
    changed = x.clone()
    changed[..., 2] += torch.randn_like(changed[..., 2])
    timesteps = torch.tensor([10])

    difference = (network(changed, timesteps) - network(x, timesteps)).abs().amax(dim=(0, 1, 2, 3))
    assert difference[2] > 1e-3, "the changed slice itself must change"
    assert torch.all(difference[[0, 1, 3, 4, 5]] == 0), "without depth attention the slices are independent"

    enable_depth_attention(network)
    difference = (network(changed, timesteps) - network(x, timesteps)).abs().amax(dim=(0, 1, 2, 3))
    assert torch.all(difference > 1e-4), "depth attention carries the change to every other slice"


@torch.no_grad()
def test_depth_attention_knows_slice_order():
    network = tiny_network()
    enable_depth_attention(network)
    x = torch.randn(1, 2, 8, 8, 4)
    timesteps = torch.tensor([10])
    reversed_input_output = network(x.flip(-1), timesteps).flip(-1)
    assert not torch.allclose(reversed_input_output, network(x, timesteps), atol=1e-5)


def test_trains_with_monai_diffusion_inferer():
    network = tiny_network(in_channels=3, out_channels=3).train()
    enable_depth_attention(network)
    inferer = DiffusionInferer(DDPMScheduler(num_train_timesteps=10))
    x, noise = torch.randn(2, 3, 8, 8, 4), torch.randn(2, 3, 8, 8, 4)
    prediction = inferer(inputs=x, diffusion_model=network, noise=noise, timesteps=torch.tensor([1, 9]))
    torch.nn.functional.mse_loss(prediction, noise).backward()
    block = depth_attention_blocks(network)[0]
    assert block.relative_keys.weight.grad.abs().sum() > 0
    assert network.unet.conv_in.conv.weight.grad.abs().sum() > 0


def test_rejects_wrong_channels_and_indivisible_plane():
    network = tiny_network()
    with pytest.raises(ValueError, match=r"expected a volume \(B, 2, X, Y, Z\)"):
        network(torch.randn(1, 3, 8, 8, 4), torch.tensor([1]))
    with pytest.raises(ValueError, match="must be divisible by 2"):
        network(torch.randn(1, 2, 7, 8, 4), torch.tensor([1]))


def test_rejects_string_attention_levels():
    with pytest.raises(TypeError, match="attention_levels must be booleans"):
        FactorisedDiffusionUNet(1, 1, channels=(8, 16), attention_levels=["false", "true"], norm_num_groups=4)
