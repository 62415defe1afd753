"""Every training stage of every bundle, through ``python -m monai.bundle run training`` on the tiny demo cohort.

Each stage trains 4 iterations (DiffuseMorph's registration: 2 epochs of 2 iterations), then runs again to 6,
resuming from ``checkpoint_4.pt`` (the session fixtures of ``conftest.py``, which the bundles' own test files share
for their inference). One table row per stage says what it must write; every bundle's inference must name the file
it cannot load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import TrainedBundle, run_bundle
from support import untrained_bundle
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from common.bundle_runner import inference_files


def slice_attention_unet(weights: dict, root: Path) -> None:
    assert any("slice_attention.relative_keys" in name for name in weights)  # cDPM's EMA slice-attention U-Net


def plain_unet_state_dict(weights: dict, root: Path) -> None:
    assert "conv_in.conv.weight" in weights  # a plain state dict of the U-Net (the EMA weights)


def tiny_vqvae(weights: dict, root: Path) -> None:
    assert weights["quantizer.quantizer.embedding.weight"].shape == (64, 8)  # tiny codebook of 64 codes x 8


def latent_unet(weights: dict, root: Path) -> None:
    assert weights["unet.conv_in.conv.weight"].shape[1] == 8  # the EMA network denoises 8-channel latents


def score_and_deformation_networks(weights: dict, root: Path) -> None:
    assert {name.split(".")[0] for name in weights} == {"score_network", "deformation_network"}


def field_unet_beside_registration(weights: dict, root: Path) -> None:
    assert weights["unet.conv_in.conv.weight"].shape[1] == 3  # the EMA network denoises 3-channel fields
    assert (root / "models" / "model_registration.pt").is_file(), "stage 1's weights are kept"


@dataclass(frozen=True)
class Stage:
    """One training config of a bundle, trained by the session fixture ``trained`` (``conftest.py``).

    Attributes:
        trained: the fixture that trains the bundle's stages.
        config: the stage's training config file.
        ckpt_dir / final_model: checkpoint folder and exported weights, relative to the bundle root.
        exported: checks the exported weights (a state dict) of the bundle root.
        objects: what a checkpoint holds.
        log_dir: the TensorBoard folder, relative to the bundle root.
        scalars: TensorBoard scalars each run logs (the loss and its parts).
        previews: folder of the sample previews written every 2 iterations, or ``None`` for a stage without.
    """

    trained: str
    config: str
    exported: Callable[[dict, Path], None]
    objects: frozenset[str]
    ckpt_dir: str = "models"
    final_model: str = "models/model.pt"
    log_dir: str = "eval"
    scalars: frozenset[str] = frozenset({"train_loss"})
    previews: str | None = None


DIFFUSION_OBJECTS = frozenset({"network", "ema", "optimizer", "trainer"})
STAGES = {
    "cdpm": Stage(
        "cdpm_trained", "train.json", slice_attention_unet, DIFFUSION_OBJECTS, previews="eval/previews",
    ),
    "med_ddpm": Stage(
        "med_ddpm_trained", "train.json", plain_unet_state_dict, DIFFUSION_OBJECTS | {"lr_scheduler"},
        previews="eval/previews",
    ),
    "medical_diffusion-autoencoder": Stage(
        "medical_diffusion_trained", "train_autoencoder.json", tiny_vqvae,
        frozenset({"autoencoder", "discriminator_2d", "discriminator_3d", "optimizer", "discriminator_optimizer",
                   "trainer"}),
        ckpt_dir="models/autoencoder_checkpoints", final_model="models/model_autoencoder.pt",
        log_dir="eval/autoencoder",
        scalars=frozenset({"loss", "l1", "commitment", "adversarial", "feature_matching", "discriminator"}),
    ),
    "medical_diffusion-diffusion": Stage(
        "medical_diffusion_trained", "train_diffusion.json", latent_unet, DIFFUSION_OBJECTS,
        ckpt_dir="models/diffusion_checkpoints", log_dir="eval/diffusion", previews="eval/previews",
    ),
    "diffusemorph-registration": Stage(
        "diffusemorph_trained", "train_registration.json", score_and_deformation_networks,
        frozenset({"network", "optimizer", "trainer"}), ckpt_dir="models/registration_checkpoints",
        final_model="models/model_registration.pt", log_dir="eval/registration",
        scalars=frozenset({"loss", "diffusion_loss", "similarity_loss", "smoothness_loss"}),
    ),
    "diffusemorph-diffusion": Stage(
        "diffusemorph_trained", "train_diffusion.json", field_unet_beside_registration, DIFFUSION_OBJECTS,
        ckpt_dir="models/diffusion_checkpoints", log_dir="eval/diffusion", previews="eval/diffusion/previews",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", STAGES)
def test_training_checkpoints_logs_exports_and_resumes(name, request):
    stage = STAGES[name]
    trained: TrainedBundle = request.getfixturevalue(stage.trained)
    root, runs = trained.root, trained.stages[stage.config]
    ckpt_dir, final_model = root / stage.ckpt_dir, root / stage.final_model

    # the first run: checkpoints every 2 iterations, TensorBoard log, exported weights
    assert runs.checkpoints_after_first == ["checkpoint_2.pt", "checkpoint_4.pt"]
    logs = sorted((root / stage.log_dir).glob("events.out.tfevents.*"))
    assert logs, "no TensorBoard log"
    for events in logs:  # one a run
        assert stage.scalars <= set(EventAccumulator(str(events)).Reload().Tags()["scalars"])
    stage.exported(torch.load(final_model, weights_only=True), root)
    if stage.previews:
        previews = sorted(p.name for p in (root / stage.previews).glob("*.png"))
        assert previews == ["iteration_0000002.png", "iteration_0000004.png", "iteration_0000006.png"]

    # the second run resumes from the newest checkpoint and keeps the last two
    log = runs.second.stdout + runs.second.stderr
    assert f"resumed from {ckpt_dir}/checkpoint_4.pt at iteration 4" in log
    exported_here = {final_model.name} if final_model.parent == ckpt_dir else set()
    assert {p.name for p in ckpt_dir.glob("*.pt")} == {"checkpoint_4.pt", "checkpoint_6.pt"} | exported_here
    state = torch.load(ckpt_dir / "checkpoint_6.pt", weights_only=True)
    assert set(state) == stage.objects and state["trainer"]["iteration"] == 6
    for optimizer in {"optimizer", "discriminator_optimizer"} & stage.objects:
        assert state[optimizer]["state"], f"the {optimizer}'s moments are checkpointed"
    if "lr_scheduler" in stage.objects:
        assert state["lr_scheduler"]["last_epoch"] == 6  # the LR schedule is stepped per iteration and restored


#: What each bundle's inference loads (tiny CPU networks), under its models/.
INFERENCE_FILES = {
    "cdpm_brain_mri": ["model.pt"],
    "med_ddpm_brain_mri": ["model.pt"],
    "medical_diffusion_brain_mri": ["model.pt", "model_autoencoder.pt"],
    "diffusemorph_brain_mri": ["model.pt", "field_scale.json"],
}


@pytest.mark.parametrize(
    ("bundle", "missing"), [(bundle, name) for bundle, names in INFERENCE_FILES.items() for name in names]
)
def test_inference_without_weights_names_the_missing_file(bundle, missing, tiny_cohort, tmp_path):
    tiny = ["inference.json", "tiny_cpu.json"]
    assert [p.name for p in inference_files(bundle, tiny)] == INFERENCE_FILES[bundle]
    root = untrained_bundle(bundle, tmp_path)  # every other file there
    (root / "models" / missing).unlink()
    result = run_bundle(bundle, None, tiny, bundle_root=root, dataset_dir=tiny_cohort)
    assert result.returncode != 0
    assert f"{root}/models/{missing}" in result.stderr
