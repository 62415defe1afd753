"""``brainsynth evaluate`` on folders of NIfTI volumes made by any tool, through fire's argument parsing."""

from __future__ import annotations

import json
import sys

import nibabel as nib
import numpy as np

from common import cli


def test_evaluate_command_prints_table_and_paths(tmp_path, monkeypatch, capsys):
    real, synthetic = tmp_path / "real", tmp_path / "synthetic"
    for folder in (real, synthetic):
        folder.mkdir()
    for k in range(3):
        volume = np.random.default_rng(k).random((20, 20, 20)).astype(np.float32)
        nib.save(nib.Nifti1Image(volume, np.eye(4)), str(real / f"r{k}.nii.gz"))
        nib.save(nib.Nifti1Image(volume[::-1].copy(), np.eye(4)), str(synthetic / f"s{k}.nii"))
    options = {"metrics": "mmd,memorisation,c2st", "synthetic_pattern": "*.nii", "spatial_size": "[16,16,16]",
               "kernel_size": 5, "c2st_epochs": 2, "verbose": False}  # fmt: skip
    argv = ["brainsynth", "evaluate", "--real", str(real), "--synthetic", str(synthetic)]
    argv += [item for key, value in options.items() for item in (f"--{key}", str(value))]
    monkeypatch.setattr(sys, "argv", argv)
    cli.main()
    printed = capsys.readouterr().out
    output_dir = tmp_path / "synthetic_evaluation"  # default: beside the synthetic folder
    assert (
        f"Metrics: {output_dir / 'metrics.json'}" in printed and f"Figure: {output_dir / 'evaluation.png'}" in printed
    )
    assert "mmd.mmd: " in printed and "memorisation.num_memorised: 0" in printed and "c2st.num_folds: 3" in printed
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert (
        metrics["settings"]["metrics"] == ["mmd", "memorisation", "c2st"]
        and metrics["settings"]["spatial_size"] == [16] * 3
    )
    assert metrics["counts"] == {"real": 3, "synthetic": 3}
