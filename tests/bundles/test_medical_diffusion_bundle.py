"""Smoke tests of the Medical Diffusion bundle through ``python -m monai.bundle run`` on a tiny demo cohort.

Stage 1 (VQ-GAN) and stage 2 (latent DDPM) are trained by ``conftest.py`` on 32x32x16 volumes, 4 iterations each
and resumed to 6 (what each writes: test_bundle_training.py); the adversarial losses start after iteration 2, so
both the plain and the adversarial iteration run. Here: what is particular to the two stages, and inference.
"""

from __future__ import annotations

import torch
from conftest import TrainedBundle, check, check_generated_batch, run_bundle
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

BUNDLE = "medical_diffusion_brain_mri"


def test_discriminators_train_once_the_adversarial_losses_start(medical_diffusion_trained: TrainedBundle):
    events = EventAccumulator(str(medical_diffusion_trained.root / "eval" / "autoencoder")).Reload()
    discriminator = [event.value for event in events.Scalars("discriminator")]
    assert discriminator[:2] == [0.0, 0.0] and all(value > 0 for value in discriminator[2:])  # starts after 2


def test_diffusion_training_keeps_the_autoencoder(medical_diffusion_trained: TrainedBundle):
    before = medical_diffusion_trained.extra["autoencoder_weights"]
    after = torch.load(medical_diffusion_trained.root / "models" / "model_autoencoder.pt", weights_only=True)
    assert after.keys() == before.keys()
    assert all(torch.equal(after[name], value) for name, value in before.items())


def test_inference_writes_a_batch_of_volumes_with_affine_and_previews(medical_diffusion_trained, tmp_path):
    out = tmp_path / "generated"
    result = run_bundle(
        BUNDLE, None, ["inference.json", "tiny_cpu.json"], new_process=True,
        bundle_root=medical_diffusion_trained.root, output_dir=out, num_volumes=3, batch_size=2, seed=0,
    )  # fmt: skip
    check(result)
    assert "it/s" in result.stderr or "s/it" in result.stderr  # the sampling progress bar
    check_generated_batch(out, "medical_diffusion", (32, 32, 16), (1.5, 1.5, 1.5))
