"""The MNI152 2009a symmetric template shipped with nilearn, resampled to a cubic grid.

nilearn bundles a brain-extracted copy of the ICBM 2009a non-linear symmetric template (T1 plus grey- and white-matter
probability maps, 197 x 233 x 189 voxels at 1 mm, values 0..255), so no download is needed. :func:`load_mni152`
resamples it to a ``(size, size, size)`` cube that covers a 192 mm field of view centred on the brain.

Resampling takes seconds (2.5 s for 32³, 6 s for 128³ on a 2-core machine), so its result is also kept on disk, one
``.npz`` file per size in :func:`cache_dir`, shared by every process: a DiffuseMorph run or a MONAI Label worker then
loads its template in a fraction of a second. The files are the exact float32 arrays, named after nilearn's
version; deleting them only costs the next resampling.
"""

from __future__ import annotations

import functools
import logging
import os
import zipfile
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from common.data.files import write_atomically

__all__ = ["FIELD_OF_VIEW_MM", "TemplateVolumes", "cache_dir", "load_mni152", "mni152_path"]

logger = logging.getLogger(__name__)

FIELD_OF_VIEW_MM = 192.0
"""Edge length, in mm, of the cube the template is resampled to (128 voxels -> 1.5 mm, as in Med-DDPM)."""

_FILE_PATTERN = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
_SOURCE_MAX = 255.0
#: Version of the resampling below: part of the cache files' names, bumped whenever the resampling changes.
_RESAMPLING_VERSION = 1
_CACHED_ARRAYS = ("t1", "gm", "wm", "brain_mask", "affine")


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

    Results are cached in-process per ``size`` and on disk (:func:`cache_dir`); the returned arrays are read-only.

    Args:
        size: number of voxels along each axis, at least 8.

    Raises:
        ValueError: if ``size`` is smaller than 8.
        FileNotFoundError: if nilearn's template files are missing.
    """
    if size < 8:
        raise ValueError(f"size must be at least 8, got {size}.")
    cache_file = cache_dir() / f"mni152_{size}_nilearn{metadata.version('nilearn')}_v{_RESAMPLING_VERSION}.npz"
    arrays = _read_cache(cache_file, size)
    if arrays is None:
        arrays = _resample(size)
        _write_cache(cache_file, arrays)
    for array in arrays.values():
        array.flags.writeable = False
    return TemplateVolumes(**arrays, spacing=FIELD_OF_VIEW_MM / size)


def cache_dir() -> Path:
    """Folder of the resampled templates: ``$BRAINSYNTH_CACHE_DIR``, else ``$XDG_CACHE_HOME/brainsynth``, else
    ``~/.cache/brainsynth``."""
    if "BRAINSYNTH_CACHE_DIR" in os.environ:
        return Path(os.environ["BRAINSYNTH_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "brainsynth"


def _read_cache(path: Path, size: int) -> dict[str, np.ndarray] | None:
    """The arrays of ``path``, or None when it is missing or not a complete cache file of ``size``."""
    try:
        with np.load(path) as cached:
            arrays = {name: cached[name] for name in _CACHED_ARRAYS}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        logger.warning("%s: unreadable template cache (%s); resampling again", path, error)
        return None
    if any(arrays[name].shape != (size, size, size) for name in _CACHED_ARRAYS[:4]):
        logger.warning("%s: template cache of another size; resampling again", path)
        return None
    return arrays


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` atomically (a reader never sees half a file); a folder that cannot be written
    only costs the next process the resampling."""
    try:
        write_atomically(path, lambda file: np.savez(file, **arrays))
    except OSError as error:
        logger.debug("template cache not written to %s: %s", path, error)


def _resample(size: int) -> dict[str, np.ndarray]:
    """The template resampled to ``size``³ (see :func:`load_mni152`): ``t1``, ``gm``, ``wm``, ``brain_mask`` and
    ``affine``."""
    from nilearn.image import resample_img  # imported here: a cached template needs no nilearn (1 s to import)

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
    return {"t1": t1, "gm": gm, "wm": wm, "brain_mask": brain_mask, "affine": affine}
