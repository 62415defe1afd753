"""pytest plugin (``-p suite_settings`` in pyproject.toml): one torch thread per test process, and test groups for
``pytest -n 2 --dist loadgroup`` (``make test``).

The tiny networks of the tests run faster on one thread than on two (thread start-up and, under
``OMP_WAIT_POLICY=PASSIVE``, sleeping threads cost more than the work they share), and ``-n 2`` runs two test
processes on the two cores. Every test module runs whole on one worker, so its module-scoped fixtures (a trained
bundle, a MONAI Label server) are built once; the bundle smoke tests, which share the bundles trained once per
session (``tests/bundles/conftest.py``), run together on one worker. Without ``-n`` the marks change nothing.
"""

from __future__ import annotations

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


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = "trained_bundles" if item.path.name in SHARED_TRAINING else str(item.path)
        item.add_marker(pytest.mark.xdist_group(group))
