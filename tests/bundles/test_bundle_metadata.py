"""Every bundle's metadata.json passes MONAI's schema offline and describes each of its networks truthfully."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import FIELD_DIFFUSION_CONFIGS, LATENT_DIFFUSION_CONFIGS, REPO, bundle_config
from monai.bundle import verify_metadata
from monai.utils import get_equivalent_dtype

from common.export import example_inputs, tensor_layout, tensor_shape

pytest_plugins = ["support"]  # the offline fixture

BUNDLES = ["cdpm_brain_mri", "med_ddpm_brain_mri", "medical_diffusion_brain_mri", "diffusemorph_brain_mri"]
POST_PROCESSED = ("post_processed_outputs", "pred")
#: (bundle, metadata entry, training configs merged in order, config id of the network, entry whose spatial_shape is
#: the training config's spatial_size): one row per network; ``<name>_data_format`` entries describe a bundle's
#: further networks.
NETWORKS = [
    ("cdpm_brain_mri", "network_data_format", ("train.json",), "network_def", POST_PROCESSED),
    ("med_ddpm_brain_mri", "network_data_format", ("train.json",), "network_def", POST_PROCESSED),
    ("medical_diffusion_brain_mri", "network_data_format", LATENT_DIFFUSION_CONFIGS,
     "network_def", POST_PROCESSED),
    ("medical_diffusion_brain_mri", "autoencoder_data_format", ("train_autoencoder.json",), "autoencoder_def",
     ("inputs", "image")),
    ("diffusemorph_brain_mri", "network_data_format", FIELD_DIFFUSION_CONFIGS,
     "network_def", POST_PROCESSED),
    ("diffusemorph_brain_mri", "registration_data_format", ("train_registration.json",), "network_def",
     ("inputs", "moving")),
]  # fmt: skip
NETWORK_IDS = [f"{bundle}-{key}" for bundle, key, *_ in NETWORKS]
SCHEMA = REPO / "common" / "data" / "monai_schema" / "meta_schema_20240725.json"
SCHEMA_MD5 = "b0c2dcf1c25889f3a804be265a3f93c9"
#: Spatial sizes of the forward pass are shrunk to at most this (the tiny_cpu.json networks).
MAX_SPATIAL = 16


def metadata(bundle: str) -> dict:
    return json.loads((REPO / "bundles" / bundle / "configs" / "metadata.json").read_text())


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata_passes_the_monai_schema_offline(bundle, offline):
    meta = metadata(bundle)
    assert meta["schema"].endswith("/" + SCHEMA.name)  # the schema the local copy stands for
    verify_metadata(
        meta_file=str(REPO / "bundles" / bundle / "configs" / "metadata.json"),
        filepath=str(SCHEMA),
        hash_val=SCHEMA_MD5,
    )


@pytest.mark.parametrize("bundle, key", [(BUNDLES[0], "network_data_format"), (NETWORKS[-1][0], NETWORKS[-1][1])])
def test_schema_violations_are_reported(bundle, key, tmp_path: Path, offline):
    meta = metadata(bundle)
    next(iter(meta[key]["inputs"].values()))["num_channels"] = "one"  # a further network's entry is checked too
    broken = tmp_path / "metadata.json"
    broken.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="Failed validating"):
        verify_metadata(meta_file=str(broken), filepath=str(SCHEMA), hash_val=SCHEMA_MD5)


def test_every_network_of_every_bundle_is_checked():
    described = {(bundle, key) for bundle in BUNDLES for key in metadata(bundle) if key.endswith("_data_format")}
    assert described == {(bundle, key) for bundle, key, *_ in NETWORKS}


@pytest.mark.parametrize("bundle, key, configs, net_id, sized", NETWORKS, ids=NETWORK_IDS)
def test_data_format_matches_a_forward_pass(bundle, key, configs, net_id, sized):
    data_format = metadata(bundle)[key]
    network = bundle_config(bundle, *configs, "tiny_cpu.json").get_parsed_content(net_id).eval()
    inputs = example_inputs(data_format, batch_size=2, max_spatial_size=MAX_SPATIAL)
    for tensor, spec in zip(inputs, data_format["inputs"].values(), strict=True):
        assert tensor.dtype == get_equivalent_dtype(spec["dtype"], torch.Tensor)
        assert tensor.ndim == len(tensor_layout(spec))
    with torch.no_grad():
        outputs = network(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)  # in the order of data_format["outputs"]
    assert len(outputs) == len(data_format["outputs"])
    for output, spec in zip(outputs, data_format["outputs"].values(), strict=True):
        layout = tensor_layout(spec)
        assert output.dtype == get_equivalent_dtype(spec["dtype"], torch.Tensor)
        assert output.ndim == len(layout)
        assert "C" not in layout or output.shape[layout.index("C")] == spec["num_channels"]
        assert tuple(output.shape) == tensor_shape(spec, batch_size=2, max_spatial_size=MAX_SPATIAL)


@pytest.mark.parametrize("bundle, key, configs, net_id, sized", NETWORKS, ids=NETWORK_IDS)
def test_declared_timesteps_and_volume_size_are_the_training_configs(bundle, key, configs, net_id, sized):
    data_format = metadata(bundle)[key]
    train = bundle_config(bundle, *configs)
    section, name = sized
    assert data_format[section][name]["spatial_shape"] == train["spatial_size"]
    if "timesteps" in data_format["inputs"]:  # every network but the VQ-GAN autoencoder
        assert data_format["inputs"]["timesteps"]["value_range"] == [0, train["num_train_timesteps"] - 1]
