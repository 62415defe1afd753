"""The app folder and the ``monailabel start_server`` command line (no MONAI Label needed)."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from common.label_app import start_server_command, write_app_dir


def test_app_folder_main_imports_the_app(tmp_path):
    app = write_app_dir(tmp_path / "app")
    assert "from common.label_app.main import BrainSynthApp" in (app / "main.py").read_text()
    compile((app / "main.py").read_text(), "main.py", "exec")


def test_command_serves_the_app_folder_with_the_bundles_and_configs(tmp_path):
    command = start_server_command(
        tmp_path / "app", tmp_path / "studies", ["med_ddpm_brain_mri", tmp_path / "cdpm"],
        ["inference.json", "tiny_cpu.json"], port=9001, python="/envs/label/bin/python", num_inference_steps=25,
        workers=3, queue_size=2,
    )  # fmt: skip
    assert command[:4] == ["/envs/label/bin/python", "-m", "monailabel.main", "start_server"]
    assert command[command.index("--app") + 1] == str(tmp_path / "app")
    assert command[command.index("--studies") + 1] == str(tmp_path / "studies")
    assert command[command.index("--port") + 1] == "9001"
    pairs = {command[i + 1]: command[i + 2] for i, arg in enumerate(command) if arg == "--conf"}
    assert pairs == {
        "bundles": f"med_ddpm_brain_mri,{tmp_path / 'cdpm'}",
        "configs": "inference.json,tiny_cpu.json",
        "sampler": "ddpm",
        "num_inference_steps": "25",
        "workers": "3",
        "queue_size": "2",
    }


def test_without_monailabel_the_error_says_how_to_install_it(tmp_path):
    if importlib.util.find_spec("monailabel") is not None:
        assert start_server_command(tmp_path, tmp_path)[0] == sys.executable
    else:
        with pytest.raises(ModuleNotFoundError, match="make install-label"):
            start_server_command(tmp_path, tmp_path)
