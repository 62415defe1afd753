"""Export of each bundle's network: TorchScript (``ckpt_export``) fails for these networks, ``torch.export`` works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import bundle_config

from common import cli
from common.export import example_inputs, export_network

BUNDLES = ["cdpm_brain_mri", "med_ddpm_brain_mri"]
#: Networks ``torch.jit.script`` (hence ``python -m monai.bundle ckpt_export``) cannot compile; see common/export.py.
NOT_SCRIPTABLE = ["cdpm_brain_mri", "med_ddpm_brain_mri"]
TINY = ["inference.json", "tiny_cpu.json"]
MAX_SPATIAL = 16


def tiny_network(bundle: str) -> torch.nn.Module:
    """The tiny_cpu.json network of ``bundle`` with every parameter perturbed (zero-initialised layers included)."""
    network = bundle_config(bundle, *TINY).get_parsed_content("network_def").eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return network


@pytest.mark.parametrize("bundle", NOT_SCRIPTABLE)
def test_torchscript_cannot_compile_the_network(bundle):
    """If this starts failing, the network scripts: document ``ckpt_export`` for it instead of torch.export."""
    with pytest.raises(Exception):  # noqa: B017  (TorchScript raises RuntimeError or its frontend errors)
        torch.jit.script(bundle_config(bundle, *TINY).get_parsed_content("network_def"))


@pytest.mark.parametrize("bundle", BUNDLES)
def test_torch_export_through_the_cli_matches_the_eager_network(bundle, tmp_path: Path):
    network = tiny_network(bundle)
    weights = tmp_path / "model.pt"
    torch.save(network.state_dict(), weights)
    path = cli.export(
        bundle, str(tmp_path / "model.pt2"), configs=TINY, ckpt_file=str(weights), max_spatial_size=MAX_SPATIAL
    )

    extra = {"metadata.json": "", "config.json": ""}
    exported = torch.export.load(path, extra_files=extra).module()
    data_format = json.loads(extra["metadata.json"])["network_data_format"]
    assert json.loads(extra["config.json"])["network_def"]["_target_"]
    inputs = example_inputs(data_format, batch_size=3, max_spatial_size=MAX_SPATIAL, seed=1)  # exported with 2
    with torch.no_grad():
        expected = network(*inputs)
        torch.testing.assert_close(exported(*inputs), expected, rtol=1e-5, atol=1e-5)
    assert expected.abs().max() > 0


def test_export_names_missing_weights_and_refuses_to_overwrite_them(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        export_network(BUNDLES[0], tmp_path / "out.pt2", configs=TINY, ckpt_file=tmp_path / "absent.pt")
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"")
    with pytest.raises(ValueError, match="overwrite"):
        export_network(BUNDLES[0], weights, configs=TINY, ckpt_file=weights)
