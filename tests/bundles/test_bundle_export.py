"""Export of each bundle's networks: TorchScript (``ckpt_export``) fails for all of them, ``torch.export`` works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import bundle_config

from common import cli
from common.export import example_inputs, export_network

TINY = ["inference.json", "tiny_cpu.json"]
#: (bundle, configs, config id of the network, its metadata entry): every network of every bundle.
NETWORKS = [
    ("cdpm_brain_mri", TINY, "network_def", "network_data_format"),
    ("med_ddpm_brain_mri", TINY, "network_def", "network_data_format"),
    ("medical_diffusion_brain_mri", TINY, "network_def", "network_data_format"),
    ("medical_diffusion_brain_mri", TINY, "autoencoder_def", "autoencoder_data_format"),
    ("diffusemorph_brain_mri", TINY, "network_def", "network_data_format"),
    ("diffusemorph_brain_mri", ["train_registration.json", "tiny_cpu.json"], "network_def", "registration_data_format"),
]
NETWORK_IDS = [f"{bundle}-{data_format}" for bundle, _, _, data_format in NETWORKS]
MAX_SPATIAL = 16


def tiny_network(bundle: str, configs: list[str], net_id: str) -> torch.nn.Module:
    """The tiny_cpu.json network ``net_id`` of ``bundle`` with every parameter perturbed (zero-initialised too)."""
    network = bundle_config(bundle, *configs).get_parsed_content(net_id).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return network


@pytest.mark.parametrize("bundle, configs, net_id, data_format", NETWORKS, ids=NETWORK_IDS)
def test_torchscript_cannot_compile_the_network(bundle, configs, net_id, data_format):
    """If this starts failing, the network scripts: document ``ckpt_export`` for it instead of torch.export."""
    network = bundle_config(bundle, *configs).get_parsed_content(net_id)  # parsing itself must succeed
    with pytest.raises((RuntimeError, torch.jit.frontend.FrontendError)):  # TorchScript's compile errors
        torch.jit.script(network)


@pytest.mark.parametrize("bundle, configs, net_id, data_format", NETWORKS, ids=NETWORK_IDS)
def test_torch_export_through_the_cli_matches_the_eager_network(bundle, configs, net_id, data_format, tmp_path: Path):
    network = tiny_network(bundle, configs, net_id)
    weights = tmp_path / "model.pt"
    torch.save(network.state_dict(), weights)
    path = cli.export(
        bundle, str(tmp_path / "model.pt2"), configs=configs, ckpt_file=str(weights), max_spatial_size=MAX_SPATIAL,
        net_id=net_id, data_format=data_format,
    )  # fmt: skip

    extra = {"metadata.json": "", "config.json": ""}
    exported = torch.export.load(path, extra_files=extra).module()
    assert json.loads(extra["config.json"])[net_id]["_target_"]
    inputs = example_inputs(json.loads(extra["metadata.json"])[data_format], batch_size=3, max_spatial_size=MAX_SPATIAL)
    with torch.no_grad():
        expected = network(*inputs)
        torch.testing.assert_close(exported(*inputs), expected, rtol=1e-5, atol=1e-5)  # exported with a batch of 2
    for output in expected if isinstance(expected, tuple) else (expected,):
        assert output.abs().max() > 0


def test_export_names_missing_weights_and_refuses_to_overwrite_them(tmp_path: Path):
    bundle, configs, *_ = NETWORKS[0]
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        export_network(bundle, tmp_path / "out.pt2", configs=configs, ckpt_file=tmp_path / "absent.pt")
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"")
    with pytest.raises(ValueError, match="overwrite"):
        export_network(bundle, weights, configs=configs, ckpt_file=weights)
