"""Mask transforms for mask-conditioned diffusion (Med-DDPM): one-hot conditions and the BraTS brain label."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.networks.utils import one_hot
from monai.transforms import MapTransform

from common.data.nifti import source_name


class OneHotConditiond(MapTransform):
    """One-hot encode an integer label map *without its background channel* into a conditioning tensor.

    Med-DDPM concatenates this tensor to the noisy image: labels {0 background, 1 brain, 2 tumour} of shape
    (1, X, Y, Z) become a float tensor of shape (num_classes - 1, X, Y, Z) whose channel ``k`` is 1 where the
    label equals ``k + 1``. The label itself is left untouched so that it can be saved beside the output.

    Args:
        keys: the label key (exactly one).
        num_classes: number of classes including the background.
        condition_key: key under which the conditioning tensor is stored.

    Raises:
        ValueError: naming the source file, when a label is not an integer in [0, num_classes - 1].
    """

    def __init__(self, keys: Hashable, num_classes: int, condition_key: str = "condition") -> None:
        super().__init__(keys)
        if len(self.keys) != 1:
            raise ValueError("OneHotConditiond takes exactly one label key")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2 (background + one class), got {num_classes}")
        self.num_classes = num_classes
        self.condition_key = condition_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        label = d[self.keys[0]]
        if label.shape[0] != 1:
            raise ValueError(
                f"{source_name(label)}: expected a single-channel label map, got shape {tuple(label.shape)}"
            )
        values = torch.unique(torch.as_tensor(label))
        bad = [v.item() for v in values if v != torch.round(v) or v < 0 or v >= self.num_classes]
        if bad:
            raise ValueError(
                f"{source_name(label)}: labels out of range {bad}; expected integers in [0, {self.num_classes - 1}]"
            )
        encoded = one_hot(torch.as_tensor(label).long()[None], num_classes=self.num_classes, dim=1)[0]
        d[self.condition_key] = encoded[1:].float()
        return d


class AddBrainLabeld(MapTransform):
    """Give unlabelled brain voxels their own label, found by thresholding one image channel.

    Med-DDPM's BraTS variant adds label 4 ("brain") to the tumour labels 1-3 where T1 is above the background
    value, so that the mask tells the network where the brain is.

    Args:
        keys: the label key (exactly one), shape (1, X, Y, Z).
        image_key: key of the image, shape (C, X, Y, Z).
        channel: channel of the image to threshold (0 = T1 in the T1, T1ce, T2, FLAIR order of ``prepare``).
        brain_label: value written into background voxels above the threshold.
        threshold: intensity above which a voxel is brain; brain-extracted BraTS volumes have a background of 0.
    """

    def __init__(
        self, keys: Hashable, image_key: str = "image", channel: int = 0, brain_label: int = 4, threshold: float = 0.0
    ) -> None:
        super().__init__(keys)
        if len(self.keys) != 1:
            raise ValueError("AddBrainLabeld takes exactly one label key")
        self.image_key = image_key
        self.channel = channel
        self.brain_label = brain_label
        self.threshold = threshold

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        label, image = d[self.keys[0]], d[self.image_key]
        if tuple(image.shape[1:]) != tuple(label.shape[1:]):
            raise ValueError(
                f"{source_name(label)}: label shape {tuple(label.shape[1:])} does not match image shape "
                f"{tuple(image.shape[1:])} of {source_name(image)}"
            )
        brain = (torch.as_tensor(image)[self.channel : self.channel + 1] > self.threshold) & (label == 0)
        d[self.keys[0]] = torch.where(brain, torch.full_like(label, self.brain_label), label)
        return d
