"""pytest plugin (``-p suite_settings`` in pyproject.toml): one torch thread per test process, the work units of
``pytest -n 2`` (``make test``), and one resampled-template cache per test session.

The tiny networks of the tests run faster on one thread than on two (thread start-up and, under
``OMP_WAIT_POLICY=PASSIVE``, sleeping threads cost more than the work they share), and ``-n 2`` runs two test
processes on the two cores. Under ``-n``, every test module runs whole on one worker, so its module-scoped fixtures
(a trained bundle, a MONAI Label server) are built once, and the bundle smoke tests, which share the bundles trained
once per session (``tests/bundles/conftest.py``), run together on one worker (:class:`ModuleScheduling`). The
longest units come first (:data:`LONGEST_FIRST`), in a serial run too, so that none of them starts last.

pytest-xdist's ``xdist_group`` marks are not used: pytest-xdist 3.8 groups them by rewriting ``item._nodeid``, which
pytest 9.2 no longer reads, so they had no effect.

The MNI152 template resampled by ``common.data.load_mni152`` is cached on disk (``BRAINSYNTH_CACHE_DIR``): the
session gets an empty folder of its own, shared by its workers and every process its tests start, so the suite
neither reads the user's cache nor leaves files in it, and each size is resampled once per session.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import PurePosixPath

import pytest
import torch

#: Test modules that share the session-scoped trained bundles of ``tests/bundles/conftest.py``: one work unit.
SHARED_TRAINING = {
    "test_bundle_training.py",
    "test_cdpm_bundle.py",
    "test_med_ddpm_bundle.py",
    "test_medical_diffusion_bundle.py",
    "test_diffusemorph_bundle.py",
}
TRAINED_BUNDLES = "trained bundles"
#: The longest work units, longest first (``--durations`` of a 2-core run); the others follow in collection order.
LONGEST_FIRST = (
    "tests/label_app/test_label_server.py",
    TRAINED_BUNDLES,
    "tests/test_readme_commands.py",
    "tests/bundles/test_multi_gpu_train.py",
    "tests/label_app/test_label_launcher.py",
    "tests/test_packaging.py",
    "tests/bundles/test_bundle_export.py",
    "tests/bundles/test_sampler_entry_points.py",
    "tests/test_benchmark_suite.py",
)
#: Set by the controlling process (workers inherit it); the folder it made and removes at the end.
CACHE_VARIABLE = "BRAINSYNTH_CACHE_DIR"
_own_cache: list[str] = []


def work_unit(nodeid: str) -> str:
    """The work unit of a test: its module, or :data:`TRAINED_BUNDLES`."""
    module = nodeid.split("::")[0]
    return TRAINED_BUNDLES if PurePosixPath(module).name in SHARED_TRAINING else module


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(1)
    if not hasattr(config, "workerinput"):  # the controlling process, or a run without -n
        _own_cache.append(tempfile.mkdtemp(prefix="brainsynth_test_cache_"))
        os.environ[CACHE_VARIABLE] = _own_cache[0]


def pytest_unconfigure(config: pytest.Config) -> None:
    for folder in _own_cache:
        shutil.rmtree(folder, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {unit: position for position, unit in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(work_unit(item.nodeid), len(rank)))  # stable: modules stay whole


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Under ``-n``: work units of :func:`work_unit`, sent in collection order (longest first)."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    config.option.loadscopereorder = False
    return ModuleScheduling(config, log)
