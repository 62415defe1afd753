"""multi_gpu_train.json under ``torchrun``, 2 processes on the CPU (gloo): DDP, DistributedSampler, rank 0 writes.

Every training stage of every bundle runs with the same ``configs/multi_gpu_train.json`` of its bundle, 2 iterations;
one ``torchrun`` launch trains all the stages in turn (``torchrun_stages.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIELD_DIFFUSION_CONFIGS, LATENT_DIFFUSION_CONFIGS, REPO, bundle_config, check
from support import free_port

from common.data.fields import save_field, write_fields_datalist

TINY = {"max_iterations": 2, "preview_interval": 1000, "spatial_size": "[16,16,16]"}
#: DiffuseMorph's template: a 32³ cohort volume loads in a fraction of the time of the MNI152 template.
SMALL_TEMPLATE = {"template_path": "$@dataset_dir + '/single/images/demo_000.nii.gz'"}


def no_preparation(root: Path, cohort: Path) -> Path:
    """Nothing to prepare: the stage trains on the cohort's datalist."""
    return cohort / "datalist.json"


def autoencoder_weights(root: Path, cohort: Path) -> Path:
    """Stage 2 of Medical Diffusion encodes with stage 1's VQ-GAN: save a tiny untrained one."""
    config = bundle_config("medical_diffusion_brain_mri", "train_autoencoder.json", "tiny_cpu.json")
    (root / "models").mkdir()
    torch.save(config.get_parsed_content("autoencoder_def").state_dict(), root / "models" / "model_autoencoder.pt")
    return cohort / "datalist.json"


def exported_fields(root: Path, cohort: Path) -> Path:
    """Stage 2 of DiffuseMorph trains on the fields stage 1 exports: three random 16³ fields and their datalist."""
    folder = root / "outputs" / "registration"
    rng = np.random.default_rng(0)
    paths = [save_field(rng.normal(size=(3, 16, 16, 16)), np.eye(4), folder / f"s{i}_field.nii.gz") for i in range(3)]
    return write_fields_datalist(paths, field_scale=3.0, path=folder / "fields.json")


@dataclass(frozen=True)
class Stage:
    """One training config of a bundle, run with the bundle's ``multi_gpu_train.json``.

    Attributes:
        bundle / configs: bundle and training config files merged in order (a later stage is an overlay on the
            first stage's config).
        networks: config ids of the trained (DDP-wrapped) networks; the first is the one ``final_model`` holds.
        ckpt_dir / final_model: checkpoint folder and exported weights, relative to the bundle root.
        overrides: command-line overrides making the run tiny (2 iterations, 16³).
        prepare: writes what the stage needs besides the cohort into the bundle root; returns the datalist
            whose ``training`` items the stage trains on.
    """

    bundle: str
    configs: tuple[str, ...]
    networks: tuple[str, ...] = ("network",)
    ckpt_dir: str = "models"
    final_model: str = "models/model.pt"
    overrides: dict = field(default_factory=lambda: dict(TINY))
    prepare: Callable[[Path, Path], Path] = no_preparation


STAGES = {
    "cdpm": Stage("cdpm_brain_mri", ("train.json",)),
    "med_ddpm": Stage("med_ddpm_brain_mri", ("train.json",)),
    "medical_diffusion-autoencoder": Stage(
        "medical_diffusion_brain_mri", ("train_autoencoder.json",),
        networks=("autoencoder", "discriminator_2d", "discriminator_3d"), ckpt_dir="models/autoencoder_checkpoints",
        final_model="models/model_autoencoder.pt",
        overrides={**TINY, "adversarial_start": 0},  # discriminators train too
    ),
    "medical_diffusion-diffusion": Stage(
        "medical_diffusion_brain_mri", LATENT_DIFFUSION_CONFIGS, ckpt_dir="models/diffusion_checkpoints",
        prepare=autoencoder_weights,
    ),
    "diffusemorph-registration": Stage(
        "diffusemorph_brain_mri", ("train_registration.json",), ckpt_dir="models/registration_checkpoints",
        final_model="models/model_registration.pt",
        overrides={"max_epochs": 1, "batch_size": 1, "spatial_size": "[16,16,16]", **SMALL_TEMPLATE},
    ),
    "diffusemorph-diffusion": Stage(
        "diffusemorph_brain_mri", FIELD_DIFFUSION_CONFIGS, ckpt_dir="models/diffusion_checkpoints",
        overrides={**TINY, **SMALL_TEMPLATE}, prepare=exported_fields,
    ),
}  # fmt: skip
#: Batch-norm statistics (the VQ-GAN's discriminators) are each process's own after its last forward pass; DDP
#: broadcasts process 0's at the next one, so only those are saved and used.
PER_PROCESS_BUFFERS = ("running_mean", "running_var")


def rank_dump(networks: tuple[str, ...], last: bool) -> dict:
    """Test-only override: every process saves the weights of ``networks``, its iteration and its data indices;
    after the ``last`` stage of the launch the process group is destroyed."""
    weights = ", ".join(f"'{name}': @{name}.module.state_dict()" for name in networks)
    save = (
        f"$torch.save({{'networks': {{{weights}}}, 'iteration': @train#trainer.state.iteration,"
        " 'indices': list(@train#sampler)}, @bundle_root + f'/rank{torch.distributed.get_rank()}.pt')"
    )
    return {"finalize": [save, "$torch.distributed.destroy_process_group()"] if last else [save]}


@pytest.fixture(scope="module")
def torchrun_roots(tiny_cohort, tmp_path_factory) -> tuple[dict[str, tuple[Path, Path]], subprocess.CompletedProcess]:
    """One ``torchrun`` launch of 2 processes that trains every stage of :data:`STAGES` in turn
    (``torchrun_stages.py``: each stage is ``python -m monai.bundle run training`` with the bundle's configs,
    ``multi_gpu_train.json`` and ``tiny_cpu.json``). Returns each stage's bundle root and training datalist, and the
    launch."""
    roots, spec = {}, []
    for position, (name, stage) in enumerate(STAGES.items()):
        root = tmp_path_factory.mktemp(name)
        roots[name] = (root, stage.prepare(root, tiny_cohort))
        dump = root / "rank_dump.json"
        dump.write_text(json.dumps(rank_dump(stage.networks, last=position == len(STAGES) - 1)))
        names = [*stage.configs, "multi_gpu_train.json", "tiny_cpu.json"]
        configs = [*(f"configs/{config}" for config in names), str(dump)]
        argv = ["run", "training", "--config_file", "[" + ",".join(f"'{c}'" for c in configs) + "]"]
        argv += ["--bundle_root", str(root), "--dataset_dir", str(tiny_cohort)]
        for key, value in stage.overrides.items():
            argv += [f"--{key}", str(value)]
        spec.append({"name": name, "cwd": str(REPO / "bundles" / stage.bundle), "argv": argv})
    spec_file = tmp_path_factory.mktemp("torchrun") / "stages.json"
    spec_file.write_text(json.dumps(spec))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
        str(Path(__file__).with_name("torchrun_stages.py")), str(spec_file),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    launch = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    return roots, launch


@pytest.mark.parametrize("name", STAGES)
def test_two_processes_train_one_model(name, torchrun_roots):
    stage, (roots, launch) = STAGES[name], torchrun_roots
    tmp_path, datalist = roots[name]
    check(launch)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["iteration"] for r in ranks] == [2, 2], "both processes trained"
    training_items = len(json.loads(datalist.read_text())["training"])
    assert set(ranks[0]["indices"]) | set(ranks[1]["indices"]) == set(range(training_items)), "data split by rank"
    assert set(ranks[0]["indices"]) != set(ranks[1]["indices"]), "each process has its own share"
    for network in stage.networks:
        weights, other = ranks[0]["networks"][network], ranks[1]["networks"][network]
        assert weights.keys() == other.keys()
        for key, weight in weights.items():
            if not key.endswith(PER_PROCESS_BUFFERS):
                torch.testing.assert_close(other[key], weight, rtol=0, atol=0, msg=f"{network}.{key} differs")

    checkpoints = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("checkpoint_*.pt"))
    assert checkpoints == [Path(stage.ckpt_dir) / "checkpoint_2.pt"], "one checkpoint, written by process 0"
    checkpoint = torch.load(tmp_path / checkpoints[0], weights_only=True)
    for network in stage.networks:  # saved without the DDP "module." prefix
        torch.testing.assert_close(checkpoint[network], ranks[0]["networks"][network], rtol=0, atol=0)
    final = torch.load(tmp_path / stage.final_model, weights_only=True)
    assert final.keys() == ranks[0]["networks"][stage.networks[0]].keys()
    assert not [p for p in tmp_path.rglob("tmp*") if p.is_file()], "no temporary file of Ignite's DiskSaver left"
    assert len(list(tmp_path.rglob("events.out.tfevents.*"))) == 1, "one TensorBoard event file, process 0's"
