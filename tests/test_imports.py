"""Import layering: ``import common`` is light (PEP 562 lazy subpackages) and the layers import only what they need.

One fresh interpreter checks the facts in sequence (:data:`PROBE`): modules only ever join ``sys.modules``, so
``common.transforms`` still absent after importing a layer means that layer did not import it, as in an interpreter
of its own. The lazy attribute accesses come before any explicit import of the subpackage they resolve.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: What the fresh interpreter runs: it prints one JSON object of observations.
PROBE = """
import json, sys
seen = {}
import common
seen["after import common"] = [name for name in ("torch", "monai") if name in sys.modules]
from common import cli
seen["after from common import cli"] = [name for name in ("torch",) if name in sys.modules]

seen["common.diffusion imported before attribute access"] = "common.diffusion" in sys.modules
scheduler = common.diffusion.make_noise_scheduler  # what configs do after ``$import common``
seen["common.diffusion imported by attribute access"] = "common.diffusion" in sys.modules and callable(scheduler)
seen["transforms after common.diffusion"] = "common.transforms" in sys.modules
import common.networks
seen["transforms after common.networks"] = "common.transforms" in sys.modules
seen["common.engines resolved by attribute access"] = (
    common.engines.CheckpointSaver is sys.modules["common.engines"].CheckpointSaver
)
seen["transforms after common.engines"] = "common.transforms" in sys.modules
try:
    common.no_such_module
except AttributeError:
    seen["common.no_such_module resolved"] = False
else:
    seen["common.no_such_module resolved"] = True
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def seen() -> dict:
    """The observations of :data:`PROBE` in a fresh interpreter."""
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_common_does_not_import_torch(seen):
    assert seen["after import common"] == []  # neither torch nor monai


def test_subpackages_resolve_lazily_on_attribute_access(seen):
    assert not seen["common.diffusion imported before attribute access"]
    assert seen["common.diffusion imported by attribute access"]
    assert seen["common.engines resolved by attribute access"]
    assert not seen["common.no_such_module resolved"]


def test_cli_imports_nothing_heavy_until_a_command_runs(seen):
    assert seen["after from common import cli"] == []


@pytest.mark.parametrize("package", ["common.networks", "common.diffusion", "common.engines"])
def test_networks_diffusion_engines_do_not_import_transforms(package, seen):
    assert not seen[f"transforms after {package}"], package
