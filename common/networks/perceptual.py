"""MONAI's LPIPS perceptual loss, built only when its pretrained weights are already on this machine."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from monai.losses import PerceptualLoss

from common.errors import InputError

#: LPIPS backbones and the torchvision weights enum each loads its ImageNet weights from.
LPIPS_NETWORKS = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights", "squeeze": "SqueezeNet1_1_Weights"}
SWITCH_OFF = "or train without it: `--use_perceptual_loss False`"


def perceptual_weights_path(network_type: str) -> Path:
    """Where torchvision looks for the ImageNet weights of an LPIPS backbone: ``<torch hub dir>/checkpoints/``."""
    import torchvision

    url = getattr(torchvision.models, LPIPS_NETWORKS[network_type]).IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def make_perceptual_loss(
    enabled: bool = True, network_type: str = "vgg", spatial_dims: int = 2
) -> PerceptualLoss | None:
    """``monai.losses.PerceptualLoss`` (LPIPS) for slices (B, C, X, Y), or ``None`` when ``enabled`` is false.

    Nothing is ever downloaded: the ``lpips`` and ``torchvision`` packages must be installed and the backbone's
    ImageNet weights must already be in the torch hub cache (``torch.hub.get_dir()/checkpoints``, under
    ``$TORCH_HOME``); otherwise a ``RuntimeError`` names what is missing, where to put it, and how to switch the
    loss off.

    The loss is unweighted: its weight in the training objective is the trainer's (e.g. ``perceptual_weight`` of
    :class:`common.engines.VQGANIteration`).

    Args:
        enabled: build the loss (bundle key ``use_perceptual_loss``); ``False`` returns ``None`` and loads nothing.
        network_type: LPIPS backbone, ``"vgg"`` (as in Medical Diffusion), ``"alex"`` or ``"squeeze"``.
        spatial_dims: 2 for slices; 3 applies the 2D network to slices along every axis (MONAI's fake 3D).

    Raises:
        InputError: ``enabled`` is not a bool (e.g. the string ``"false"``: on the command line write ``False``).
        ValueError: for an unknown backbone.
        RuntimeError: if a package or the pretrained weights are missing.
    """
    if not isinstance(enabled, bool):
        raise InputError(f"use_perceptual_loss must be True or False, got {enabled!r}")
    if not enabled:
        return None
    if network_type not in LPIPS_NETWORKS:
        raise ValueError(f"network_type must be an LPIPS backbone {sorted(LPIPS_NETWORKS)}, got {network_type!r}")
    missing = [name for name in ("lpips", "torchvision") if importlib.util.find_spec(name) is None]
    if missing:
        raise RuntimeError(
            f"the perceptual loss (LPIPS-{network_type}) needs the package(s) {missing}:"
            f" `pip install lpips torchvision` and put the {network_type} ImageNet weights in"
            f" {Path(torch.hub.get_dir()) / 'checkpoints'}, {SWITCH_OFF}"
        )
    path = perceptual_weights_path(network_type)
    if not path.is_file():
        raise RuntimeError(
            f"the perceptual loss (LPIPS-{network_type}) needs the pretrained weights file {path}, which is not in the"
            f" local torch hub cache (torch.hub.get_dir() = {torch.hub.get_dir()}, set by $TORCH_HOME) and is never"
            f" downloaded at run time: copy {path.name} there from a machine that has it, {SWITCH_OFF}"
        )
    return PerceptualLoss(spatial_dims=spatial_dims, network_type=network_type, is_fake_3d=spatial_dims == 3)
