"""DiffuseMorph (Kim, Han & Ye, ECCV 2022): a score network whose noise estimate drives a deformation network.

Direction, fixed for the whole bundle: the moving image m is the template, the fixed image f is a subject. The
deformation network returns a displacement field phi in voxels, channel order (X, Y, Z) of the RAS array, defined
on the subject's grid, such that ``monai.networks.blocks.Warp()(m, phi)`` (m sampled at x + phi(x)) looks like f.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class DiffuseMorph(nn.Module):
    """Score network G and deformation network M of DiffuseMorph, with latent scaling for continuous deformation.

    G (e.g. MONAI ``DiffusionModelUNet``, 3 input channels, 1 output) predicts the noise of the noisy fixed image
    x_t from ``[m, f, x_t]``; M (e.g. MONAI ``VoxelMorphUNet``, 2 input channels, 3 output) turns ``[m, latent]``
    into a field, the latent being G's noise estimate. The field of a latent z is ``M([m, z]) - M([m, 0])``: a zero
    latent gives exactly the identity, so scaling the latent by eta in [0, 1] (paper Algorithm 1) moves continuously
    from the template (eta = 0) to the registration (eta = 1). Since m is always the template, ``M([m, 0])`` is one
    constant field per model; subtracting it removes an offset the registration loss would otherwise have to drive
    to zero and is applied identically in training and inference. M's last convolution (the flow head) is
    initialised near zero (normal, std 1e-5, zero bias), as VoxelMorph does, so training starts from small fields.

    Images are given in [0, 1] (the paper's normalisation) and mapped to [-1, 1] for both networks; the noisy fixed
    image x_t is built from the [-1, 1] fixed image (see :meth:`to_model_range`).

    Args:
        score_network: G, called as ``G(x=(B, 3, X, Y, Z), timesteps=(B,))`` -> (B, 1, X, Y, Z).
        deformation_network: M, called as ``M((B, 2, X, Y, Z))`` -> (B, 3, X, Y, Z); its last ``Conv3d`` is the flow
            head.
    """

    def __init__(self, score_network: nn.Module, deformation_network: nn.Module) -> None:
        super().__init__()
        self.score_network = score_network
        self.deformation_network = deformation_network
        convolutions = [m for m in deformation_network.modules() if isinstance(m, nn.Conv3d)]
        if not convolutions or convolutions[-1].out_channels != 3:
            raise ValueError("the deformation network must end with a Conv3d of 3 output channels (the flow head)")
        nn.init.normal_(convolutions[-1].weight, std=1e-5)
        if convolutions[-1].bias is not None:
            nn.init.zeros_(convolutions[-1].bias)

    @staticmethod
    def to_model_range(image: torch.Tensor) -> torch.Tensor:
        """Map intensities from [0, 1] to the networks' [-1, 1]."""
        return image * 2 - 1

    def deform(self, moving: torch.Tensor, latent: torch.Tensor, eta: float = 1.0) -> torch.Tensor:
        """Field (B, 3, X, Y, Z) in voxels of the latent scaled by ``eta``: ``M([m, eta z]) - M([m, 0])``.

        Args:
            moving: template (B, 1, X, Y, Z) in [0, 1].
            latent: G's noise estimate z (B, 1, X, Y, Z).
            eta: latent scale; 0 gives a zero field.
        """
        moving = self.to_model_range(moving)
        both = torch.cat([torch.cat([moving, eta * latent], 1), torch.cat([moving, torch.zeros_like(latent)], 1)])
        scaled, zero = self.deformation_network(both).chunk(2)
        return scaled - zero

    def forward(
        self, moving: torch.Tensor, fixed: torch.Tensor, noisy_fixed: torch.Tensor, timesteps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass.

        Args:
            moving: template (B, 1, X, Y, Z) in [0, 1].
            fixed: subject (B, 1, X, Y, Z) in [0, 1].
            noisy_fixed: x_t, the [-1, 1] subject noised to ``timesteps`` (B, 1, X, Y, Z).
            timesteps: (B,) integer diffusion steps.

        Returns:
            ``(noise_prediction (B, 1, X, Y, Z), field (B, 3, X, Y, Z) in voxels)``.
        """
        inputs = torch.cat([self.to_model_range(moving), self.to_model_range(fixed), noisy_fixed], 1)
        noise_prediction = self.score_network(x=inputs, timesteps=timesteps)
        return noise_prediction, self.deform(moving, noise_prediction)

    def latent(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """G's noise estimate at t = 0 for x_0 = f (Eq. 7): one pass, no reverse diffusion. (B, 1, X, Y, Z)."""
        fixed_model = self.to_model_range(fixed)
        inputs = torch.cat([self.to_model_range(moving), fixed_model, fixed_model], 1)
        timesteps = torch.zeros(fixed.shape[0], dtype=torch.long, device=fixed.device)
        return self.score_network(x=inputs, timesteps=timesteps)

    def register(self, moving: torch.Tensor, fixed: torch.Tensor, eta: float = 1.0) -> torch.Tensor:
        """Field (B, 3, X, Y, Z) in voxels warping the template ``moving`` onto the subject ``fixed`` (both [0, 1])."""
        return self.deform(moving, self.latent(moving, fixed), eta)

    def trajectory(self, moving: torch.Tensor, fixed: torch.Tensor, etas: Sequence[float]) -> torch.Tensor:
        """Fields of the continuous deformation (Algorithm 1): (len(etas), B, 3, X, Y, Z), one per latent scale."""
        latent = self.latent(moving, fixed)
        return torch.stack([self.deform(moving, latent, float(eta)) for eta in etas])
