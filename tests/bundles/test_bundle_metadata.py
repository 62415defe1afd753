"""Every bundle's metadata.json passes MONAI's schema offline and describes its network truthfully."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
from conftest import REPO, bundle_config
from monai.bundle import verify_metadata
from monai.utils import get_equivalent_dtype

from common.export import example_inputs, tensor_layout, tensor_shape

BUNDLES = ["cdpm_brain_mri", "med_ddpm_brain_mri"]
SCHEMA = REPO / "tests" / "data_files" / "monai_schema" / "meta_schema_20240725.json"
SCHEMA_MD5 = "b0c2dcf1c25889f3a804be265a3f93c9"
#: Spatial sizes of the forward pass are shrunk to at most this (the tiny_cpu.json networks).
MAX_SPATIAL = 16


def metadata(bundle: str) -> dict:
    return json.loads((REPO / "bundles" / bundle / "configs" / "metadata.json").read_text())


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("verify_metadata tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata_passes_the_monai_schema_offline(bundle, offline):
    meta = metadata(bundle)
    assert meta["schema"].endswith("/" + SCHEMA.name)  # the schema the local copy stands for
    verify_metadata(
        meta_file=str(REPO / "bundles" / bundle / "configs" / "metadata.json"),
        filepath=str(SCHEMA),
        hash_val=SCHEMA_MD5,
    )


def test_schema_violations_are_reported(tmp_path: Path, offline):
    meta = metadata(BUNDLES[0])
    meta["network_data_format"]["inputs"]["image"]["num_channels"] = "one"
    broken = tmp_path / "metadata.json"
    broken.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="Failed validating"):
        verify_metadata(meta_file=str(broken), filepath=str(SCHEMA), hash_val=SCHEMA_MD5)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_network_data_format_matches_a_forward_pass(bundle):
    data_format = metadata(bundle)["network_data_format"]
    network = bundle_config(bundle, "train.json", "tiny_cpu.json").get_parsed_content("network_def").eval()
    inputs = example_inputs(data_format, batch_size=2, max_spatial_size=MAX_SPATIAL)
    for tensor, spec in zip(inputs, data_format["inputs"].values(), strict=True):
        assert tensor.dtype == get_equivalent_dtype(spec["dtype"], torch.Tensor)
        assert tensor.ndim == len(tensor_layout(spec))
    with torch.no_grad():
        output = network(*inputs)
    (spec,) = data_format["outputs"].values()
    layout = tensor_layout(spec)
    assert output.dtype == get_equivalent_dtype(spec["dtype"], torch.Tensor)
    assert output.ndim == len(layout)
    assert output.shape[layout.index("C")] == spec["num_channels"]
    assert tuple(output.shape) == tensor_shape(spec, batch_size=2, max_spatial_size=MAX_SPATIAL)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_declared_timesteps_and_volume_size_are_the_training_configs(bundle):
    data_format = metadata(bundle)["network_data_format"]
    train = bundle_config(bundle, "train.json")
    assert data_format["inputs"]["timesteps"]["value_range"] == [0, train["num_train_timesteps"] - 1]
    assert data_format["post_processed_outputs"]["pred"]["spatial_shape"] == train["spatial_size"]
