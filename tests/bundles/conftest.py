"""Fixtures for bundle smoke tests: a tiny demo cohort and a helper that runs ``python -m monai.bundle run``, in a
new process or, much faster, in this one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from monai.bundle import ConfigParser
from support import monai_bundle

from common.data import build_demo_cohort

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


def bundle_config(bundle: str, *names: str) -> ConfigParser:
    """The bundle's config files ``names`` merged in order, on the CPU, unparsed."""
    parser = ConfigParser()
    parser.read_config([str(REPO / "bundles" / bundle / "configs" / name) for name in names])
    parser["device"] = "$torch.device('cpu')"
    return parser


def train_then_resume(bundle: str, configs: list[str], root: Path, dataset_dir: Path) -> dict:
    """Train 4 iterations with ``python -m monai.bundle run training`` (a new process: the command users type), then
    run again to 6 in this process (resuming): the bundle root, both runs and the first checkpoints."""
    first = check(
        run_bundle(
            bundle, "training", configs, new_process=True, bundle_root=root, dataset_dir=dataset_dir, max_iterations=4
        )
    )
    checkpoints_after_first = sorted(p.name for p in (root / "models").glob("checkpoint_*.pt"))
    second = check(run_bundle(bundle, "training", configs, bundle_root=root, dataset_dir=dataset_dir, max_iterations=6))
    return {"root": root, "first": first, "second": second, "checkpoints_after_first": checkpoints_after_first}
