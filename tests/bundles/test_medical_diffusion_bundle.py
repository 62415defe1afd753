"""Smoke tests of the Medical Diffusion bundle through ``python -m monai.bundle run`` on a tiny demo cohort.

Stage 1 (VQ-GAN) and stage 2 (latent DDPM) each train 4 iterations and resume to 6 on 32x32x16 volumes; the
adversarial losses start after iteration 2, so both the plain and the adversarial iteration run.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import check, run_bundle
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from common.data import centred_affine

BUNDLE = "medical_diffusion_brain_mri"


def train_stage(config: str, root, dataset_dir) -> dict:
    """Train ``config`` + tiny_cpu.json 4 iterations, then resume to 6: both runs' outputs."""
    configs = [config, "tiny_cpu.json"]
    runs = {}
    for iterations in (4, 6):
        runs[iterations] = check(
            run_bundle(
                BUNDLE, "training", configs, bundle_root=root, dataset_dir=dataset_dir, max_iterations=iterations
            )
        )
    return runs


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_cohort) -> dict:
    root = tmp_path_factory.mktemp("medical_diffusion")
    autoencoder_runs = train_stage("train_autoencoder.json", root, tiny_cohort)
    autoencoder_weights = torch.load(root / "models" / "model_autoencoder.pt", weights_only=True)
    diffusion_runs = train_stage("train_diffusion.json", root, tiny_cohort)
    return {"root": root, "autoencoder": autoencoder_runs, "diffusion": diffusion_runs, "weights": autoencoder_weights}


@pytest.mark.parametrize(
    ("stage", "folder", "objects"),
    [
        ("autoencoder", "autoencoder_checkpoints",
         {"autoencoder", "discriminator_2d", "discriminator_3d", "optimizer", "discriminator_optimizer", "trainer"}),
        ("diffusion", "diffusion_checkpoints", {"network", "ema", "optimizer", "trainer"}),
    ],
)  # fmt: skip
def test_each_stage_resumes_from_its_own_checkpoints(trained, stage, folder, objects):
    checkpoints = trained["root"] / "models" / folder
    log = trained[stage][6].stdout + trained[stage][6].stderr
    assert f"{checkpoints}/checkpoint_4.pt at iteration 4" in log
    assert sorted(p.name for p in checkpoints.glob("*.pt")) == ["checkpoint_4.pt", "checkpoint_6.pt"]
    state = torch.load(checkpoints / "checkpoint_6.pt", weights_only=True)
    assert set(state) == objects and state["trainer"]["iteration"] == 6


def test_autoencoder_training_logs_every_loss_and_exports_the_vqvae(trained):
    root = trained["root"]
    weights = trained["weights"]
    assert weights["quantizer.quantizer.embedding.weight"].shape == (64, 8)  # tiny codebook of 64 codes x 8
    events = EventAccumulator(str(root / "eval" / "autoencoder")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss", "l1", "commitment", "adversarial", "feature_matching", "discriminator"} <= tags
    discriminator = [event.value for event in events.Scalars("discriminator")]
    assert discriminator[:2] == [0.0, 0.0] and all(value > 0 for value in discriminator[2:])  # starts after 2


def test_diffusion_training_keeps_the_autoencoder_and_writes_previews(trained):
    root = trained["root"]
    after = torch.load(root / "models" / "model_autoencoder.pt", weights_only=True)
    assert all(torch.equal(after[name], value) for name, value in trained["weights"].items())
    weights = torch.load(root / "models" / "model.pt", weights_only=True)
    assert weights["unet.conv_in.conv.weight"].shape[1] == 8  # the EMA network denoises 8-channel latents
    assert {p.name for p in (root / "eval" / "previews").glob("*.png")} >= {"iteration_0000002.png"}
    assert list((root / "eval" / "diffusion").glob("events.out.tfevents.*"))


def test_inference_writes_a_batch_of_volumes_with_affine_and_previews(trained, tmp_path):
    out = tmp_path / "generated"
    result = run_bundle(
        BUNDLE, None, ["inference.json", "tiny_cpu.json"], bundle_root=trained["root"], output_dir=out,
        num_volumes=3, batch_size=2, seed=0,
    )  # fmt: skip
    check(result)
    assert "it/s" in result.stderr or "s/it" in result.stderr  # the sampling progress bar
    records = json.loads((out / "outputs.json").read_text())
    assert [r["sample_index"] for r in records] == [0, 1, 2]
    volumes = []
    for record in records:
        image = nib.load(record["t1"])
        assert image.shape == (32, 32, 16)
        np.testing.assert_allclose(image.affine, centred_affine((32, 32, 16), (1.5, 1.5, 1.5)))
        data = image.get_fdata()
        assert np.isfinite(data).all() and data.min() >= 0 and data.max() <= 1
        assert record["preview"].endswith(f"medical_diffusion_sample{record['sample_index']:02d}.png")
        volumes.append(data)
    assert (out / "preview.png").is_file()
    assert not np.allclose(volumes[0], volumes[1]), "two volumes of one batch should differ"
