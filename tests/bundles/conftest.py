"""Fixtures for bundle smoke tests: a tiny demo cohort, the bundles trained on it once per session, and a helper
that runs ``python -m monai.bundle run``, in a new process or, much faster, in this one."""

from __future__ import annotations

import copy
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from support import monai_bundle

from common.data import build_demo_cohort, centred_affine

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    """Four synthetic 32³ subjects (two with a tumour), in both the single-modality and the BraTS layout."""
    return build_demo_cohort(tmp_path_factory.mktemp("cohort"), num_subjects=4, size=32, seed=0, tumour_fraction=0.5)


def run_bundle(
    bundle: str, run_id: str | None, configs: list[str], new_process: bool = False, **overrides
) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run [run_id] --config_file [...] --key value ...`` from the bundle folder, in this
    process unless ``new_process`` (:func:`support.monai_bundle`)."""
    files = "[" + ",".join(f"'configs/{name}'" for name in configs) + "]"
    argv = ["run", *([run_id] if run_id else []), "--config_file", files]
    for key, value in overrides.items():
        argv += [f"--{key}", str(value)]
    return monai_bundle(argv, REPO / "bundles" / bundle, new_process=new_process)


def check(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """Fail with the command's output when it did not succeed."""
    assert result.returncode == 0, (
        f"exit {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-6000:]}"
    )
    return result


#: Stage 2 of Medical Diffusion and of DiffuseMorph is an overlay merged after stage 1's config (the model zoo's list
#: form, as the bundles' READMEs give it).
LATENT_DIFFUSION_CONFIGS = ("train_autoencoder.json", "train_diffusion.json")
FIELD_DIFFUSION_CONFIGS = ("train_registration.json", "train_diffusion.json")


def bundle_config(bundle: str, *names: str) -> ConfigParser:
    """The bundle's config files ``names`` merged in order, on the CPU, unparsed."""
    parser = ConfigParser()
    parser.read_config([str(REPO / "bundles" / bundle / "configs" / name) for name in names])
    parser["device"] = "$torch.device('cpu')"
    return parser


def on_meta(parser: ConfigParser, id: str):
    """``parser``'s network ``id`` built on the meta device: shapes and parameter counts without allocating or
    initialising the weights of a paper-size network. Parsed from a copy of ``parser`` whose ``device`` is the meta
    device too (the configs' ``.to(@device)``), so nothing built on it is cached in ``parser``. Never for what
    tensors' values are checked of (noise schedulers, ...)."""
    meta = ConfigParser(copy.deepcopy(parser.get()))
    meta["device"] = "$torch.device('meta')"
    with torch.device("meta"):
        return meta.get_parsed_content(id)


# Every training stage of every bundle, trained once per session on the tiny cohort (in this process: the real
# `python -m monai.bundle run training` processes are tests/bundles/test_multi_gpu_train.py's torchrun runs). The
# table of tests/bundles/test_bundle_training.py checks what each stage writes; the bundles' own test files run
# their inference on these bundle roots.


@dataclass(frozen=True)
class Training:
    """A training stage run to 4 iterations, then again to 6 (resuming from ``checkpoint_4.pt``).

    Attributes:
        first / second: the two runs.
        checkpoints_after_first: the ``checkpoint_*.pt`` names in the stage's checkpoint folder after the first run.
    """

    first: subprocess.CompletedProcess
    second: subprocess.CompletedProcess
    checkpoints_after_first: list[str]


def train_then_resume(
    bundle: str,
    configs: list[str],
    root: Path,
    ckpt_dir: str = "models",
    limit: tuple[str, int, int] = ("max_iterations", 4, 6),
    **overrides,
) -> Training:
    """``python -m monai.bundle run training`` of ``configs`` in this process into bundle root ``root``: to 4
    iterations, then again to 6, resuming (``limit``: the override and its two values, e.g. ``max_epochs`` for a
    trainer that counts epochs)."""
    key, first, second = limit

    def train(value: int) -> subprocess.CompletedProcess:
        return check(run_bundle(bundle, "training", configs, bundle_root=root, **overrides, **{key: value}))

    first_run = train(first)
    checkpoints = sorted(p.name for p in (root / ckpt_dir).glob("checkpoint_*.pt"))
    return Training(first_run, train(second), checkpoints)


@dataclass(frozen=True)
class TrainedBundle:
    """A bundle root whose every training stage ran (:func:`train_then_resume`).

    Attributes:
        root: the bundle root (``models/``, ``eval/``, ...).
        stages: each stage's runs, by its training config file.
        extra: what the bundle's own tests need besides (e.g. weights between stages, the field export's run).
    """

    root: Path
    stages: dict[str, Training]
    extra: dict


@pytest.fixture(scope="session")
def cdpm_trained(tmp_path_factory, tiny_cohort) -> TrainedBundle:
    root = tmp_path_factory.mktemp("cdpm")
    training = train_then_resume("cdpm_brain_mri", ["train.json", "tiny_cpu.json"], root, dataset_dir=tiny_cohort)
    return TrainedBundle(root, {"train.json": training}, {})


@pytest.fixture(scope="session")
def med_ddpm_trained(tmp_path_factory, tiny_cohort) -> TrainedBundle:
    """Trained on 16³ crops (5 times faster than the cohort's 32³; the U-Net is fully convolutional, so inference
    runs on the 32³ masks with these weights)."""
    root = tmp_path_factory.mktemp("med_ddpm")
    training = train_then_resume(
        "med_ddpm_brain_mri", ["train.json", "tiny_cpu.json"], root, dataset_dir=tiny_cohort, spatial_size="[16,16,16]"
    )
    return TrainedBundle(root, {"train.json": training}, {})


@pytest.fixture(scope="session")
def medical_diffusion_trained(tmp_path_factory, tiny_cohort) -> TrainedBundle:
    """Stage 1 (VQ-GAN; the adversarial losses start after iteration 2, so both the plain and the adversarial
    iteration run), then stage 2 (latent DDPM). ``extra["autoencoder_weights"]``: the VQ-GAN after stage 1."""
    bundle, root = "medical_diffusion_brain_mri", tmp_path_factory.mktemp("medical_diffusion")
    autoencoder = train_then_resume(
        bundle, ["train_autoencoder.json", "tiny_cpu.json"], root, "models/autoencoder_checkpoints",
        dataset_dir=tiny_cohort,
    )  # fmt: skip
    weights = torch.load(root / "models" / "model_autoencoder.pt", weights_only=True)
    diffusion = train_then_resume(
        bundle, [*LATENT_DIFFUSION_CONFIGS, "tiny_cpu.json"], root, "models/diffusion_checkpoints",
        dataset_dir=tiny_cohort,
    )  # fmt: skip
    stages = {"train_autoencoder.json": autoencoder, "train_diffusion.json": diffusion}
    return TrainedBundle(root, stages, {"autoencoder_weights": weights})


@pytest.fixture(scope="session")
def diffusemorph_trained(tmp_path_factory, tiny_cohort) -> TrainedBundle:
    """Stage 1 (registration, counted in epochs: 3 training subjects in batches of 2 make 2 iterations an epoch),
    the field export, then stage 2 (the field DDPM on the exported fields). ``extra["export"]``: the export's run,
    the real ``python -m monai.bundle run`` command in a new process."""
    bundle, root = "diffusemorph_brain_mri", tmp_path_factory.mktemp("diffusemorph")
    registration = train_then_resume(
        bundle, ["train_registration.json", "tiny_cpu.json"], root, "models/registration_checkpoints",
        limit=("max_epochs", 2, 3), dataset_dir=tiny_cohort,
    )  # fmt: skip
    export = check(
        run_bundle(
            bundle, None, ["train_registration.json", "export_fields.json", "tiny_cpu.json"], new_process=True,
            bundle_root=root, dataset_dir=tiny_cohort, trajectory_steps=3,
        )
    )  # fmt: skip
    diffusion = train_then_resume(
        bundle, [*FIELD_DIFFUSION_CONFIGS, "tiny_cpu.json"], root, "models/diffusion_checkpoints"
    )
    stages = {"train_registration.json": registration, "train_diffusion.json": diffusion}
    return TrainedBundle(root, stages, {"export": export})


def check_generated_batch(out: Path, prefix: str, shape: tuple[int, ...], spacing: tuple[float, ...]) -> list:
    """The unconditional outputs of an inference run with ``num_volumes=3, batch_size=2`` in ``out``: three records
    in order, each a T1 volume of ``shape`` with the centred affine of ``spacing``, finite and in [0, 1], with its
    ``<prefix>_sample<k>.png`` preview; the run's ``preview.png``; two volumes of one batch that differ.

    Returns:
        the volumes, as arrays.
    """
    records = json.loads((out / "outputs.json").read_text())
    assert [r["sample_index"] for r in records] == [0, 1, 2]
    volumes = []
    for record in records:
        image = nib.load(record["t1"])
        assert image.shape == shape
        np.testing.assert_allclose(image.affine, centred_affine(shape, spacing))
        data = image.get_fdata()
        assert np.isfinite(data).all() and data.min() >= 0 and data.max() <= 1
        assert record["preview"].endswith(f"{prefix}_sample{record['sample_index']:02d}.png")
        volumes.append(data)
    assert (out / "preview.png").is_file()
    assert not np.allclose(volumes[0], volumes[1]), "two volumes of one batch should differ"
    return volumes
