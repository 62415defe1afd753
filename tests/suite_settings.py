"""pytest plugin (``-p suite_settings`` in pyproject.toml): one torch thread per test process, test groups for
``pytest -n 2 --dist loadgroup`` (``make test``), and one resampled-template cache per test session.

The tiny networks of the tests run faster on one thread than on two (thread start-up and, under
``OMP_WAIT_POLICY=PASSIVE``, sleeping threads cost more than the work they share), and ``-n 2`` runs two test
processes on the two cores. Every test module runs whole on one worker, so its module-scoped fixtures (a trained
bundle, a MONAI Label server) are built once; the bundle smoke tests, which share the bundles trained once per
session (``tests/bundles/conftest.py``), run together on one worker. Without ``-n`` the marks change nothing.

The MNI152 template resampled by ``common.data.load_mni152`` is cached on disk (``BRAINSYNTH_CACHE_DIR``): the
session gets an empty folder of its own, shared by its workers and every process its tests start, so the suite
neither reads the user's cache nor leaves files in it, and each size is resampled once per session.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
import torch

#: Test modules that share the session-scoped trained bundles of ``tests/bundles/conftest.py``.
SHARED_TRAINING = {
    "test_bundle_training.py",
    "test_cdpm_bundle.py",
    "test_med_ddpm_bundle.py",
    "test_medical_diffusion_bundle.py",
    "test_diffusemorph_bundle.py",
}


#: Set by the controlling process (workers inherit it); the folder it made and removes at the end.
CACHE_VARIABLE = "BRAINSYNTH_CACHE_DIR"
_own_cache: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(1)
    if not hasattr(config, "workerinput"):  # the controlling process, or a run without -n
        _own_cache.append(tempfile.mkdtemp(prefix="brainsynth_test_cache_"))
        os.environ[CACHE_VARIABLE] = _own_cache[0]


def pytest_unconfigure(config: pytest.Config) -> None:
    for folder in _own_cache:
        shutil.rmtree(folder, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = "trained_bundles" if item.path.name in SHARED_TRAINING else str(item.path)
        item.add_marker(pytest.mark.xdist_group(group))
