"""Distribution-level metrics of a synthetic against a real set: MMD and FID, with FID's feature extractors.

FID compares Gaussians fitted to features of a pretrained network. For 3D brain MRI these are MedicalNet's 3D
ResNet (Chen et al. 2019) on whole volumes, or a 2D network (e.g. RadImageNet's ResNet-50) on slices of one view
at a time (sagittal, coronal, axial), as in Pinaya et al. (2022). Weights are read from local files only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from monai.metrics import FIDMetric, MMDMetric
from monai.networks.nets import resnet10, resnet18, resnet34, resnet50, resnet101, resnet152, resnet200
from monai.networks.nets.resnet import get_medicalnet_pretrained_resnet_args
from torch import nn
from tqdm import tqdm

from .volumes import Volumes, stack_volumes

logger = logging.getLogger(__name__)

FeatureExtractor = Callable[[torch.Tensor], torch.Tensor]
"""Maps a batch of volumes (N, C, X, Y, Z) to feature rows (R, F), e.g. one row per volume or per slice."""

RESNETS = {10: resnet10, 18: resnet18, 34: resnet34, 50: resnet50, 101: resnet101, 152: resnet152, 200: resnet200}

FEATURE_NETWORKS = {"resnet2d": (2, 50), "medicalnet3d": (3, 10)}
"""Kinds of feature network: (spatial dims, default ResNet depth)."""

WEIGHTS_HINTS = {
    "resnet2d": "a 2D ResNet state dict in torchvision's layout, e.g. weights_path=/path/to/RadImageNet-ResNet50.pt "
    "(RadImageNet, https://github.com/BMEII-AI/RadImageNet; RGB first layers are summed to one channel)",
    "medicalnet3d": "a MedicalNet 3D ResNet checkpoint of the same depth, e.g. weights_path=/path/to/"
    "resnet_10_23dataset.pth (MedicalNet, https://github.com/Tencent/MedicalNet or "
    "https://huggingface.co/TencentMedicalNet/MedicalNet-Resnet10)",
}


def mmd(synthetic: Volumes, real: Volumes, y_mapping: Callable[[torch.Tensor], torch.Tensor] | None = None) -> float:
    """Maximum mean discrepancy between two sets of volumes, by MONAI's ``MMDMetric``, clipped at 0.

    MONAI computes the unbiased estimate of MMD² (Gretton et al. 2012, Eq. 3) with a linear kernel
    k(x, y) = <x, y> on the flattened volumes (after ``y_mapping``, e.g. a filter or a feature extractor). With a
    linear kernel it equals ||mu_s - mu_r||² - V_s / (k - 1) - V_r / (k - 1), where mu is a set's mean volume
    and V its mean squared distance to it; so it grows with the number of voxels, and it is negative for sets
    closer than sampling noise (a set against itself gives -2 V / (k - 1)). MMD² itself is non-negative, so the
    estimate is clipped at 0: identical sets give 0.

    ``MMDMetric`` needs batches of one shape, so sets of different sizes are cut to their first k = min(n, m)
    volumes (shuffle beforehand for a random subset); k must be at least 2. Computed in float64, as the three
    terms of the estimate are large and nearly cancel.

    Args:
        synthetic: n volumes, (n, C, X, Y, Z) or a sequence of (C, X, Y, Z).
        real: m volumes of the same shape.
        y_mapping: optional map of both (float64) batches before the kernel (MONAI's ``y_mapping``).
    """
    synthetic_batch, real_batch = stack_volumes(synthetic), stack_volumes(real)
    k = min(len(synthetic_batch), len(real_batch))
    estimate = MMDMetric(y_mapping=y_mapping)(y=real_batch[:k].double(), y_pred=synthetic_batch[:k].double())
    return max(0.0, estimate.item())


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, F) and (M, F), by MONAI's ``FIDMetric``.

    ||mu_a - mu_b||² + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) with sample means and covariances (divisor N - 1);
    needs N, M >= 2 and F >= 2.
    """
    shapes = f"{tuple(features_a.shape)} and {tuple(features_b.shape)}"
    if features_a.ndim != 2 or features_b.ndim != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"expected features (N, F) and (M, F), got {shapes}")
    if min(len(features_a), len(features_b), features_a.shape[1]) < 2:
        raise ValueError(f"need at least 2 rows and 2 features, got {shapes}")
    return FIDMetric()(y_pred=features_a, y=features_b).item()


def _features(network: nn.Module, batch: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Run ``network`` over ``batch`` in chunks; outputs with spatial dims are global-average pooled to (R, F)."""
    device = next(network.parameters()).device
    with torch.no_grad():
        outputs = torch.cat([network(chunk.to(device)).float().cpu() for chunk in batch.split(batch_size)])
    return outputs.flatten(2).mean(2) if outputs.ndim > 2 else outputs


def slice_indices(depth: int, num_slices: int, central_fraction: float = 0.6) -> np.ndarray:
    """Up to ``num_slices`` evenly spaced slice indices within the central ``central_fraction`` of ``depth``.

    Ends included; fewer when the central range has fewer slices. ``central_fraction=1.0`` spans the whole depth.
    """
    if num_slices < 1 or not 0.0 < central_fraction <= 1.0:
        raise ValueError(f"need num_slices >= 1 and 0 < central_fraction <= 1, got {num_slices}, {central_fraction}")
    margin = (depth - max(1, round(central_fraction * depth))) // 2
    return np.unique(np.linspace(margin, depth - 1 - margin, num_slices).round().astype(int))


class SliceFeatureExtractor:
    """Per-view FID features: one feature row per slice of one view, from a 2D network.

    From volumes (N, C, X, Y, Z) it takes the slices :func:`slice_indices` picks along spatial ``axis`` (0 sagittal,
    1 coronal, 2 axial for RAS volumes), runs them (N·S, C, H, W) through ``network`` (to (N·S, F), or to feature
    maps that are global-average pooled) and returns (N·S, F), volume by volume. FID of these rows compares the
    distributions of slices of that view, so a 2D network pretrained on medical slices can score 3D volumes.

    Args:
        network: 2D network with as many input channels as the volumes (e.g. :func:`load_feature_network`
            ``("resnet2d", ...)``); it is put in eval mode.
        axis: spatial axis to slice along.
        num_slices: slices per volume.
        central_fraction: part of the depth, around its centre, to take slices from (brain volumes have empty
            borders).
        batch_size: slices per forward pass.
    """

    def __init__(
        self,
        network: nn.Module,
        axis: int = 2,
        num_slices: int = 16,
        central_fraction: float = 0.6,
        batch_size: int = 32,
    ) -> None:
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be a spatial axis 0, 1 or 2, got {axis}")
        self.network = network.eval()
        self.axis, self.num_slices, self.central_fraction = axis, num_slices, central_fraction
        self.batch_size = batch_size

    def __call__(self, volumes: torch.Tensor) -> torch.Tensor:
        """Features (N·S, F) of volumes (N, C, X, Y, Z), the S slices of volume 0 first."""
        chosen = slice_indices(volumes.shape[2 + self.axis], self.num_slices, self.central_fraction)
        slices = volumes.movedim(2 + self.axis, 1)[:, torch.as_tensor(chosen)]  # (N, S, C, H, W)
        return _features(self.network, slices.flatten(0, 1), self.batch_size)


class VolumeFeatureExtractor:
    """3D FID features: one row (N, F) per volume (N, C, X, Y, Z) from a 3D network.

    Args:
        network: 3D network, e.g. :func:`load_feature_network` ``("medicalnet3d", ...)``; 5D outputs (feature maps)
            are global-average pooled. It is put in eval mode.
        batch_size: volumes per forward pass.
    """

    def __init__(self, network: nn.Module, batch_size: int = 4) -> None:
        self.network = network.eval()
        self.batch_size = batch_size

    def __call__(self, volumes: torch.Tensor) -> torch.Tensor:
        """Features (N, F) of volumes (N, C, X, Y, Z)."""
        return _features(self.network, volumes, self.batch_size)


def _build_feature_network(kind: str, depth: int | None) -> nn.Module:
    """The ResNet of ``kind`` without its classification head (outputs (N, F)), one input channel, eval mode.

    ``"medicalnet3d"`` takes MedicalNet's layout (shortcut type and downsampling bias of MONAI's
    ``get_medicalnet_pretrained_resnet_args``); ``"resnet2d"`` torchvision's (1x1-convolution shortcuts without
    bias). Both have a 7-voxel first convolution of stride 2.
    """
    if kind not in FEATURE_NETWORKS:
        raise ValueError(f"unknown feature network {kind!r}; choose one of {sorted(FEATURE_NETWORKS)}")
    spatial_dims, default_depth = FEATURE_NETWORKS[kind]
    depth = depth or default_depth
    if depth not in RESNETS:
        raise ValueError(f"no ResNet of depth {depth}; choose one of {sorted(RESNETS)}")
    bias_downsample, shortcut_type = get_medicalnet_pretrained_resnet_args(depth) if spatial_dims == 3 else (False, "B")
    network = RESNETS[depth](
        spatial_dims=spatial_dims,
        n_input_channels=1,
        conv1_t_size=7,
        conv1_t_stride=2,
        shortcut_type=shortcut_type,
        bias_downsample=bias_downsample,
        feed_forward=False,
    )
    return network.eval()


def _matching_tensors(network: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entries of ``state_dict`` whose name (without a ``module.`` prefix) and shape fit ``network``.

    A first convolution with 3 input channels (RGB-pretrained 2D networks) is summed over them: on a grey image
    that is the same as feeding it repeated in the three channels.
    """
    own = network.state_dict()
    matched = {}
    for name, tensor in state_dict.items():
        name = name.removeprefix("module.")
        if name not in own:
            continue
        if name == "conv1.weight" and tensor.shape[1] == 3 and own[name].shape[1] == 1:
            tensor = tensor.sum(1, keepdim=True)
        if tensor.shape == own[name].shape:
            matched[name] = tensor
    return matched


def load_feature_network(kind: str, weights_path: str | Path | None, depth: int | None = None) -> nn.Module:
    """A pretrained FID feature network of ``kind``, with weights from a local checkpoint (nothing is downloaded).

    Args:
        kind: ``"medicalnet3d"`` (3D ResNet, default depth 10, for :class:`VolumeFeatureExtractor`) or
            ``"resnet2d"`` (2D ResNet, default depth 50, for :class:`SliceFeatureExtractor`).
        weights_path: a ``torch.save``'d state dict, or a checkpoint holding it under ``"state_dict"`` (MedicalNet's
            format); a ``module.`` prefix (``DataParallel``) is stripped.
        depth: ResNet depth (10, 18, 34, 50, 101, 152 or 200) matching the checkpoint.

    Raises:
        FileNotFoundError: ``weights_path`` is ``None`` or not a file; the message says what to provide.
        ValueError: no tensor of the checkpoint fits the network. Tensors that fit are loaded (``strict=False``),
            and how many is logged, with a warning when some of the network's are left at their initial values.
    """
    if kind not in WEIGHTS_HINTS:
        raise ValueError(f"unknown feature network {kind!r}; choose one of {sorted(WEIGHTS_HINTS)}")
    if weights_path is None or not Path(weights_path).is_file():
        raise FileNotFoundError(
            f"FID needs a pretrained feature network: pass {WEIGHTS_HINTS[kind]}. "
            f"Got weights_path={weights_path!r}, which is not a file; nothing is downloaded."
        )
    checkpoint = torch.load(weights_path, map_location="cpu", weights_only=True)
    state_dict = checkpoint.get("state_dict", checkpoint)
    network = _build_feature_network(kind, depth)
    matched = _matching_tensors(network, state_dict)
    expected = len(network.state_dict())
    if not matched:
        raise ValueError(
            f"{weights_path}: none of its {len(state_dict)} tensors fits the {kind} network (0 of {expected} "
            f"matched by name and shape); expected {WEIGHTS_HINTS[kind]}"
        )
    network.load_state_dict(matched, strict=False)
    logger.info(f"{weights_path}: loaded {len(matched)} of the {expected} tensors of the {kind} network")
    if len(matched) < expected:
        logger.warning(f"{weights_path}: {expected - len(matched)} tensors of the {kind} network were not in it")
    return network


def random_feature_network(kind: str, seed: int = 0, depth: int | None = None) -> nn.Module:
    """A randomly initialised network of ``kind`` (see :func:`load_feature_network`), seeded by ``seed``.

    For testing the plumbing only; FID from it is meaningless.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _build_feature_network(kind, depth)


def extract_features(
    volumes: Volumes, extractor: FeatureExtractor, batch_size: int = 4, verbose: bool = True
) -> torch.Tensor:
    """Features of a set of volumes, ``batch_size`` volumes at a time: the extractor's rows of all batches."""
    starts = range(0, len(volumes), batch_size)
    return torch.cat(
        [
            extractor(stack_volumes(volumes[start : start + batch_size]))
            for start in tqdm(starts, desc="features", disable=not verbose)
        ]
    )


def fid(
    synthetic: Volumes, real: Volumes, extractor: FeatureExtractor, batch_size: int = 4, verbose: bool = True
) -> float:
    """Fréchet distance between the ``extractor`` features of a synthetic and a real set of volumes.

    Args:
        synthetic: volumes (N, C, X, Y, Z) or a sequence of (C, X, Y, Z) volumes.
        real: volumes of the same shape.
        extractor: e.g. :class:`VolumeFeatureExtractor` or :class:`SliceFeatureExtractor` (per-view FID).
        batch_size: volumes stacked per extractor call.
        verbose: show tqdm progress bars.
    """
    synthetic_features = extract_features(synthetic, extractor, batch_size, verbose)
    return frechet_distance(synthetic_features, extract_features(real, extractor, batch_size, verbose))
