"""The ``brainsynth`` command line: the demo main job end to end on tiny settings, preview and prepare."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import torch
from PIL import Image

from common import cli, demo
from common.engines import checkpoint_iteration, latest_checkpoint


def test_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    summary = cli.demo(
        output_dir=str(out), data_root=str(tmp_path / "data"), train_seconds=60, train_iterations=2,
        num_inference_steps=2, tumour_shift=(0, -2, 0),
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert str(out / "demo_preview.png") in printed and "not research data" in printed
    trained = [name for name in demo.UNCONDITIONAL if (demo.demo_weights_dir(name) / "model.pt").is_file()]
    for name in set(demo.UNCONDITIONAL) - set(trained):
        assert f"{name}: no demo weights" in printed
    for name in trained:
        assert json.loads((out / name / "outputs.json").read_text())
    rows = 3 + len(trained)  # real, Med-DDPM from the mask and after the edit, one per unconditional demo model
    with Image.open(summary) as image:  # label column, then 3 views of 32 px per row enlarged 4x, notes below
        assert image.width == 230 + 4 * (3 * 32 + 4 * 2)
        assert image.height > 4 * (rows * 32 + (rows + 1) * 2)
    assert (out / "models" / "model.pt").is_file()
    # the demo fine-tunes exactly the 2 iterations asked, from the shipped checkpoint (not max_iterations // epochs)
    shipped = torch.load(demo.demo_weights_dir(demo.MED_DDPM) / "checkpoint_demo_s32.pt", weights_only=True)
    trained_to = checkpoint_iteration(latest_checkpoint(out / "models"))
    assert trained_to == shipped["trainer"]["iteration"] + 2
    original = json.loads((out / "med_ddpm_original_mask" / "outputs.json").read_text())[0]
    shifted = json.loads((out / "med_ddpm_shifted_tumour" / "outputs.json").read_text())[0]
    before = np.asarray(nib.load(original["mask"]).dataobj)
    after = np.asarray(nib.load(shifted["mask"]).dataobj)
    moved = np.argwhere(after == 2).mean(0) - np.argwhere(before == 2).mean(0)
    np.testing.assert_allclose(moved, [0, -2, 0], atol=0.5)
    assert nib.load(shifted["t1ce"]).shape == (32, 32, 32)


def test_preview_command_writes_png(tmp_path):
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    volume, mask = tmp_path / "v.nii.gz", tmp_path / "m.nii.gz"
    nib.save(nib.Nifti1Image(np.random.rand(12, 12, 12).astype(np.float32), affine), volume)
    label = np.zeros((12, 12, 12), np.uint8)
    label[3:9, 3:9, 3:9] = 1
    nib.save(nib.Nifti1Image(label, affine), mask)
    path = cli.preview(str(volume), str(volume), output=str(tmp_path / "p.png"), masks=f"{mask},None")
    with Image.open(path) as image:
        assert image.mode == "RGB"
        pixels = np.asarray(image).astype(int)
    height, width = pixels.shape[:2]
    assert width > height  # one row per volume, three views (axial, coronal, sagittal) side by side
    coloured = (pixels.max(-1) - pixels.min(-1)) > 40  # the mask outline; the volumes themselves are grey
    assert coloured[: height // 2].any()  # first row: the mask is drawn over the volume
    assert not coloured[height // 2 :].any()  # second row: "None", no mask


def test_console_script_help_lists_commands():
    result = subprocess.run(
        [sys.executable, "-m", "common.cli", "--help"], capture_output=True, text=True, timeout=120,
        env={"PAGER": "cat", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0
    commands = (
        "demo", "cohort", "prepare", "preview", "train", "generate", "evaluate", "export", "package", "fetch", "label",
    )  # fmt: skip
    for command in commands:
        assert f"     {command}\n" in result.stdout + result.stderr  # fire writes help to stderr without a TTY
