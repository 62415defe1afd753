"""benchmarks/suite.py runs every bundle's stages from their configs and prints one table (tiny sizes, CPU).

Speed is not tested here: the suite prints figures (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SUITE = Path(__file__).resolve().parents[1] / "benchmarks" / "suite.py"
STAGES = [
    "med_ddpm", "cdpm", "medical_diffusion_vqgan", "medical_diffusion_latent", "diffusemorph_registration",
    "diffusemorph_fields",
]  # fmt: skip
GENERATING = {"med_ddpm", "cdpm", "medical_diffusion_latent", "diffusemorph_fields"}


def run_suite(*args: str) -> str:
    command = [sys.executable, str(SUITE), "--device", "cpu", "--size", "tiny", "--threads", "2", *args]
    env = os.environ | {"OMP_WAIT_POLICY": "PASSIVE", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def test_suite_measures_every_stage_of_every_bundle():
    """One short pass (1 iteration, 1 call, generations extrapolated): every stage trains and samples."""
    report = json.loads(run_suite("--repeats", "1", "--calls", "1", "--max-generation-seconds", "0", "--json"))
    assert list(report["results"]) == STAGES
    for name, row in report["results"].items():
        assert "error" not in row, (name, row["error"])
        assert row["train_s"] > 0 and row["sample_s"] > 0 and row["train_peak_mib"] > 0 and row["parameters"] > 0
        assert ("generate_full" in row) == ("generate_fast" in row) == (name in GENERATING)
    full, fast = report["results"]["med_ddpm"]["generate_full"], report["results"]["med_ddpm"]["generate_fast"]
    assert (full["steps"], full["network_calls"], full["extrapolated"]) == (250, 250, True)  # T of the paper
    assert (fast["steps"], fast["network_calls"]) == (50, 50)
    cdpm = report["results"]["cdpm"]["generate_fast"]
    assert cdpm["network_calls"] == 50 * 4  # 16 slices in stages of 4 (tiny_cpu.json)


def test_suite_prints_one_table_and_runs_a_short_generation():
    table = run_suite(
        "--stages", "medical_diffusion_latent", "diffusemorph_fields", "--phases", "sample", "--calls", "1",
        "--max-generation-seconds", "30", "--set", "num_train_timesteps=60",
    )  # fmt: skip
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| stage | parameters |") and len(rows) == 1 + 2
    assert "Overrides: num_train_timesteps=60." in table
    for row in rows[1:]:
        full, fast = row.split(" | ")[-2:]
        assert full.startswith(tuple("0123456789")) and "(60 steps, 60 calls)" in full  # run, not extrapolated
        assert "(50 steps, 50 calls)" in fast and "≈" not in fast
