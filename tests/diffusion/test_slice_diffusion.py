"""Tests of cDPM's diffusion: slice-set training forward and loss, batch preparation, and staged sampling."""

from __future__ import annotations

import pytest
import torch

from common.diffusion import SliceDiffusionInferer, SliceNoiseLoss, StagedSliceSampler, make_noise_scheduler
from common.engines import SliceDiffusionPrepareBatch
from common.networks import SliceDiffusionUNet
from common.slice_roles import CONDITION, PADDING, TARGET


def _training_scheduler():
    return make_noise_scheduler("ddpm", 1000, "linear_beta", beta_start=1e-4, beta_end=0.02)


def _tiny_network(absolute_position: bool = False) -> SliceDiffusionUNet:
    """A tiny slice-set network whose parameters (zero-initialised ones too) all have non-trivial values."""
    net = SliceDiffusionUNet(
        channels=(16, 32),
        attention_levels=(False, True),
        num_res_blocks=1,
        num_head_channels=16,
        norm_num_groups=8,
        max_distance=15,
        absolute_position=absolute_position,
        depth=16,
    )
    torch.manual_seed(0)
    for parameter in net.parameters():
        torch.nn.init.normal_(parameter, std=0.2)
    return net.eval()


class RecordingNetwork:
    """A slice network that records each call's inputs and returns ``respond(...)`` of them (zeros by default)."""

    def __init__(self, respond=None) -> None:
        self.calls: list[dict[str, torch.Tensor]] = []
        self.respond = respond or (lambda x, *_: torch.zeros_like(x))

    def __call__(self, x, timesteps, slice_indices, slice_roles) -> torch.Tensor:
        self.calls.append(
            {"x": x.clone(), "timesteps": timesteps, "indices": slice_indices.clone(), "roles": slice_roles.clone()}
        )
        return self.respond(x, timesteps, slice_indices, slice_roles)


def _smooth_response(x: torch.Tensor, timesteps: torch.Tensor, indices: torch.Tensor, roles: torch.Tensor):
    """A deterministic noise prediction that depends on the slices and their indices."""
    return 0.5 * x + 0.01 * indices[:, :, None, None, None]


# --- SliceNoiseLoss ------------------------------------------------------------------------------------------------


def test_noise_loss_is_the_mean_squared_error_over_target_slots():
    prediction = torch.zeros(1, 3, 1, 1, 2)
    noise = torch.tensor([[[[[100.0, -100.0]]], [[[1.0, 2.0]]], [[[3.0, 0.0]]]]])
    mask = torch.tensor([[False, True, True]])
    loss = SliceNoiseLoss()(prediction, {"noise": noise, "target_mask": mask})
    assert loss.item() == pytest.approx((1 + 4 + 9 + 0) / 4)


def test_noise_loss_ignores_condition_and_padding_slots():
    torch.manual_seed(0)
    prediction, noise = torch.randn(2, 4, 1, 4, 4), torch.randn(2, 4, 1, 4, 4)
    roles = torch.tensor([[CONDITION, TARGET, TARGET, PADDING], [TARGET, PADDING, PADDING, PADDING]])
    loss_fn = SliceNoiseLoss()
    reference = loss_fn(prediction, {"noise": noise, "target_mask": roles == TARGET})
    other = roles != TARGET
    prediction_other, noise_other = prediction.clone(), noise.clone()
    prediction_other[other], noise_other[other] = 7.0, -3.0
    target_other = {"noise": noise_other, "target_mask": roles == TARGET}
    torch.testing.assert_close(loss_fn(prediction_other, target_other), reference)
    noise_other[1, 0] += 1.0  # a target slot
    assert loss_fn(prediction_other, target_other) != reference


# --- SliceDiffusionInferer ------------------------------------------------------------------------------------------


def test_inferer_feeds_conditions_clean_and_targets_noised():
    scheduler = _training_scheduler()
    torch.manual_seed(0)
    slices, noise = torch.randn(2, 4, 1, 8, 8), torch.randn(2, 4, 1, 8, 8)
    timesteps = torch.tensor([10, 900])
    indices = torch.tensor([[1, 4, 5, 0], [2, 3, 0, 0]])
    roles = torch.tensor([[CONDITION, TARGET, TARGET, PADDING], [CONDITION, TARGET, PADDING, PADDING]])
    network = RecordingNetwork()
    out = SliceDiffusionInferer(scheduler)(
        slices, network, noise=noise, timesteps=timesteps, slice_indices=indices, slice_roles=roles
    )
    assert out.shape == slices.shape
    (call,) = network.calls
    noisy = scheduler.add_noise(original_samples=slices, noise=noise, timesteps=timesteps)
    is_target = roles == TARGET
    torch.testing.assert_close(call["x"][is_target], noisy[is_target])
    torch.testing.assert_close(call["x"][~is_target], slices[~is_target])
    alpha_bar = scheduler.alphas_cumprod[900]  # explicit Eq. of the forward process for one target slot
    torch.testing.assert_close(call["x"][1, 1], alpha_bar.sqrt() * slices[1, 1] + (1 - alpha_bar).sqrt() * noise[1, 1])
    assert torch.equal(call["timesteps"], timesteps)
    assert torch.equal(call["indices"], indices) and torch.equal(call["roles"], roles)


# --- SliceDiffusionPrepareBatch -------------------------------------------------------------------------------------


def _batch() -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    return {
        "slices": torch.rand(3, 5, 1, 16, 16) * 2 - 1,
        "slice_indices": torch.tensor([[2, 6, 7, 8, 0], [0, 1, 0, 0, 0], [3, 9, 10, 11, 12]], dtype=torch.int32),
        "slice_roles": torch.tensor([[1, 1, 2, 2, 0], [2, 2, 0, 0, 0], [1, 2, 2, 2, 2]], dtype=torch.int32),
    }


def test_prepare_batch_draws_noise_and_timesteps_for_the_inferer():
    batch = _batch()
    inputs, target, args, kwargs = SliceDiffusionPrepareBatch(num_train_timesteps=50)(batch)
    torch.testing.assert_close(inputs, batch["slices"])
    assert args == ()
    assert set(target) == {"noise", "target_mask"} and target["noise"].shape == inputs.shape
    assert torch.equal(target["target_mask"], batch["slice_roles"] == TARGET)
    assert kwargs["noise"] is target["noise"]
    assert kwargs["noise"].std() > 0.5  # noise is drawn, not zeros
    assert kwargs["timesteps"].shape == (3,) and kwargs["timesteps"].dtype == torch.long
    assert kwargs["timesteps"].min() >= 0 and kwargs["timesteps"].max() < 50
    for key, batch_key in (("slice_indices", "slice_indices"), ("slice_roles", "slice_roles")):
        assert kwargs[key].dtype == torch.long and torch.equal(kwargs[key], batch[batch_key].long())


def test_prepare_batch_timesteps_cover_the_schedule():
    prepare, batch = SliceDiffusionPrepareBatch(num_train_timesteps=4), _batch()
    seen = {int(t) for _ in range(30) for t in prepare(batch)[3]["timesteps"]}
    assert seen == {0, 1, 2, 3}


# --- end-to-end training loss ---------------------------------------------------------------------------------------


def test_training_loss_depends_on_target_noise_only():
    network, scheduler = _tiny_network(), _training_scheduler()
    inputs, target, args, kwargs = SliceDiffusionPrepareBatch(num_train_timesteps=1000)(_batch())
    inferer, loss_fn = SliceDiffusionInferer(scheduler), SliceNoiseLoss()

    def loss(noise: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            prediction = inferer(inputs, network, *args, **{**kwargs, "noise": noise})
        return loss_fn(prediction, {**target, "noise": noise})

    reference = loss(kwargs["noise"])
    assert torch.isfinite(reference) and reference > 0
    roles = kwargs["slice_roles"]
    not_target = roles != TARGET
    assert (roles == CONDITION).any() and (roles == PADDING).any()
    replaced = kwargs["noise"].clone()
    replaced[not_target] = torch.randn_like(replaced[not_target])
    torch.testing.assert_close(loss(replaced), reference)  # conditions are fed clean and skipped by the loss
    replaced[0, 2] = torch.randn_like(replaced[0, 2])  # a target slot
    assert (loss(replaced) - reference).abs() > 1e-6


def test_training_loss_backpropagates_to_the_slice_attention_and_the_position_embedding():
    network, scheduler = _tiny_network(absolute_position=True), _training_scheduler()
    inputs, target, args, kwargs = SliceDiffusionPrepareBatch(num_train_timesteps=1000)(_batch())
    network.train()
    SliceNoiseLoss()(SliceDiffusionInferer(scheduler)(inputs, network, *args, **kwargs), target).backward()
    block = network.unet.middle_block.attention.slice_attention
    assert block.relative_keys.weight.grad.abs().sum() > 0
    assert block.out_proj.weight.grad.abs().sum() > 0
    assert network.unet.class_embedding.proj.weight.grad.abs().sum() > 0


# --- StagedSliceSampler.plan ----------------------------------------------------------------------------------------


def _sampler(**kwargs) -> StagedSliceSampler:
    return StagedSliceSampler(_training_scheduler(), spatial_size=(8, 8, 128), verbose=False, **kwargs)


def test_plan_of_the_paper_builds_128_slices_in_13_stages():
    stages = _sampler(stage_size=10, condition_size=10).plan(128)
    assert len(stages) == 13
    assert stages[0] == ([], list(range(10)))
    for conditions, targets in stages[1:]:
        assert conditions == list(range(targets[0] - 10, targets[0]))
    assert [i for _, targets in stages for i in targets] == list(range(128))
    assert stages[-1][1] == list(range(120, 128))


def test_spread_plan_conditions_on_recent_and_far_generated_slices():
    stages = _sampler(stage_size=4, condition_size=8, condition_mode="spread").plan(64)
    assert [i for _, targets in stages for i in targets] == list(range(64))
    assert stages[0][0] == []
    for conditions, targets in stages[1:]:
        generated = targets[0]
        assert conditions == sorted(set(conditions)) and all(0 <= c < generated for c in conditions)
        assert len(conditions) == min(8, generated)
        assert set(range(max(0, generated - 4), generated)) <= set(conditions)  # the most recent ones
        if generated > 8:
            assert min(conditions) < generated - 8  # and far ones
            assert min(conditions) == 0


def test_plan_honours_first_stage_size():
    stages = _sampler(stage_size=4, first_stage_size=6, condition_size=3).plan(16)
    assert stages == [
        ([], [0, 1, 2, 3, 4, 5]),
        ([3, 4, 5], [6, 7, 8, 9]),
        ([7, 8, 9], [10, 11, 12, 13]),
        ([11, 12, 13], [14, 15]),
    ]


def test_plan_with_few_generated_slices_conditions_on_all_of_them():
    stages = _sampler(stage_size=2, condition_size=5).plan(6)
    assert [conditions for conditions, _ in stages] == [[], [0, 1], [0, 1, 2, 3]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stage_size": 10, "condition_size": 10, "max_slices": 16}, "exceeds the 16 slices"),
        ({"stage_size": 4, "first_stage_size": 20, "max_slices": 16}, "exceeds the 16 slices"),
        ({"condition_mode": "random"}, "condition_mode"),
        ({"stage_size": 0}, "at least 1"),
        ({"condition_size": -1}, "at least 0"),
    ],
)
def test_invalid_staging_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _sampler(**kwargs)


def test_staging_that_fits_max_slices_is_accepted():
    assert len(_sampler(stage_size=10, condition_size=10, max_slices=20).plan(20)) == 2


# --- StagedSliceSampler generation ----------------------------------------------------------------------------------


def _staged(spatial_size=(16, 16, 12), axis=2, seed=0) -> StagedSliceSampler:
    scheduler = make_noise_scheduler("ddim", 1000, "linear_beta", num_inference_steps=3, beta_start=1e-4, beta_end=0.02)
    return StagedSliceSampler(
        scheduler, spatial_size=spatial_size, axis=axis, stage_size=4, condition_size=3, seed=seed, verbose=False
    )


def test_staged_generation_fills_every_slice_once_from_earlier_slices():
    sampler, recorder = _staged(), RecordingNetwork(_tiny_network(absolute_position=True))
    volumes = sampler(torch.zeros(2), recorder)
    calls = recorder.calls
    assert volumes.shape == (2, 1, 16, 16, 12)
    assert torch.isfinite(volumes).all()
    assert (volumes.abs().amax(dim=(1, 2, 3)) > 0).all()  # no slice left as the zero initialisation
    assert len(calls) == len(sampler.plan(12)) * 3 == 9
    generated: list[int] = []
    for stage in range(3):
        stage_calls = calls[3 * stage : 3 * stage + 3]
        indices, roles = stage_calls[0]["indices"], stage_calls[0]["roles"]
        assert all(torch.equal(c["indices"], indices) and torch.equal(c["roles"], roles) for c in stage_calls)
        assert len({int(c["timesteps"][0]) for c in stage_calls}) == 3  # one call per denoising step
        conditions = indices[0, roles[0] == CONDITION].tolist()
        targets = indices[0, roles[0] == TARGET].tolist()
        assert set(conditions) <= set(generated)  # conditioned on slices generated in earlier stages
        for call in stage_calls:  # the condition slices fed are the generated ones
            for slot, index in enumerate(conditions):
                torch.testing.assert_close(call["x"][:, slot, 0], volumes[:, 0, :, :, index])
        generated += targets
    assert sorted(generated) == list(range(12)) and len(generated) == 12  # each slice a target exactly once
    assert not (volumes[0] == volumes[1]).all()  # the volumes of one batch differ


def test_one_stage_generates_the_asked_slices_at_any_depth():
    network = RecordingNetwork(_smooth_response)
    slices = _staged().generate_stage(network, torch.zeros(2, 0, 1, 16, 16), [], [5, 6, 7])
    assert slices.shape == (2, 3, 1, 16, 16) and torch.isfinite(slices).all()
    assert len(network.calls) == 3  # one call per DDIM step
    for call in network.calls:
        assert call["indices"].tolist() == [[5, 6, 7]] * 2
        assert (call["roles"] == TARGET).all()


def test_staged_generation_is_reproducible_and_leaves_global_random_state_alone():
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    first = _staged()(torch.zeros(2), RecordingNetwork(_smooth_response))
    torch.testing.assert_close(torch.rand(3), expected)
    second = _staged()(torch.zeros(2), RecordingNetwork(_smooth_response))
    torch.testing.assert_close(first, second)
    other_seed = _staged(seed=1)(torch.zeros(2), RecordingNetwork(_smooth_response))
    assert not torch.allclose(first, other_seed)


@pytest.mark.parametrize("axis", [0, 1])
def test_staged_generation_along_other_axes_returns_channel_first_volumes(axis):
    spatial_size = (6, 8, 10)
    network = RecordingNetwork(_smooth_response)
    volumes = _staged(spatial_size=spatial_size, axis=axis)(torch.zeros(1), network)
    assert volumes.shape == (1, 1, *spatial_size)
    plane = [size for dim, size in enumerate(spatial_size) if dim != axis]
    assert network.calls[0]["x"].shape[-2:] == tuple(plane)
    assert (volumes.abs().amax(dim=tuple(d for d in (2, 3, 4) if d != 2 + axis)) > 0).all()
    call = network.calls[-1]  # last stage: its conditions are slices of the returned volume along the axis
    conditions = call["indices"][0, call["roles"][0] == CONDITION].tolist()
    assert conditions
    for slot, index in enumerate(conditions):
        torch.testing.assert_close(call["x"][:, slot], volumes.select(2 + axis, index))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_staged_generation_with_the_ideal_denoiser_puts_each_slice_at_its_index(axis):
    """An oracle that knows slice z is the constant z / 10 - 0.5 (and predicts NaN at condition slots)."""
    sampler = _staged(spatial_size=(6, 8, 10), axis=axis)
    alphas_cumprod = sampler.scheduler.alphas_cumprod

    def oracle(x, timesteps, indices, roles):
        alpha_bar = alphas_cumprod[timesteps].view(-1, 1, 1, 1, 1)
        x0 = (indices / 10 - 0.5)[:, :, None, None, None]
        noise = (x - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()
        return torch.where((roles == TARGET)[:, :, None, None, None], noise, torch.nan)

    volumes = sampler(torch.zeros(2), oracle)
    depth = volumes.shape[2 + axis]
    expected = (torch.arange(depth) / 10 - 0.5).view([1, 1] + [depth if d == axis else 1 for d in range(3)])
    torch.testing.assert_close(volumes, expected.expand_as(volumes), atol=1e-4, rtol=0)
