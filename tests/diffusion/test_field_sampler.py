"""TemplateWarpSampler: sampled fields warp every template channel alike; its output splits into volumes and field."""

from __future__ import annotations

import pytest
import torch
from monai.networks.blocks import Warp

from common.diffusion import TemplateWarpSampler, make_noise_scheduler

SHAPE = (8, 8, 4)


def test_samples_warp_the_template_with_the_rescaled_field_and_split():
    scheduler = make_noise_scheduler(num_train_timesteps=16, schedule="cosine_log_snr", num_inference_steps=4)
    template = torch.rand(3, *SHAPE)
    sampler = TemplateWarpSampler(scheduler, template, field_scale=2.0, seed=0, verbose=False)
    output = sampler(torch.arange(2), lambda x, timesteps, **kwargs: torch.zeros_like(x))  # predicts no noise
    assert output.shape == (2, 3 + 3, *SHAPE)
    field = output[:, 3:]
    assert field.abs().max() <= 2.0 + 1e-5  # samples in [-1, 1] times field_scale
    expected = Warp(mode="bilinear", padding_mode="border")(template[None].expand(2, -1, -1, -1, -1), field)
    torch.testing.assert_close(output[:, :3], expected)

    item = TemplateWarpSampler.split_output({"pred": output[0], "sample_index": 0})
    assert item["pred"].shape == (3, *SHAPE) and item["sample_index"] == 0
    torch.testing.assert_close(item["field"], field[0])
    with pytest.raises(ValueError, match="template channels and a field"):
        TemplateWarpSampler.split_output({"pred": field[0]})
