"""One training iteration of DiffuseMorph (stage 1 of the DiffuseMorph bundle) for a MONAI ``SupervisedTrainer``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.losses import DiffusionLoss, LocalNormalizedCrossCorrelationLoss
from monai.networks.blocks import Warp
from monai.networks.schedulers import Scheduler
from monai.transforms import Randomizable
from monai.utils import CommonKeys, convert_to_tensor

from common.networks.diffusemorph import DiffuseMorph


class DiffuseMorphIteration:
    """``iteration_update`` of a ``SupervisedTrainer`` training :class:`common.networks.DiffuseMorph`.

    The batch holds subjects ``{image_key: (B, 1, X, Y, Z)}`` in [0, 1] (the fixed images f); the template m is
    a fixed tensor expanded to the batch. One iteration draws t uniformly in [0, T) and noise e, builds
    x_t = add_noise(2 f - 1, e, t), runs ``(e_hat, phi) = network(m, f, x_t, t)`` and minimises (paper Eq. 1, 3)::

        loss = engine.loss_function(e_hat, e)
               + registration_weight * (LNCC(Warp(m, phi), f) + smoothness_weight * Diffusion(phi))

    where ``engine.loss_function`` is the diffusion loss (``torch.nn.MSELoss``, Eq. 2), the bracket is the
    registration loss (Eq. 3: similarity plus weighted smoothness), LNCC is MONAI's
    ``LocalNormalizedCrossCorrelationLoss`` (minus the mean squared local NCC, cubic window) and Diffusion is MONAI's
    ``DiffusionLoss`` (mean squared central-difference gradient of the field, in voxels). Warping is MONAI's
    ``Warp`` (bilinear, border padding: voxels mapped from outside the template repeat its edge, which is
    background for a brain template). The output dict holds ``loss`` and ``losses`` (floats of the total and every part,
    for TensorBoard; run the trainer with ``decollate=False`` so this dict stays whole), the subject as ``image``
    and the warped template as ``pred``.

    With ``augmentation``, each (template, subject) pair is first stacked as a 2-channel volume (2, X, Y, Z) and
    transformed by it, so a random flip or rotation moves both images alike, as the DiffuseMorph reference code
    augments its (moving, fixed) pairs. A MONAI ``Randomizable`` augmentation is seeded from torch's generator
    when the iteration is built (as MONAI's ``DataLoader`` seeds its transforms), so ``set_determinism`` and a
    per-process seed apply to it.

    Args:
        template: moving image (1, X, Y, Z) or (1, 1, X, Y, Z) in [0, 1].
        scheduler: noise scheduler of the score network's training (paper: linear beta 1e-6 to 1e-2, T = 2000).
        registration_weight: the paper's lambda (Eq. 1, paper: 10): weight of the registration loss (LNCC similarity
            plus weighted smoothness) against the diffusion loss.
        smoothness_weight: the paper's lambda_phi (Eq. 3): weight of the smoothness term against the similarity term
            inside the registration loss (not given in the paper; the reference code applies its lambda to both
            terms, i.e. 1 here).
        kernel_size: LNCC window side in voxels (9 as in VoxelMorph and the reference code).
        image_key: batch key of the subject.
        augmentation: spatial transform of a channel-first pair (2, X, Y, Z), e.g. MONAI ``RandFlip`` and
            ``RandRotate90`` in a ``Compose``; it must keep the shape. ``None`` for no augmentation.
    """

    def __init__(
        self,
        template: torch.Tensor,
        scheduler: Scheduler,
        registration_weight: float = 10.0,
        smoothness_weight: float = 1.0,
        kernel_size: int = 9,
        image_key: str = CommonKeys.IMAGE,
        augmentation: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        template = convert_to_tensor(template, dtype=torch.float32, track_meta=False)
        self.template = template if template.ndim == 5 else template[None]
        if self.template.ndim != 5 or self.template.shape[:2] != (1, 1):
            raise ValueError(f"template must be one volume (1, X, Y, Z), got {tuple(torch.as_tensor(template).shape)}")
        self.scheduler = scheduler
        self.registration_weight, self.smoothness_weight = registration_weight, smoothness_weight
        self.similarity = LocalNormalizedCrossCorrelationLoss(spatial_dims=3, kernel_size=kernel_size)
        self.smoothness = DiffusionLoss()
        self.warp = Warp(mode="bilinear", padding_mode="border")
        self.image_key = image_key
        self.augmentation = augmentation
        if isinstance(augmentation, Randomizable):
            augmentation.set_random_state(seed=int(torch.randint(2**31 - 1, ()).item()))

    def augment(self, moving: torch.Tensor, fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pairs (B, 1, X, Y, Z) of ``moving`` and ``fixed`` images, each pair transformed by ``augmentation``.

        Raises:
            ValueError: if the augmentation changed a pair's shape (a 90° rotation of a non-square plane).
        """
        if self.augmentation is None:
            return moving, fixed
        pairs = []
        for pair in torch.cat([moving, fixed], dim=1):
            augmented = convert_to_tensor(self.augmentation(pair), track_meta=False)
            if augmented.shape != pair.shape:
                raise ValueError(
                    f"augmentation changed the pair's shape {tuple(pair.shape)} to {tuple(augmented.shape)}; "
                    "rotate only planes whose two sizes are equal"
                )
            pairs.append(augmented)
        stacked = torch.stack(pairs)
        return stacked[:, :1], stacked[:, 1:]

    def losses(
        self, engine: SupervisedTrainer, fixed: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """Total loss, its parts and the warped template (B, 1, X, Y, Z) for subjects ``fixed`` (B, 1, X, Y, Z)."""
        moving, fixed = self.augment(self.template.to(fixed).expand_as(fixed), fixed)
        noise = torch.randn_like(fixed)
        timesteps = torch.randint(0, self.scheduler.num_train_timesteps, (fixed.shape[0],), device=fixed.device)
        noisy = self.scheduler.add_noise(DiffuseMorph.to_model_range(fixed), noise, timesteps)  # network may be DDP
        noise_prediction, field = engine.network(moving, fixed, noisy, timesteps)
        warped = self.warp(moving, field.float())
        parts = {
            "diffusion_loss": engine.loss_function(noise_prediction.float(), noise),
            "similarity_loss": self.similarity(warped, fixed),
            "smoothness_loss": self.smoothness(field.float()),
        }
        registration = parts["similarity_loss"] + self.smoothness_weight * parts["smoothness_loss"]
        return parts["diffusion_loss"] + self.registration_weight * registration, parts, warped

    def __call__(self, engine: SupervisedTrainer, batchdata: dict[str, Any]) -> dict[str, Any]:
        fixed = torch.as_tensor(batchdata[self.image_key]).to(engine.state.device, non_blocking=engine.non_blocking)
        fixed = fixed.float()
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        if engine.amp and engine.scaler is not None:
            with torch.autocast("cuda", **engine.amp_kwargs):
                loss, parts, warped = self.losses(engine, fixed)
            engine.fire_event(IterationEvents.LOSS_COMPLETED)
            engine.scaler.scale(loss).backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.scaler.step(engine.optimizer)
            engine.scaler.update()
        else:
            loss, parts, warped = self.losses(engine, fixed)
            engine.fire_event(IterationEvents.LOSS_COMPLETED)
            loss.backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.optimizer.step()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        losses = {"loss": loss.item(), **{name: value.item() for name, value in parts.items()}}
        return {
            CommonKeys.IMAGE: fixed,
            CommonKeys.PRED: warped.detach(),
            CommonKeys.LOSS: loss.detach(),
            "losses": losses,
        }
