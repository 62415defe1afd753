"""Weights against networks (``common.state_dicts``): which config override a state dict fits, and the one-line
message that names it."""

from __future__ import annotations

import pytest
import torch
from monai.bundle import ConfigParser
from support import REPO

from common.state_dicts import fitting_configs, is_state_dict_mismatch, weights_mismatch_message

CONFIGS = REPO / "bundles" / "cdpm_brain_mri" / "configs"


def network(*names: str) -> torch.nn.Module:
    """``network_def`` of cDPM's config files ``names`` merged in order."""
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / name) for name in names])
    return parser.get_parsed_content("network_def")


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "model.pt"
    torch.save(network("inference.json", "tiny_cpu.json").state_dict(), path)
    return path


def test_the_tiny_weights_fit_the_tiny_override_only(tiny_weights):
    state_dict = torch.load(tiny_weights, weights_only=True)
    assert fitting_configs(state_dict, CONFIGS) == ["tiny_cpu.json"]


def test_a_mismatch_is_recognised_and_named_with_the_override_to_add(tiny_weights):
    with torch.device("meta"):  # the paper's 100 M parameters: shapes only
        paper = network("inference.json")
    with pytest.raises(RuntimeError) as error:
        paper.load_state_dict(torch.load(tiny_weights, weights_only=True))
    assert is_state_dict_mismatch(error.value)
    assert not is_state_dict_mismatch(RuntimeError("CUDA out of memory"))
    message = weights_mismatch_message(tiny_weights, paper, CONFIGS)
    assert message.startswith(f"{tiny_weights}: the weights do not fit the network of these configs (")
    assert "they fit inference.json + tiny_cpu.json" in message
    assert "--config_file \"['configs/inference.json','configs/tiny_cpu.json']\"" in message
