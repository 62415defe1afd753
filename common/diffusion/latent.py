"""Medical Diffusion's latent space (Khader et al. 2023): normalised VQ-GAN latents, and sampling in that space."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from monai.inferers import DiffusionInferer
from monai.networks.nets import VQVAE
from monai.networks.schedulers import Scheduler
from torch import nn

from common.errors import InputError
from common.state_dicts import is_state_dict_mismatch, weights_mismatch_message

from .sampler import SeededSampler


class VQLatentCodec(nn.Module):
    """Map images to VQ-GAN latents in about [-1, 1] and back, with a frozen autoencoder in evaluation mode.

    ``encode`` returns the encoder's pre-quantisation latents min-max normalised with the global minimum and
    maximum of the codebook entries (the paper's approximation of the latents' range, since the EMA codebook
    follows the latents). ``decode`` undoes the normalisation, quantises with the codebook and decodes. The
    autoencoder stays in evaluation mode whatever mode the codec is put in, so its codebook is never updated.

    Args:
        autoencoder: a ``monai.networks.nets.VQVAE`` (e.g. ``common.networks.make_vqgan_autoencoder``).
        weights: its trained weights (the ``models/model_autoencoder.pt`` written by
            ``configs/train_autoencoder.json``), or ``None`` if ``autoencoder`` is trained already.

    Raises:
        FileNotFoundError: naming ``weights`` when the file does not exist.
        InputError: when the weights do not fit ``autoencoder``, naming the override of ``configs/`` (in the current
            folder) they fit, e.g. ``tiny_cpu.json``.
    """

    def __init__(self, autoencoder: VQVAE, weights: str | Path | None = None) -> None:
        super().__init__()
        if weights is not None:
            if not Path(weights).is_file():
                raise FileNotFoundError(
                    f"{weights}: trained VQ-GAN autoencoder not found; train it first with"
                    " `python -m monai.bundle run training --config_file configs/train_autoencoder.json`"
                )
            try:
                autoencoder.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            except RuntimeError as error:
                if not is_state_dict_mismatch(error):
                    raise
                message = weights_mismatch_message(
                    weights, autoencoder, Path.cwd() / "configs", net_id="autoencoder_def"
                )
                raise InputError(message) from error
        self.autoencoder = autoencoder.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> VQLatentCodec:
        super().train(mode)
        self.autoencoder.eval()  # a training-mode quantizer would move the codebook
        return self

    def codebook_range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Global minimum and maximum of the codebook entries (0-d tensors)."""
        codebook = self.autoencoder.quantizer.quantizer.embedding.weight
        return codebook.min(), codebook.max()

    def normalise(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, E, ...) in the codebook's range -> about [-1, 1]."""
        low, high = self.codebook_range()
        return (latents - low) / (high - low) * 2 - 1

    def denormalise(self, latents: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalise`."""
        low, high = self.codebook_range()
        return (latents + 1) / 2 * (high - low) + low

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, C, X, Y, Z) -> normalised pre-quantisation latents (B, E, X/c, Y/c, Z/c)."""
        return self.normalise(self.autoencoder.encode(images))

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, E, X/c, Y/c, Z/c) -> de-normalised, quantised, decoded images (B, C, X, Y, Z)."""
        quantised, _ = self.autoencoder.quantize(self.denormalise(latents))
        return self.autoencoder.decode(quantised)


class LatentDiffusionSampler(SeededSampler):
    """Generate images unconditionally: sample latents from noise with a DDPM/DDIM, then decode them.

    Used as the ``inferer`` of a ``monai.engines.SupervisedEvaluator`` whose batch input only sets the batch size
    (e.g. the sample indices of ``common.data.sample_items``): ``sampler(inputs, network)`` draws noise
    (B, latent_channels, *latent_size), runs ``monai.inferers.DiffusionInferer.sample`` with the diffusion network,
    decodes the latents with ``codec`` and returns images (B, C, X, Y, Z) clamped to the model range [-1, 1].

    Args:
        scheduler: a MONAI DDPM/DDIM scheduler whose timesteps are set (see ``make_noise_scheduler``).
        codec: the :class:`VQLatentCodec` of the trained autoencoder.
        latent_size: spatial size of the latents, the image size divided by the compression.
        latent_channels: latent channels (the codebook dimension).
        seed: seed of the sampling chain, see :class:`SeededSampler`.
        verbose: show a tqdm progress bar over the sampling steps.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        codec: VQLatentCodec,
        latent_size: Sequence[int],
        latent_channels: int = 8,
        seed: int | None = None,
        verbose: bool = True,
    ) -> None:
        super().__init__(seed)
        self.inferer = DiffusionInferer(scheduler)
        self.codec = codec
        self.latent_shape = (latent_channels, *latent_size)
        self.verbose = verbose

    def sample(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor]) -> torch.Tensor:
        noise = torch.randn((inputs.shape[0], *self.latent_shape), device=inputs.device)
        latents = self.inferer.sample(input_noise=noise, diffusion_model=network, verbose=self.verbose)
        return self.codec.decode(latents).clamp(-1, 1)
