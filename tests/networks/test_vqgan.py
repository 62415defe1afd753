"""The VQ-GAN autoencoder: EMA codebook updates and restarts, and the compression factory."""

from __future__ import annotations

import pytest
import torch

from common.networks import RestartingEMAQuantizer, make_vqgan_autoencoder


def quantizer_with_codes(codes: torch.Tensor, count: float = 5.0) -> RestartingEMAQuantizer:
    """A training-mode quantizer whose codes (K, E) are in use (EMA count ``count``), so none restarts."""
    quantizer = RestartingEMAQuantizer(spatial_dims=3, num_embeddings=codes.shape[0], embedding_dim=codes.shape[1])
    quantizer.embedding.weight.data.copy_(codes)
    quantizer.ema_cluster_size.fill_(count)
    quantizer.ema_w.data.copy_(codes * count)
    return quantizer.train()


def test_ema_update_moves_the_assigned_code_toward_its_latents():
    torch.manual_seed(0)
    codes = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-1.0, 1.0]])
    quantizer = quantizer_with_codes(codes)
    target = torch.tensor([0.8, 0.6])
    latents = target.view(1, 2, 1, 1, 1) + 0.01 * torch.randn(2, 2, 4, 4, 4)  # all nearest to code 1
    _, loss, indices = quantizer(latents)
    assert (indices == 1).all() and loss > 0
    updated = quantizer.embedding.weight
    assert (updated[1] - target).norm() < (codes[1] - target).norm() - 0.05
    torch.testing.assert_close(updated[[0, 2]], codes[[0, 2]], atol=1e-3, rtol=0)  # unassigned codes stay put


def test_unused_codes_restart_at_latents_so_the_codebook_stays_in_the_latent_range():
    torch.manual_seed(0)
    quantizer = RestartingEMAQuantizer(spatial_dims=3, num_embeddings=256, embedding_dim=4).train()
    for _ in range(3):
        latents = torch.rand(2, 4, 4, 4, 4) * 2 - 1  # 128 latents for 256 codes: many codes stay unused
        quantizer(latents)
        codebook = quantizer.embedding.weight
        assert codebook.min() >= -1.01 and codebook.max() <= 1.01, "an unused code left the latents' range"
    assert quantizer.restart_unused_codes(latents) > 0  # codes no latent chose are drawn again from the latents
    assert quantizer.embedding.weight.abs().max() <= 1.0


def test_evaluation_mode_leaves_the_codebook_alone():
    quantizer = quantizer_with_codes(torch.randn(8, 3)).eval()
    before = quantizer.embedding.weight.clone()
    quantizer(torch.randn(1, 3, 2, 2, 2) * 5)
    torch.testing.assert_close(quantizer.embedding.weight, before, atol=0, rtol=0)


@pytest.mark.parametrize("compression", [2, 4, 8])
def test_encode_decode_shapes_for_each_compression(compression):
    autoencoder = make_vqgan_autoencoder(compression, base_channels=4, num_embeddings=16, embedding_dim=8)
    images = torch.randn(2, 1, 32, 32, 16)
    latents = autoencoder.encode(images)
    assert latents.shape == (2, 8, 32 // compression, 32 // compression, 16 // compression)
    reconstruction, commitment = autoencoder(images)
    assert reconstruction.shape == images.shape and commitment.ndim == 0
    assert isinstance(autoencoder.quantizer.quantizer, RestartingEMAQuantizer)
    assert len(autoencoder.encoder.channels) == compression.bit_length() - 1  # one stride-2 level per halving


def test_rejects_an_unsupported_compression():
    with pytest.raises(ValueError, match=r"compression must be one of \(2, 4, 8\)"):
        make_vqgan_autoencoder(16)
