"""Medical Diffusion's latent space: codebook min-max normalisation, re-quantised decoding, latent sampling."""

from __future__ import annotations

import pytest
import torch

from common.diffusion import LatentDiffusionSampler, VQLatentCodec, make_noise_scheduler
from common.engines import LatentDiffusionPrepareBatch
from common.networks import FactorisedDiffusionUNet, make_vqgan_autoencoder


@pytest.fixture
def codec() -> VQLatentCodec:
    """A codec over a tiny compression-4 autoencoder whose codebook spans [-3, 2]."""
    torch.manual_seed(0)
    autoencoder = make_vqgan_autoencoder(4, base_channels=4, num_embeddings=32, embedding_dim=4)
    codebook = autoencoder.quantizer.quantizer.embedding.weight
    codebook.data.uniform_(-2.5, 1.5)
    codebook.data[0, 0], codebook.data[1, 2] = -3.0, 2.0
    return VQLatentCodec(autoencoder)


def test_normalisation_maps_the_codebook_range_to_minus_one_one_and_round_trips(codec):
    low, high = codec.codebook_range()
    assert (low.item(), high.item()) == (-3.0, 2.0)
    latents = torch.randn(2, 4, 4, 4, 2) * 2
    torch.testing.assert_close(codec.denormalise(codec.normalise(latents)), latents)
    torch.testing.assert_close(codec.normalise(torch.tensor([-3.0, 2.0])), torch.tensor([-1.0, 1.0]))
    encoded = codec.encode(torch.randn(2, 1, 16, 16, 8))
    assert encoded.shape == (2, 4, 4, 4, 2) and not encoded.requires_grad


def test_decode_quantises_with_the_codebook(codec):
    codebook = codec.autoencoder.quantizer.quantizer.embedding.weight
    indices = torch.randint(32, (1, 4, 4, 2))
    codes = codebook[indices].permute(0, 4, 1, 2, 3)  # (1, E, 4, 4, 2): every latent vector a codebook entry
    quantised, _ = codec.autoencoder.quantize(codec.denormalise(codec.normalise(codes)))
    torch.testing.assert_close(quantised, codes)
    noisy = codec.normalise(codes) + 1e-4 * torch.randn_like(codes)  # re-quantisation removes small deviations
    torch.testing.assert_close(codec.decode(noisy), codec.autoencoder.decode(codes))


def test_codec_keeps_the_autoencoder_frozen(codec):
    codec.train()
    assert not codec.autoencoder.training
    before = codec.autoencoder.quantizer.quantizer.embedding.weight.clone()
    codec.encode(torch.randn(1, 1, 16, 16, 8))
    codec.decode(torch.randn(1, 4, 4, 4, 2))
    torch.testing.assert_close(codec.autoencoder.quantizer.quantizer.embedding.weight, before, atol=0, rtol=0)
    assert not any(p.requires_grad for p in codec.parameters())


def test_missing_weights_name_the_file_and_the_first_stage(tmp_path):
    autoencoder = make_vqgan_autoencoder(4, base_channels=4, num_embeddings=8)
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}/autoencoder.pt.*train_autoencoder.json"):
        VQLatentCodec(autoencoder, tmp_path / "autoencoder.pt")


def test_weights_are_loaded(codec, tmp_path):
    torch.save(codec.autoencoder.state_dict(), tmp_path / "autoencoder.pt")
    loaded = VQLatentCodec(
        make_vqgan_autoencoder(4, base_channels=4, num_embeddings=32, embedding_dim=4), tmp_path / "autoencoder.pt"
    )
    torch.testing.assert_close(loaded.codebook_range(), codec.codebook_range())


def test_latent_sampler_generates_a_batch_of_decoded_volumes(codec):
    network = FactorisedDiffusionUNet(
        4, 4, channels=(8, 16), attention_levels=(False, True), num_res_blocks=1, num_head_channels=8,
        norm_num_groups=4, max_distance=1,
    ).eval()  # fmt: skip
    scheduler = make_noise_scheduler("ddim", num_train_timesteps=10, num_inference_steps=2)
    sampler = LatentDiffusionSampler(scheduler, codec, latent_size=(4, 4, 2), latent_channels=4, seed=0, verbose=False)
    images = sampler(torch.arange(3), network)
    assert images.shape == (3, 1, 16, 16, 8)
    assert images.min() >= -1 and images.max() <= 1
    assert not torch.equal(images[0], images[1])


def test_prepare_batch_trains_on_normalised_latents(codec):
    images = torch.randn(2, 1, 16, 16, 8)
    latents, target, args, kwargs = LatentDiffusionPrepareBatch(codec, num_train_timesteps=10)({"image": images})
    torch.testing.assert_close(latents, codec.encode(images))
    assert target.shape == latents.shape and torch.equal(kwargs["noise"], target) and args == ()
    assert kwargs["timesteps"].shape == (2,) and kwargs["timesteps"].max() < 10
