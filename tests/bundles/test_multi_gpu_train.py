"""multi_gpu_train.json under ``torchrun``, 2 processes on the CPU (gloo): DDP, DistributedSampler, rank 0 writes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, check

BUNDLES = ["cdpm_brain_mri", "med_ddpm_brain_mri"]
CONFIGS = ["configs/train.json", "configs/multi_gpu_train.json", "configs/tiny_cpu.json"]
#: Test-only override: every process saves its final network weights, iteration and data indices before the
#: process group is destroyed.
RANK_DUMP = {
    "finalize": [
        "$torch.save({'network': @network.module.state_dict(), 'iteration': @train#trainer.state.iteration,"
        " 'indices': list(@train#sampler)}, @bundle_root + f'/rank{torch.distributed.get_rank()}.pt')",
        "$torch.distributed.destroy_process_group()",
    ]
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_training(bundle: str, root: Path, dataset_dir: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    dump = root / "rank_dump.json"
    dump.write_text(json.dumps(RANK_DUMP))
    files = "[" + ",".join(f"'{name}'" for name in [*CONFIGS, str(dump)]) + "]"
    command = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={free_port()}",
        "-m", "monai.bundle", "run", "training", "--config_file", files, "--bundle_root", str(root),
        "--dataset_dir", str(dataset_dir), "--max_iterations", "2", "--preview_interval", "1000",
        "--spatial_size", "[16,16,16]",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=REPO / "bundles" / bundle, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_two_processes_train_one_model(bundle, tiny_cohort, tmp_path: Path):
    check(torchrun_training(bundle, tmp_path, tiny_cohort))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["iteration"] for r in ranks] == [2, 2], "both processes trained"
    training_items = len(json.loads((tiny_cohort / "datalist.json").read_text())["training"])
    assert set(ranks[0]["indices"]) | set(ranks[1]["indices"]) == set(range(training_items)), "data split by rank"
    assert ranks[0]["network"].keys() == ranks[1]["network"].keys()
    for name, weight in ranks[0]["network"].items():
        torch.testing.assert_close(ranks[1]["network"][name], weight, rtol=0, atol=0, msg=f"{name} differs")

    assert sorted(p.name for p in (tmp_path / "models").glob("checkpoint_*.pt")) == ["checkpoint_2.pt"]
    checkpoint = torch.load(tmp_path / "models" / "checkpoint_2.pt", weights_only=True)
    assert checkpoint["network"].keys() == ranks[0]["network"].keys(), "saved without the DDP 'module.' prefix"
    torch.testing.assert_close(checkpoint["network"], ranks[0]["network"], rtol=0, atol=0)
    assert torch.load(tmp_path / "models" / "model.pt", weights_only=True).keys() == ranks[0]["network"].keys()
    assert not list(tmp_path.rglob("*.tmp")), "no partial checkpoint left"
