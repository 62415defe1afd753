"""``start_server_command``: the ``monailabel start_server`` command line of the app (no MONAI Label needed)."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from common.label_app import APP_DIR, start_server_command


def test_command_serves_this_app_with_the_bundles_and_configs(tmp_path):
    command = start_server_command(
        tmp_path, ["med_ddpm_brain_mri", tmp_path / "cdpm"], ["inference.json", "tiny_cpu.json"], port=9001,
        python="/envs/label/bin/python",
    )  # fmt: skip
    assert command[:4] == ["/envs/label/bin/python", "-m", "monailabel.main", "start_server"]
    assert command[command.index("--app") + 1] == str(APP_DIR) and (APP_DIR / "main.py").is_file()
    assert command[command.index("--port") + 1] == "9001"
    pairs = {command[i + 1]: command[i + 2] for i, arg in enumerate(command) if arg == "--conf"}
    assert pairs == {"bundles": f"med_ddpm_brain_mri,{tmp_path / 'cdpm'}", "configs": "inference.json,tiny_cpu.json"}


def test_without_monailabel_the_error_says_how_to_install_it(tmp_path):
    if importlib.util.find_spec("monailabel") is not None:
        assert start_server_command(tmp_path)[0] == sys.executable
    else:
        with pytest.raises(ModuleNotFoundError, match="make install-label"):
            start_server_command(tmp_path)
