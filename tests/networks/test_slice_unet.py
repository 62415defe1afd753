"""Tests of cDPM's slice-set network: SliceDiffusionUNet, its relative-position SliceAttentionBlock and its
absolute SlicePositionEmbedding."""

from __future__ import annotations

import pytest
import torch

from common.networks import SliceAttentionBlock, SliceDiffusionUNet, SliceLayout, SlicePositionEmbedding
from common.slice_roles import CONDITION, PADDING, TARGET


def _network(randomise: bool = True, absolute_position: bool = False) -> SliceDiffusionUNet:
    """A tiny float64 network in eval mode; ``randomise`` gives every parameter (zero-initialised ones too) a value."""
    net = SliceDiffusionUNet(
        channels=(16, 32),
        attention_levels=(False, True),
        num_res_blocks=1,
        num_head_channels=16,
        norm_num_groups=8,
        max_distance=15,
        absolute_position=absolute_position,
        depth=64 if absolute_position else None,
    )
    if randomise:
        torch.manual_seed(0)
        for parameter in net.parameters():
            torch.nn.init.normal_(parameter, std=0.2)
    return net.double().eval()


def _slice_attentions(net: SliceDiffusionUNet) -> list[SliceAttentionBlock]:
    return [module for module in net.modules() if isinstance(module, SliceAttentionBlock)]


def _inputs(batch: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Slices (B, 4, 1, 16, 16) with one condition, two targets and one padding slot."""
    torch.manual_seed(1)
    x = torch.randn(batch, 4, 1, 16, 16, dtype=torch.float64)
    timesteps = torch.arange(batch) * 100 + 10
    indices = torch.tensor([[0, 3, 5, 0]]).repeat(batch, 1)
    roles = torch.tensor([[CONDITION, TARGET, TARGET, PADDING]]).repeat(batch, 1)
    return x, timesteps, indices, roles


def _run(net: SliceDiffusionUNet, x, timesteps, indices, roles) -> torch.Tensor:
    with torch.no_grad():
        return net(x, timesteps, indices, roles)


def _assert_differs(a: torch.Tensor, b: torch.Tensor) -> None:
    assert (a - b).abs().max() > 1e-4


def test_output_has_the_input_shape():
    x, timesteps, indices, roles = _inputs(batch=2)
    roles[1, 2] = PADDING  # samples with different set sizes
    out = _run(_network(), x, timesteps, indices, roles)
    assert out.shape == x.shape == (2, 4, 1, 16, 16)
    assert torch.isfinite(out).all()


def test_new_network_inserts_slice_attention_before_every_spatial_attention():
    net = _network(randomise=False)
    blocks = _slice_attentions(net)
    assert len(blocks) == 4  # one attention level (2 down/up blocks' worth) plus the middle block
    assert all(block.layout is net.layout for block in blocks)
    assert all(torch.all(block.out_proj.weight == 0) for block in blocks)


def test_permuting_slice_indices_changes_the_output():
    net = _network()
    x, timesteps, indices, roles = _inputs()
    reference = _run(net, x, timesteps, indices, roles)
    permuted = _run(net, x, timesteps, torch.tensor([[5, 0, 3, 0]]), roles)
    for slot in range(3):
        _assert_differs(permuted[:, slot], reference[:, slot])


@pytest.mark.parametrize("dropped", ["relative_keys", "relative_values"])
def test_each_relative_embedding_alone_makes_attention_see_positions(dropped):
    net = _network()
    for block in _slice_attentions(net):
        torch.nn.init.zeros_(getattr(block, dropped).weight)
    x, timesteps, indices, roles = _inputs()
    reference = _run(net, x, timesteps, indices, roles)
    _assert_differs(_run(net, x, timesteps, torch.tensor([[5, 0, 3, 0]]), roles)[:, 1], reference[:, 1])


def test_without_absolute_position_shifting_all_slice_indices_leaves_the_output_unchanged():
    net = _network()
    assert not any(isinstance(module, SlicePositionEmbedding) for module in net.modules())
    x, timesteps, indices, roles = _inputs(batch=2)
    reference = _run(net, x, timesteps, indices, roles)
    shifted = _run(net, x, timesteps, indices + torch.tensor([[7], [40]]), roles)  # only relative positions count
    torch.testing.assert_close(shifted, reference, rtol=1e-7, atol=1e-9)


def test_with_absolute_position_shifting_all_slice_indices_changes_every_slice():
    net = _network(absolute_position=True)
    x, timesteps, indices, roles = _inputs(batch=2)
    reference = _run(net, x, timesteps, indices, roles)
    shifted = _run(net, x, timesteps, indices + torch.tensor([[7], [40]]), roles)
    for sample in range(2):
        for slot in range(3):
            _assert_differs(shifted[sample, slot], reference[sample, slot])


def test_absolute_position_reaches_the_output_only_through_its_embedding():
    net = _network(absolute_position=True)
    embedding = net.unet.class_embedding
    assert isinstance(embedding, SlicePositionEmbedding) and embedding.depth == 64
    x, timesteps, indices, roles = _inputs()
    calls = []
    embedding.register_forward_hook(lambda module, args, out: calls.append(args[0].clone()))
    reference = _run(net, x, timesteps, indices, roles)
    assert torch.equal(calls[0], indices.flatten())  # one position per slot, padding too
    torch.nn.init.zeros_(embedding.proj.weight)
    torch.nn.init.zeros_(embedding.proj.bias)
    without = _run(net, x, timesteps, indices, roles)
    _assert_differs(without[:, :3], reference[:, :3])
    torch.testing.assert_close(_run(net, x, timesteps, indices + 9, roles), without, rtol=1e-7, atol=1e-9)


def test_position_embedding_tells_every_slice_of_the_depth_apart():
    embedding = SlicePositionEmbedding(depth=128, num_frequencies=16, embedding_dim=16)
    torch.nn.init.eye_(embedding.proj.weight)
    features = embedding(torch.arange(128))  # (128, 16): the sinusoid features (plus the bias)
    assert features.shape == (128, 16)
    distances = torch.cdist(features, features) + torch.eye(128)
    assert distances.min() > 1e-3


def test_new_absolute_position_embedding_changes_nothing_but_is_trained():
    """A new embedding added to a (here random) network starts as a no-op, and training moves it."""
    assert torch.all(_network(randomise=False, absolute_position=True).unet.class_embedding.proj.weight == 0)
    with_position, without = _network(absolute_position=True), _network()
    torch.nn.init.zeros_(with_position.unet.class_embedding.proj.weight)
    torch.nn.init.zeros_(with_position.unet.class_embedding.proj.bias)
    without.load_state_dict(
        {key: value for key, value in with_position.state_dict().items() if "class_embedding" not in key}
    )
    x, timesteps, indices, roles = _inputs()
    torch.testing.assert_close(
        _run(with_position, x, timesteps, indices, roles), _run(without, x, timesteps, indices, roles)
    )
    with_position(x, timesteps, indices, roles)[:, 1:3].square().mean().backward()
    assert with_position.unet.class_embedding.proj.weight.grad.abs().sum() > 0


def test_absolute_position_given_as_a_string_is_refused():
    with pytest.raises(TypeError, match="absolute_position must be a boolean"):
        SliceDiffusionUNet(channels=(16, 32), norm_num_groups=8, absolute_position="false", depth=16)


def test_absolute_position_without_depth_is_refused():
    with pytest.raises(ValueError, match="pass depth"):
        SliceDiffusionUNet(channels=(16, 32), norm_num_groups=8, absolute_position=True)
    with pytest.raises(ValueError, match="depth must be at least 1"):
        SlicePositionEmbedding(depth=0, num_frequencies=16, embedding_dim=64)


def test_distances_beyond_max_distance_are_not_told_apart():
    net = _network()
    x, timesteps, _, roles = _inputs()
    far = _run(net, x, timesteps, torch.tensor([[0, 20, 40, 0]]), roles)
    farther = _run(net, x, timesteps, torch.tensor([[0, 30, 60, 0]]), roles)  # every distance still clipped to 15
    torch.testing.assert_close(farther, far, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("absolute_position", [False, True])
def test_padding_slot_content_and_index_do_not_reach_valid_slots(absolute_position):
    net = _network(absolute_position=absolute_position)
    x, timesteps, indices, roles = _inputs()
    reference = _run(net, x, timesteps, indices, roles)
    x_other = x.clone()
    x_other[:, 3] = 5 * torch.randn(1, 16, 16, dtype=torch.float64)
    indices_other = indices.clone()
    indices_other[:, 3] = 4
    changed = _run(net, x_other, timesteps, indices_other, roles)
    torch.testing.assert_close(changed[:, :3], reference[:, :3], rtol=1e-7, atol=1e-9)


def test_padding_slot_treated_as_a_slice_would_change_valid_slots():
    """Counterpart of the test above: the same change on a valid slot is seen by the others."""
    net = _network()
    x, timesteps, indices, roles = _inputs()
    reference = _run(net, x, timesteps, indices, roles)
    roles_valid = roles.clone()
    roles_valid[:, 3] = CONDITION
    _assert_differs(_run(net, x, timesteps, indices, roles_valid)[:, 1], reference[:, 1])


def test_slices_interact_only_through_slice_attention():
    net = _network()
    x, timesteps, indices, roles = _inputs()
    x_other = x.clone()
    x_other[:, 1] = torch.randn(1, 16, 16, dtype=torch.float64)
    out_projs = {id(block): block.out_proj.weight.detach().clone() for block in _slice_attentions(net)}
    for block in _slice_attentions(net):
        torch.nn.init.zeros_(block.out_proj.weight)
        torch.nn.init.zeros_(block.out_proj.bias)  # slice attention is now the identity
    reference, changed = _run(net, x, timesteps, indices, roles), _run(net, x_other, timesteps, indices, roles)
    torch.testing.assert_close(changed[:, [0, 2]], reference[:, [0, 2]], rtol=1e-7, atol=1e-9)
    _assert_differs(changed[:, 1], reference[:, 1])  # the changed slice itself does change
    for block in _slice_attentions(net):
        block.out_proj.weight.data.copy_(out_projs[id(block)])
    reference, changed = _run(net, x, timesteps, indices, roles), _run(net, x_other, timesteps, indices, roles)
    _assert_differs(changed[:, 0], reference[:, 0])
    _assert_differs(changed[:, 2], reference[:, 2])


def test_condition_and_target_roles_are_told_apart():
    net = _network()
    x, timesteps, indices, roles = _inputs()
    reference = _run(net, x, timesteps, indices, roles)
    switched = roles.clone()
    switched[:, 0] = TARGET
    _assert_differs(_run(net, x, timesteps, indices, switched)[:, 0], reference[:, 0])


def test_samples_of_a_batch_are_independent():
    net = _network()
    x, timesteps, indices, roles = _inputs(batch=2)
    reference = _run(net, x, timesteps, indices, roles)
    x_other = x.clone()
    x_other[1] = torch.randn_like(x_other[1])
    torch.testing.assert_close(_run(net, x_other, timesteps, indices, roles)[0], reference[0], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("shape", [(1, 4, 16, 16), (1, 4, 2, 16, 16)])
def test_wrong_input_shape_is_refused(shape):
    _, timesteps, indices, roles = _inputs()
    with pytest.raises(ValueError, match="expected slices"):
        _network(randomise=False)(torch.zeros(shape, dtype=torch.float64), timesteps, indices, roles)


def test_slice_attention_outside_the_network_forward_is_refused():
    with pytest.raises(RuntimeError, match="outside SliceDiffusionUNet.forward"):
        SliceAttentionBlock(16, 2, SliceLayout(), max_distance=3, norm_num_groups=8)(torch.randn(4, 16, 4, 4))
    net = _network(randomise=False)
    _run(net, *_inputs())  # the layout is cleared after the forward
    with pytest.raises(RuntimeError, match="no slice layout"):
        _slice_attentions(net)[0](torch.randn(4, 32, 8, 8, dtype=torch.float64))


def test_new_slice_attention_block_is_the_identity():
    layout = SliceLayout()
    layout.indices, layout.valid = torch.tensor([[0, 2, 7]]), torch.tensor([[True, True, False]])
    x = torch.randn(3, 16, 4, 4)
    torch.testing.assert_close(SliceAttentionBlock(16, 2, layout, max_distance=3, norm_num_groups=8)(x), x)


def test_slice_attention_refuses_channels_not_divisible_by_heads():
    with pytest.raises(ValueError, match="not divisible"):
        SliceAttentionBlock(16, 3, SliceLayout(), norm_num_groups=8)


def test_attention_levels_given_as_strings_are_refused():
    # ``--network_def#attention_levels "[false,true]"`` on a fire command line gives strings, all truthy
    with pytest.raises(TypeError, match="attention_levels must be booleans"):
        SliceDiffusionUNet(channels=(16, 32), attention_levels=["false", "true"], norm_num_groups=8)
