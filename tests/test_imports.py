"""Import layering: ``import common`` is light (PEP 562 lazy subpackages) and the layers import only what they need."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_import_common_does_not_import_torch():
    result = _python("import common, sys; assert 'torch' not in sys.modules and 'monai' not in sys.modules")
    assert result.returncode == 0, result.stderr


def test_subpackages_resolve_lazily_on_attribute_access():
    code = """
import sys
import common
assert "common.diffusion" not in sys.modules
scheduler = common.diffusion.make_noise_scheduler  # what configs do after ``$import common``
assert "common.diffusion" in sys.modules and callable(scheduler)
assert common.engines.CheckpointSaver is sys.modules["common.engines"].CheckpointSaver
try:
    common.no_such_module
except AttributeError:
    pass
else:
    raise AssertionError("common.no_such_module resolved")
"""
    result = _python(code)
    assert result.returncode == 0, result.stderr


def test_cli_imports_nothing_heavy_until_a_command_runs():
    result = _python("import sys; from common import cli; assert 'torch' not in sys.modules")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("package", ["common.networks", "common.diffusion", "common.engines"])
def test_networks_diffusion_engines_do_not_import_transforms(package):
    result = _python(f"import sys, {package}; assert 'common.transforms' not in sys.modules, {package!r}")
    assert result.returncode == 0, result.stderr
