"""benchmarks/suite.py runs every bundle's stages from their configs and prints one table (tiny sizes, CPU).

Speed is not tested here: the suite prints figures (docs/benchmarks.md). The suite runs in this process
(``main(argv, in_process=True)``: the same argument parsing, measurements and report, without an interpreter per
measurement); one measurement runs as the suite runs it by default, in a fresh process.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
STAGES = [
    "med_ddpm", "cdpm", "medical_diffusion_vqgan", "medical_diffusion_latent", "diffusemorph_registration",
    "diffusemorph_fields",
]  # fmt: skip
GENERATING = {"med_ddpm", "cdpm", "medical_diffusion_latent", "diffusemorph_fields"}
COMMON = ["--device", "cpu", "--size", "tiny", "--threads", "2"]


@pytest.fixture(scope="module")
def suite():
    """The ``benchmarks/suite.py`` module (which imports its sibling ``cdpm_memory``)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module("suite")
    finally:
        sys.path.remove(str(BENCHMARKS))


def run_suite(suite, capsys, *args: str) -> str:
    """What ``python benchmarks/suite.py --device cpu --size tiny --threads 2 ARGS`` prints, run in this process."""
    capsys.readouterr()
    suite.main([*COMMON, *args], in_process=True)
    return capsys.readouterr().out


def test_suite_measures_every_stage_of_every_bundle(suite, capsys):
    """One short pass (1 iteration, 1 call, generations extrapolated): every stage trains and samples.

    Every stage at 32 x 32 x 16, the tiny size of all but Med-DDPM (32³).
    """
    argv = ["--repeats", "1", "--calls", "1", "--max-generation-seconds", "0", "--set", "spatial_size=[32,32,16]"]
    report = json.loads(run_suite(suite, capsys, *argv, "--json"))
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

    # By default each measurement runs in a fresh process and reports one JSON line: the same result there.
    fresh = suite.run_child([*COMMON, *argv], "medical_diffusion_vqgan", "sample")
    assert "error" not in fresh, fresh["error"]
    assert fresh["parameters"] == report["results"]["medical_diffusion_vqgan"]["parameters"]
    assert fresh["sample_s"] > 0 and fresh["sample_peak_mib"] > 0


def test_suite_prints_one_table_and_runs_a_short_generation(suite, capsys):
    """Both generations run (32 x 16 x 8 volumes: the same 32³ template as the first test's DiffuseMorph stages)."""
    table = run_suite(
        suite, capsys, "--stages", "medical_diffusion_latent", "diffusemorph_fields", "--phases", "sample",
        "--calls", "1", "--max-generation-seconds", "300", "--set", "num_train_timesteps=50",
        "--set", "spatial_size=[32,16,8]",
    )  # fmt: skip
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| stage | parameters |") and len(rows) == 1 + 2
    assert "Overrides: num_train_timesteps=50, spatial_size=[32,16,8]." in table
    for row in rows[1:]:
        full, fast = row.split(" | ")[-2:]
        assert full.startswith(tuple("0123456789")) and "(50 steps, 50 calls)" in full  # run, not extrapolated
        assert "(50 steps, 50 calls)" in fast and "≈" not in fast
