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
- :mod:`common.visualize`: tri-planar PNG previews;
- :mod:`common.bundle_runner`: run a bundle config from Python (the CLI, ``evaluate.json`` with ``generate_first``,
  the MONAI Label tasks) and write untrained weights for smoke tests;
- :mod:`common.errors`: errors that are the user's (``brainsynth`` prints them in one line, without traceback);
- :mod:`common.export` and :mod:`common.packaging`: ``torch.export`` of the networks; bundle archives and downloads;
- :mod:`common.label_app`: the MONAI Label app (optional extra ``label``; not imported here, so the bundles run
  without MONAI Label).
"""

__version__ = "0.1.0"

from . import bundle_runner, data, diffusion, engines, evaluation, metrics, networks, transforms, visualize  # noqa: E402  (configs use ``$import common``)

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
