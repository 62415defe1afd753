"""Shapes and example inputs read from a ``network_data_format`` entry."""

from __future__ import annotations

import pytest
import torch

from common.export import example_input, tensor_layout, tensor_shape

VOLUME = {"num_channels": 3, "spatial_shape": [128, 96, 64], "dtype": "float32", "value_range": []}
SLICES = {**VOLUME, "layout": "B K C X Y", "num_channels": 1, "spatial_shape": [20, 128, 128]}
TIMESTEPS = {"layout": "B", "num_channels": 1, "spatial_shape": [], "dtype": "int64", "value_range": [0, 9]}
LOSS = {**TIMESTEPS, "layout": "", "dtype": "float32", "value_range": []}


def test_shapes_follow_monai_order_or_the_declared_layout():
    assert tensor_shape(VOLUME, batch_size=2) == (2, 3, 128, 96, 64)
    assert tensor_shape(VOLUME, batch_size=2, max_spatial_size=80) == (2, 3, 80, 80, 64)
    assert tensor_shape(SLICES, batch_size=4, max_spatial_size=16) == (4, 16, 1, 16, 16)
    assert tensor_shape(TIMESTEPS, batch_size=5) == (5,)
    assert tensor_shape(LOSS, batch_size=5) == ()  # a 0-d output such as the VQ-GAN's commitment loss
    assert tensor_layout(VOLUME)[:2] == ["B", "C"]


def test_a_layout_that_contradicts_spatial_shape_is_refused():
    with pytest.raises(ValueError, match="does not match spatial_shape"):
        tensor_layout({**SLICES, "layout": "B C X Y"})
    with pytest.raises(ValueError, match="does not match spatial_shape"):
        tensor_layout({**LOSS, "spatial_shape": [4]})  # no axes, so no spatial sizes


def test_example_inputs_respect_dtype_and_value_range():
    steps = example_input(TIMESTEPS, batch_size=1000)
    assert steps.dtype == torch.int64 and steps.min() == 0 and steps.max() == 9
    image = example_input({**VOLUME, "value_range": [-1, 1]}, max_spatial_size=8)
    assert image.dtype == torch.float32 and image.min() >= -1 and image.max() <= 1
    noisy = example_input(VOLUME, max_spatial_size=8)
    assert noisy.min() < -1 < 1 < noisy.max()  # standard normal where no range is declared
    torch.testing.assert_close(example_input(VOLUME, max_spatial_size=8), noisy)  # seeded
    with pytest.raises(ValueError, match="value_range"):
        example_input({**TIMESTEPS, "value_range": []})
