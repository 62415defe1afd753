"""The VQ-GAN autoencoder of Medical Diffusion (Khader et al. 2023): MONAI's ``VQVAE`` with a restarting EMA codebook.

The encoder and decoder are MONAI's; each of the ``log2(compression)`` levels halves (or doubles) every spatial
axis with a stride-2 convolution of kernel 4 followed by residual layers. The codebook is learned by exponential
moving averages (MONAI's ``EMAQuantizer``) with a commitment loss and a straight-through estimator; this module
adds the codebook initialisation from encoder outputs and the restart of unused codes that the reference code uses.
"""

from __future__ import annotations

import torch
from monai.networks.layers.vector_quantizer import EMAQuantizer, VectorQuantizer
from monai.networks.nets import VQVAE

COMPRESSIONS = (2, 4, 8)


class RestartingEMAQuantizer(EMAQuantizer):
    """An ``EMAQuantizer`` whose codes start at encoder outputs and restart there when they fall out of use.

    Why not MONAI's quantizer alone: its EMA update divides the decaying sum of the latents assigned to a code by
    a Laplace-smoothed count, which for a code nothing is assigned to is about ``epsilon``; such codes grow to
    ~1e5 within one step. With 16,384 codes most are unused, so the codebook minimum and maximum that Medical
    Diffusion normalises its latents with would be meaningless. Here, at every training step and before the
    assignment, each code whose EMA usage count is below ``restart_threshold`` is replaced by a randomly drawn
    latent vector of the current batch (all codes on the first batch, whose counts start at 0), with its EMA count
    set to ``restart_threshold``: a restarted code survives if at least one latent per step is assigned to it.
    In evaluation mode it quantises exactly like ``EMAQuantizer``.

    Args:
        spatial_dims / num_embeddings / embedding_dim / commitment_cost / decay / epsilon / ddp_sync:
            as in ``monai.networks.layers.EMAQuantizer``.
        restart_threshold: EMA usage count below which a code is restarted (1 in the reference code).
    """

    def __init__(
        self,
        spatial_dims: int,
        num_embeddings: int,
        embedding_dim: int,
        commitment_cost: float = 0.25,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        ddp_sync: bool = True,
        restart_threshold: float = 1.0,
    ) -> None:
        super().__init__(
            spatial_dims, num_embeddings, embedding_dim, commitment_cost, decay, epsilon, ddp_sync=ddp_sync
        )
        self.restart_threshold = restart_threshold

    @torch.no_grad()
    def restart_unused_codes(self, inputs: torch.Tensor) -> int:
        """Replace the codes used less than ``restart_threshold`` by latent vectors of ``inputs`` (B, E, *spatial).

        Returns:
            the number of restarted codes.
        """
        unused = torch.nonzero(self.ema_cluster_size < self.restart_threshold).flatten()
        if unused.numel() == 0:
            return 0
        flat = inputs.detach().float().movedim(1, -1).reshape(-1, self.embedding_dim)
        vectors = flat[torch.randint(flat.shape[0], (unused.numel(),), device=flat.device)]
        if self.ddp_sync and torch.distributed.is_initialized():
            torch.distributed.broadcast(vectors, src=0)  # every process keeps the same codebook
        self.embedding.weight.data[unused] = vectors
        self.ema_w.data[unused] = vectors * self.restart_threshold
        self.ema_cluster_size.data[unused] = self.restart_threshold
        return unused.numel()

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantise latents (B, E, *spatial): (quantised latents (B, E, *spatial), commitment loss, indices)."""
        if self.training:
            self.restart_unused_codes(inputs)
        return super().forward(inputs)


def make_vqgan_autoencoder(
    compression: int = 4,
    in_channels: int = 1,
    base_channels: int = 16,
    num_res_layers: int = 1,
    num_embeddings: int = 16384,
    embedding_dim: int = 8,
    commitment_cost: float = 0.25,
    decay: float = 0.99,
    restart_threshold: float = 1.0,
    spatial_dims: int = 3,
) -> VQVAE:
    """MONAI ``VQVAE`` that shrinks each spatial axis by ``compression``, with a :class:`RestartingEMAQuantizer`.

    An image (B, in_channels, X, Y, Z) is encoded to latents (B, embedding_dim, X/c, Y/c, Z/c) for
    c = ``compression``. Level i (of log2(c)) has ``base_channels * 2**i`` channels, a stride-2 kernel-4
    convolution and ``num_res_layers`` residual layers, as in the reference encoder (whose ``n_hiddens`` is
    ``base_channels``); the decoder mirrors it with transposed convolutions.

    Args:
        compression: downsampling factor per axis, 2, 4 or 8 (the paper found 8 loses anatomy).
        in_channels: image channels (also the decoder's output channels).
        base_channels: channels of the first level.
        num_res_layers: residual layers per level.
        num_embeddings / embedding_dim: codebook size and dimension (16,384 x 8 in the paper).
        commitment_cost / decay: commitment-loss weight and EMA decay of the codebook.
        restart_threshold: see :class:`RestartingEMAQuantizer`.
        spatial_dims: 3 for volumes (2 works for slices).

    Raises:
        ValueError: if ``compression`` is not 2, 4 or 8.
    """
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS} (downsampling per axis), got {compression!r}")
    levels = compression.bit_length() - 1
    channels = [base_channels * 2**level for level in range(levels)]
    autoencoder = VQVAE(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=in_channels,
        channels=channels,
        num_res_layers=num_res_layers,
        num_res_channels=channels,
        downsample_parameters=[(2, 4, 1, 1)] * levels,
        upsample_parameters=[(2, 4, 1, 1, 0)] * levels,
        num_embeddings=num_embeddings,
        embedding_dim=embedding_dim,
        commitment_cost=commitment_cost,
        decay=decay,
    )
    autoencoder.quantizer = VectorQuantizer(
        RestartingEMAQuantizer(
            spatial_dims, num_embeddings, embedding_dim, commitment_cost, decay, restart_threshold=restart_threshold
        )
    )
    return autoencoder
