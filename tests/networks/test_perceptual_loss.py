"""The perceptual-loss factory never downloads: it is off when not enabled and says what is missing otherwise."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from common.errors import InputError
from common.networks import make_perceptual_loss
from common.networks import perceptual as perceptual_module


def test_disabled_loss_is_none_and_loads_nothing(monkeypatch):
    monkeypatch.setattr(perceptual_module.importlib.util, "find_spec", lambda name: pytest.fail("looked for " + name))
    assert make_perceptual_loss(False) is None


@pytest.mark.parametrize("switch", ["false", "False", 0, 4.0, None])
def test_the_switch_must_be_a_bool(switch):
    """``--use_perceptual_loss false`` reaches the config as the (true) string "false": refused, not taken as on."""
    with pytest.raises(InputError, match="use_perceptual_loss must be True or False"):
        make_perceptual_loss(switch)


def test_rejects_unknown_backbones():
    with pytest.raises(ValueError, match="LPIPS backbone"):
        make_perceptual_loss(True, network_type="radimagenet_resnet50")


def test_missing_weights_in_an_empty_cache_name_the_file_and_the_way_out(tmp_path, monkeypatch):
    """With both packages importable (a stand-in torchvision) but an empty $TORCH_HOME, the weights are missing."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = "https://example.invalid/models/vgg16-397923af.pth"
    weights = SimpleNamespace(IMAGENET1K_V1=SimpleNamespace(url=url))
    monkeypatch.setitem(
        __import__("sys").modules, "torchvision", SimpleNamespace(models=SimpleNamespace(VGG16_Weights=weights))
    )
    monkeypatch.setattr(perceptual_module.importlib.util, "find_spec", lambda name: object())
    with pytest.raises(RuntimeError) as error:
        make_perceptual_loss(True, network_type="vgg")
    message = str(error.value)
    assert str(tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth") in message
    assert "--use_perceptual_loss False" in message and "never downloaded" in message


def test_missing_packages_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(perceptual_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        RuntimeError, match=r"\['lpips', 'torchvision'\].*pip install lpips torchvision.*--use_perceptual_loss False"
    ):
        make_perceptual_loss(True)
