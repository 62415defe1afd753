"""One VQ-GAN training iteration (Khader et al. 2023): generator step, then both discriminators' step."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from ignite.engine import Engine
from monai.losses import PatchAdversarialLoss
from monai.networks.nets import PatchDiscriminator
from torch import nn

from common.errors import InputError


def random_depth_slices(volumes: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Slice ``index[b]`` along the last axis (depth) of each volume: (B, C, X, Y, Z) -> (B, C, X, Y)."""
    return volumes[torch.arange(volumes.shape[0], device=volumes.device), ..., index]


class VQGANIteration:
    """The ``iteration_update`` of a MONAI ``SupervisedTrainer`` whose network is a ``VQVAE`` (the generator).

    For a batch ``{"image": (B, C, X, Y, Z)}`` in [-1, 1] the generator step minimises

        ``l1_weight`` * L1(x̂, x) + commitment loss + ``perceptual_weight`` * LPIPS(x̂_s, x_s)
        + [after ``adversarial_start`` iterations]  sum_d w_d * (-mean D_d(x̂_d)
        + ``feature_matching_weight`` * sum_l L1(D_d^l(x̂_d), D_d^l(x_d)))

    where x_s is one random depth slice per volume (B, C, X, Y), d runs over the slice-wise 2D discriminator (fed
    x_s) and the 3D discriminator (fed the volume), D^l are a discriminator's intermediate features (all outputs
    but the logits; L1 is the mean absolute difference of one layer's features) and w_d its weight. The
    feature-matching term sums over the layers, as the reference code does (its per-layer factor 4 / (3 + 1) is 1
    for the 3-layer discriminators; it switches a discriminator's term on when w_d > 0 rather than scaling it by
    w_d, the same for the paper's weights 1 and 1). The codebook is updated by its EMA inside the forward pass;
    the commitment loss and the straight-through estimator are the quantizer's. After ``adversarial_start``
    iterations, a discriminator step then minimises sum_d w_d * (hinge(D_d(x_d), real) + hinge(D_d(x̂_d), fake)) / 2
    with ``PatchAdversarialLoss(criterion="hinge")``. Both steps clip the gradient norm to ``max_grad_norm``.

    The L1 loss is the trainer's ``loss_function`` and the generator optimiser its ``optimizer``. The iteration
    returns (as ``engine.state.output``; use ``decollate=False``) the detached scalars ``"loss"`` (generator
    objective), ``"l1"``, ``"commitment"``, ``"perceptual"``, ``"adversarial"``, ``"feature_matching"`` and
    ``"discriminator"``, each weighted; terms not active yet are 0.

    Args:
        discriminator_2d: ``PatchDiscriminator(spatial_dims=2)`` on slices (B, C, X, Y).
        discriminator_3d: ``PatchDiscriminator(spatial_dims=3)`` on volumes (B, C, X, Y, Z).
        discriminator_optimizer: optimiser over both discriminators' parameters.
        adversarial_start: iterations trained without the discriminators (10,000 in the reference README).
        l1_weight / perceptual_weight / feature_matching_weight: loss weights (4, 4 and 4 in the reference).
        slice_adversarial_weight / volume_adversarial_weight: w_d of the 2D and 3D discriminators (1 and 1).
        perceptual_loss: a 2D perceptual loss on slices (``common.networks.make_perceptual_loss``), or ``None`` for
            no perceptual term (``perceptual_weight`` is then unused).
        max_grad_norm: gradient-norm clip of both steps; ``None`` for no clipping.
        image_key: batch key of the images.

    Raises:
        InputError: a negative loss weight.
    """

    LOSS_NAMES = ("l1", "commitment", "perceptual", "adversarial", "feature_matching", "discriminator")

    def __init__(
        self,
        discriminator_2d: PatchDiscriminator,
        discriminator_3d: PatchDiscriminator,
        discriminator_optimizer: torch.optim.Optimizer,
        adversarial_start: int = 10000,
        l1_weight: float = 4.0,
        perceptual_loss: nn.Module | None = None,
        perceptual_weight: float = 4.0,
        slice_adversarial_weight: float = 1.0,
        volume_adversarial_weight: float = 1.0,
        feature_matching_weight: float = 4.0,
        max_grad_norm: float | None = 1.0,
        image_key: str = "image",
    ) -> None:
        weights = {
            "l1_weight": l1_weight,
            "perceptual_weight": perceptual_weight,
            "feature_matching_weight": feature_matching_weight,
            "slice_adversarial_weight": slice_adversarial_weight,
            "volume_adversarial_weight": volume_adversarial_weight,
        }
        negative = {name: value for name, value in weights.items() if value < 0}
        if negative:
            raise InputError(f"loss weights must be >= 0, got {negative}")
        self.discriminators = (
            (discriminator_2d, slice_adversarial_weight),
            (discriminator_3d, volume_adversarial_weight),
        )
        self.discriminator_optimizer = discriminator_optimizer
        self.adversarial_start = adversarial_start
        self.l1_weight = l1_weight
        self.perceptual_loss, self.perceptual_weight = perceptual_loss, perceptual_weight
        self.feature_matching_weight = feature_matching_weight
        self.max_grad_norm = max_grad_norm
        self.image_key = image_key
        self.hinge = PatchAdversarialLoss(criterion="hinge")

    def _pairs(
        self, real: tuple[torch.Tensor, torch.Tensor], fake: tuple[torch.Tensor, torch.Tensor]
    ) -> Iterator[tuple[PatchDiscriminator, float, torch.Tensor, torch.Tensor]]:
        """(discriminator, weight, real input, fake input) for the slice and the volume discriminator."""
        for (discriminator, weight), real_input, fake_input in zip(self.discriminators, real, fake, strict=True):
            yield discriminator, weight, real_input, fake_input

    def _step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_grad_norm is not None:
            parameters = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(parameters, self.max_grad_norm)
        optimizer.step()

    def _generator_adversarial(
        self, real: tuple[torch.Tensor, torch.Tensor], fake: tuple[torch.Tensor, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        adversarial, matching = 0.0, 0.0
        for discriminator, weight, real_input, fake_input in self._pairs(real, fake):
            fake_features = discriminator(fake_input)
            with torch.no_grad():
                real_features = discriminator(real_input)
            adversarial = adversarial - weight * fake_features[-1].mean()
            pairs = zip(fake_features[:-1], real_features[:-1], strict=True)
            layers = [torch.nn.functional.l1_loss(f, r) for f, r in pairs]
            matching = matching + weight * torch.stack(layers).sum()
        return {"adversarial": adversarial, "feature_matching": self.feature_matching_weight * matching}

    def _discriminator_loss(
        self, real: tuple[torch.Tensor, torch.Tensor], fake: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        loss = 0.0
        for discriminator, weight, real_input, fake_input in self._pairs(real, fake):
            real_loss = self.hinge(discriminator(real_input)[-1], target_is_real=True, for_discriminator=True)
            fake_loss = self.hinge(discriminator(fake_input)[-1], target_is_real=False, for_discriminator=True)
            loss = loss + weight * 0.5 * (real_loss + fake_loss)
        return loss

    def __call__(self, engine: Engine, batchdata: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        images, _ = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking)
        adversarial = engine.state.iteration > self.adversarial_start
        engine.network.train()
        reconstruction, commitment = engine.network(images)
        index = torch.randint(images.shape[-1], (images.shape[0],), device=images.device)
        real = (random_depth_slices(images, index), images)
        fake = (random_depth_slices(reconstruction, index), reconstruction)
        zero = torch.zeros((), device=images.device)
        losses = dict.fromkeys(self.LOSS_NAMES, zero)
        losses["l1"] = self.l1_weight * engine.loss_function(reconstruction, images)
        losses["commitment"] = commitment
        if self.perceptual_loss is not None:
            losses["perceptual"] = self.perceptual_weight * self.perceptual_loss(fake[0], real[0])
        if adversarial:
            losses.update(self._generator_adversarial(real, fake))
        loss = sum(losses.values())
        self._step(engine.optimizer, loss)
        if adversarial:
            detached = (fake[0].detach(), fake[1].detach())
            losses["discriminator"] = self._discriminator_loss(real, detached)
            self._step(self.discriminator_optimizer, losses["discriminator"])
        return {"loss": loss.detach(), **{name: value.detach() for name, value in losses.items()}}
