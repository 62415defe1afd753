"""Batch preparation for diffusion training and sampling with MONAI engines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from monai.engines.utils import DiffusionPrepareBatch, PrepareBatch, default_prepare_batch

from common.diffusion.latent import VQLatentCodec
from common.slice_roles import TARGET


class ConcatDiffusionPrepareBatch(DiffusionPrepareBatch):
    """``DiffusionPrepareBatch`` whose condition is concatenated to the noisy image (``mode="concat"``).

    For a batch ``{"image": (B, C_img, X, Y, Z), condition_name: (B, C_cond, X, Y, Z)}`` the trainer's inferer
    (``monai.inferers.DiffusionInferer``) is called with ``noise``, ``timesteps``, ``condition`` and ``mode``, and
    the network sees ``cat([x_t, condition], dim=1)``; the loss target is the noise.
    """

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple, dict]:
        images, target, args, infer_kwargs = super().__call__(batchdata, device, non_blocking, **kwargs)
        infer_kwargs["mode"] = "concat"
        return images, target, args, infer_kwargs


class SamplerInputPrepareBatch(PrepareBatch):
    """Return what a sampler starts from as the engine input (and no target), for evaluators that generate.

    That is the condition of a conditional sampler (a one-hot mask, (B, C_cond, X, Y, Z)) or the per-volume input
    of an unconditional one (e.g. the volume indices that seed its noise, (B,)).

    Args:
        input_key: batch key of the sampler input.
    """

    def __init__(self, input_key: str = "condition") -> None:
        self.input_key = input_key

    def __call__(
        self,
        batchdata: Mapping[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, None]:
        return batchdata[self.input_key].to(device=device, non_blocking=non_blocking, **kwargs), None


class LatentDiffusionPrepareBatch(DiffusionPrepareBatch):
    """``DiffusionPrepareBatch`` on VQ-GAN latents: images are encoded on the fly by a frozen autoencoder.

    For a batch ``{"image": (B, C, X, Y, Z)}`` the engine input is the normalised latents (B, E, X/c, Y/c, Z/c) of
    ``codec`` (computed without gradients), the loss target is their noise, and the inferer
    (``monai.inferers.DiffusionInferer``) gets ``noise`` and ``timesteps``.

    Args:
        codec: the :class:`common.diffusion.VQLatentCodec` of the trained autoencoder, on the engine's device.
        num_train_timesteps: T of the training schedule.
    """

    def __init__(self, codec: VQLatentCodec, num_train_timesteps: int) -> None:
        super().__init__(num_train_timesteps)
        self.codec = codec

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple, dict]:
        images, _ = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
        return super().__call__({"image": self.codec.encode(images)}, device, non_blocking, **kwargs)


class SliceDiffusionPrepareBatch(PrepareBatch):
    """Draw noise and timesteps for a batch of slice sets (see ``common.transforms.SampleSliceSetsd``).

    For a batch ``{"slices": (B, K, C, H, W), "slice_indices": (B, K), "slice_roles": (B, K)}`` it returns the
    slices as the engine input, ``{"noise", "target_mask"}`` as the loss target (for
    ``common.diffusion.SliceNoiseLoss``), and the keyword arguments of ``common.diffusion.SliceDiffusionInferer``.
    Timesteps are drawn uniformly per sample and shared by its target slices.

    Args:
        num_train_timesteps: T of the training schedule.
        slices_key / indices_key / roles_key: batch keys.
    """

    def __init__(
        self,
        num_train_timesteps: int,
        slices_key: str = "slices",
        indices_key: str = "slice_indices",
        roles_key: str = "slice_roles",
    ) -> None:
        self.num_train_timesteps = num_train_timesteps
        self.slices_key, self.indices_key, self.roles_key = slices_key, indices_key, roles_key

    def __call__(
        self,
        batchdata: Mapping[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], tuple, dict[str, torch.Tensor]]:
        slices = batchdata[self.slices_key].to(device=device, non_blocking=non_blocking, **kwargs)
        indices = batchdata[self.indices_key].to(device=device, non_blocking=non_blocking).long()
        roles = batchdata[self.roles_key].to(device=device, non_blocking=non_blocking).long()
        noise = torch.randn_like(slices)
        timesteps = torch.randint(0, self.num_train_timesteps, (slices.shape[0],), device=slices.device).long()
        target = {"noise": noise, "target_mask": roles == TARGET}
        infer_kwargs = {"noise": noise, "timesteps": timesteps, "slice_indices": indices, "slice_roles": roles}
        return slices, target, (), infer_kwargs
