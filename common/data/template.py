"""The MNI152 2009a symmetric template shipped with nilearn, resampled to a cubic grid.

nilearn bundles a brain-extracted copy of the ICBM 2009a non-linear symmetric template (T1 plus grey- and white-matter
probability maps, 197 x 233 x 189 voxels at 1 mm, values 0..255), so no download is needed. :func:`load_mni152`
resamples it to a ``(size, size, size)`` cube that covers a 192 mm field of view centred on the brain.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np
from nilearn.image import resample_img
from scipy import ndimage

__all__ = ["FIELD_OF_VIEW_MM", "TemplateVolumes", "load_mni152", "mni152_path"]

FIELD_OF_VIEW_MM = 192.0
"""Edge length, in mm, of the cube the template is resampled to (128 voxels -> 1.5 mm, as in Med-DDPM)."""

_FILE_PATTERN = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
_SOURCE_MAX = 255.0


@dataclass(frozen=True)
class TemplateVolumes:
    """MNI152 template volumes on a cubic, isotropic RAS grid.

    Attributes:
        t1: T1-weighted template, float32 of shape (size, size, size), in [0, 1], zero outside ``brain_mask``.
        gm: grey-matter probability, float32 of shape (size, size, size), in [0, 1], zero outside ``brain_mask``.
        wm: white-matter probability, float32 of shape (size, size, size), in [0, 1], zero outside ``brain_mask``.
        brain_mask: brain mask (including CSF), float32 of shape (size, size, size), values in {0, 1}.
        affine: (4, 4) float64 voxel-to-world (RAS, mm) matrix with isotropic spacing ``spacing``.
        spacing: voxel edge length in mm, ``FIELD_OF_VIEW_MM / size``.

    The arrays are shared by every caller of :func:`load_mni152` and are read-only; copy them before modifying.
    """

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    brain_mask: np.ndarray
    affine: np.ndarray
    spacing: float


def mni152_path(name: str) -> Path:
    """Return the path of nilearn's bundled template file ``name`` (``"t1"``, ``"gm"`` or ``"wm"``).

    Raises:
        FileNotFoundError: if the file is not inside the installed nilearn package.
    """
    path = Path(str(resources.files("nilearn") / "datasets" / "data" / _FILE_PATTERN.format(name)))
    if not path.is_file():
        raise FileNotFoundError(f"MNI152 template file not found: {path} (it ships with nilearn; reinstall nilearn).")
    return path


def _cube_affine(centre: np.ndarray, size: int, spacing: float) -> np.ndarray:
    """RAS affine of a ``size``-voxel cube with isotropic ``spacing`` whose centre voxel lies at world ``centre``."""
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = centre - spacing * (size - 1) / 2.0
    return affine


@functools.lru_cache(maxsize=4)
def load_mni152(size: int = 128) -> TemplateVolumes:
    """Load the MNI152 2009a symmetric template resampled to a ``(size, size, size)`` cube of 192 mm.

    The voxel spacing is ``192 / size`` mm (128 -> 1.5 mm, 32 -> 6 mm) and the cube is centred on the centre of the
    brain's bounding box, which leaves about 5 mm between the brain (181 mm long) and the front and back faces; the
    brain's centre of mass lies 5 mm behind that centre, so a cube centred on it would clip the frontal pole.
    Before downsampling, each volume is smoothed with a Gaussian of ``(factor - 1) / 2`` source voxels
    (``factor`` = target / source spacing) to avoid aliasing; it is then resampled with nilearn's continuous (cubic
    spline) interpolation and clipped to [0, 1].

    The brain mask is the template's own brain extraction (its non-zero T1 voxels), resampled the same way as a
    [0, 1] indicator and thresholded at 0.5, i.e. a voxel is brain when at least half of it was brain. Thresholding
    the interpolated T1 instead would leave a halo of spline ringing around the brain. ``t1``, ``gm`` and ``wm`` are
    set to zero outside this mask.

    Results are cached in-process per ``size`` and the returned arrays are read-only.

    Args:
        size: number of voxels along each axis, at least 8.

    Raises:
        ValueError: if ``size`` is smaller than 8.
        FileNotFoundError: if nilearn's template files are missing.
    """
    if size < 8:
        raise ValueError(f"size must be at least 8, got {size}.")
    images = {name: nib.load(mni152_path(name)) for name in ("t1", "gm", "wm")}
    source_affine = images["t1"].affine
    volumes = [images[name].get_fdata(dtype=np.float32) / _SOURCE_MAX for name in ("t1", "gm", "wm")]
    volumes.append((volumes[0] > 0).astype(np.float32))

    spacing = FIELD_OF_VIEW_MM / size
    source_spacing = float(np.abs(source_affine[:3, :3]).max(axis=0).min())
    sigma = max(spacing / source_spacing - 1.0, 0.0) / 2.0
    if sigma > 0:
        volumes = [ndimage.gaussian_filter(volume, sigma) for volume in volumes]

    brain_voxels = np.argwhere(volumes[3] >= 0.5)
    centre_voxel = (brain_voxels.min(axis=0) + brain_voxels.max(axis=0)) / 2.0
    centre = source_affine[:3, :3] @ centre_voxel + source_affine[:3, 3]
    affine = _cube_affine(centre, size, spacing)
    stacked = nib.Nifti1Image(np.stack(volumes, axis=-1), source_affine)
    resampled = resample_img(
        stacked,
        target_affine=affine,
        target_shape=(size, size, size),
        interpolation="continuous",
        force_resample=True,
        copy_header=True,
    ).get_fdata(dtype=np.float32)
    resampled = np.clip(resampled, 0.0, 1.0)

    brain_mask = (resampled[..., 3] >= 0.5).astype(np.float32)
    t1, gm, wm = (np.ascontiguousarray(resampled[..., i] * brain_mask) for i in range(3))
    for array in (t1, gm, wm, brain_mask, affine):
        array.flags.writeable = False
    return TemplateVolumes(t1=t1, gm=gm, wm=wm, brain_mask=brain_mask, affine=affine, spacing=spacing)
