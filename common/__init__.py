"""Shared library of the brain-MRI diffusion bundles.

Bundles reference these classes from their configs by ``_target_`` (for example
``common.transforms.OneHotConditiond``); every subpackage has one job:

- :mod:`common.data`: the MNI152-derived demo cohort and ``prepare`` for users' own NIfTI folders;
- :mod:`common.networks`: networks MONAI lacks (cDPM's slice-attention U-Net, the factorised space/depth U-Net,
  DiffuseMorph's score + deformation pair);
- :mod:`common.transforms`: mask one-hot encoding, mask editing and cDPM's condition/target slice sets;
- :mod:`common.diffusion`: noise-scheduler factory, losses and the samplers used at inference;
- :mod:`common.engines`: batch preparation, checkpoint/resume, EMA and output handlers for Ignite engines;
- :mod:`common.metrics`: MS-SSIM diversity, MMD, FID, paired MSE/PSNR/SSIM and memorisation checks;
- :mod:`common.evaluation`: evaluation runner writing metrics.json and a figure of synthetic against real volumes,
  and the downstream tumour-segmentation experiment (real / synthetic / real + synthetic training);
- :mod:`common.visualize`: tri-planar PNG previews and the evaluation figure;
- :mod:`common.slice_roles`: the slot roles of cDPM's slice sets, shared by transforms, networks, diffusion and
  engines;
- :mod:`common.bundle_runner`: run a bundle config from Python (the CLI, ``evaluate.json`` with ``generate_first``,
  the MONAI Label tasks);
- :mod:`common.errors`: errors that are the user's (``brainsynth`` prints them in one line, without traceback);
- :mod:`common.export` and :mod:`common.packaging`: ``torch.export`` of the networks; bundle archives and downloads;
- :mod:`common.label_app`: the MONAI Label app (optional extra ``label``; imported only when used, so the bundles
  run without MONAI Label).

Importing ``common`` imports none of them (nor torch or MONAI): a subpackage is imported on first attribute access
(PEP 562), so configs that ``$import common`` and then use ``common.diffusion.make_noise_scheduler`` work, and
``brainsynth --help`` starts fast.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = [
    "bundle_runner",
    "data",
    "diffusion",
    "engines",
    "evaluation",
    "metrics",
    "networks",
    "transforms",
    "visualize",
]

if TYPE_CHECKING:  # for static analysis only; at run time they are imported on first use
    from . import bundle_runner, data, diffusion, engines, evaluation, metrics, networks, transforms, visualize


def __getattr__(name: str) -> ModuleType:
    """Import the submodule ``common.<name>`` on first attribute access (PEP 562); it is then a plain attribute."""
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")  # the import binds it on this module too
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
