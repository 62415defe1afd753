"""Tests of the output writers for unconditional models (no mask), with centred_affine and sample_items."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine

from common.data import centred_affine, sample_items
from common.diffusion import SeededSampler
from common.engines import GeneratedVolumeWriter, SamplePreviewHandler


def _generate(batches: list[list[dict[str, int]]], writer: GeneratedVolumeWriter) -> dict[int, torch.Tensor]:
    """Run an evaluator-like engine whose output is one generated (1, 6, 8, 4) volume per item; returns them."""
    generated: dict[int, torch.Tensor] = {}

    def step(engine: Engine, batch: list[dict[str, int]]) -> list[dict[str, torch.Tensor]]:
        outputs = []
        for item in batch:
            torch.manual_seed(item["sample_index"])
            generated[item["sample_index"]] = torch.rand(1, 6, 8, 4) * 3 - 1.5  # beyond [-1, 1]: clipped
            outputs.append({"pred": generated[item["sample_index"]]})
        return outputs

    engine = Engine(step)
    writer.attach(engine)
    engine.run(batches, max_epochs=1)
    return generated


def test_unconditional_writer_names_files_by_prefix_with_given_affine(tmp_path):
    affine = centred_affine((6, 8, 4), (1.0, 1.5, 2.0))
    writer = GeneratedVolumeWriter(tmp_path, channel_names=["t1"], mask_key=None, affine=affine, name_prefix="cdpm")
    generated = _generate([sample_items(2), [{"sample_index": 2}]], writer)
    for k in range(3):
        image = nib.load(tmp_path / f"cdpm_sample{k:02d}_t1.nii.gz")
        np.testing.assert_allclose(image.affine, affine)
        data = image.get_fdata()
        assert data.shape == (6, 8, 4) and data.min() >= 0 and data.max() <= 1
        expected = ((generated[k][0].numpy() + 1) / 2).clip(0, 1)
        np.testing.assert_allclose(data, expected, atol=1e-6)
        assert (tmp_path / f"cdpm_sample{k:02d}.png").is_file()
    assert not list(tmp_path.glob("*_mask*"))
    assert (tmp_path / "preview.png").is_file()
    records = json.loads((tmp_path / "outputs.json").read_text())
    assert [r["sample_index"] for r in records] == [0, 1, 2]
    assert all(set(r) == {"sample_index", "t1", "preview"} for r in records)
    assert records[1]["t1"] == str(tmp_path / "cdpm_sample01_t1.nii.gz")


def test_unconditional_writer_defaults_to_identity_affine(tmp_path):
    writer = GeneratedVolumeWriter(tmp_path, channel_names=["t1"], mask_key=None)
    _generate([[{"sample_index": 0}]], writer)
    np.testing.assert_allclose(nib.load(tmp_path / "generated_sample00_t1.nii.gz").affine, np.eye(4))


def test_unconditional_writer_refuses_wrong_channel_count(tmp_path):
    writer = GeneratedVolumeWriter(tmp_path, channel_names=["t1", "t2"], mask_key=None)
    with pytest.raises(ValueError, match="got 1 generated channels"):
        _generate([[{"sample_index": 0}]], writer)


def test_centred_affine_puts_the_centre_voxel_at_the_origin():
    affine = centred_affine((4, 6, 8), (1.0, 2.0, 3.0))
    assert affine.shape == (4, 4)
    np.testing.assert_allclose(np.diag(affine), [1.0, 2.0, 3.0, 1.0])
    np.testing.assert_allclose(affine @ [1.5, 2.5, 3.5, 1.0], [0, 0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(affine @ [0, 0, 0, 1.0], [-1.5, -5.0, -10.5, 1])


@pytest.mark.parametrize(
    ("size", "spacing"), [((4, 6, 8), (1.0, 0.0, 1.0)), ((4, 6, 8), (1.0, -1.0, 1.0)), ((4, 6), (1.0, 1.0, 1.0))]
)
def test_centred_affine_refuses_bad_sizes_and_spacings(size, spacing):
    with pytest.raises(ValueError, match="positive spacings"):
        centred_affine(size, spacing)


def test_sample_items_counts_from_zero():
    assert sample_items(3) == [{"sample_index": 0}, {"sample_index": 1}, {"sample_index": 2}]
    with pytest.raises(ValueError, match="at least 1"):
        sample_items(0)


class ZeroSampler(SeededSampler):
    """Returns zeros of shape (1, 1, 8, 8, 8) and records its inputs and whether the network was in eval mode."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.calls: list[tuple[torch.Tensor, bool]] = []

    def sample(self, inputs, network):
        self.calls.append((inputs, network.training))
        return torch.zeros(1, 1, 8, 8, 8)


def test_unconditional_preview_samples_a_batch_of_one(tmp_path):
    network, sampler = torch.nn.Linear(1, 1), ZeroSampler()
    handler = SamplePreviewHandler(network, sampler, tmp_path, interval=1, condition_key=None)
    engine = Engine(lambda engine, batch: None)
    handler.attach(engine)
    engine.run([{"slices": torch.zeros(2, 4, 1, 8, 8)}], max_epochs=1)  # a slice-set batch holds no condition
    assert (tmp_path / "iteration_0000001.png").is_file()
    ((inputs, was_training),) = sampler.calls
    assert inputs.shape[0] == 1 and not was_training
    assert network.training  # the training mode is restored
