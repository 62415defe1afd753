"""Synthetic brain MRI subjects simulated from the MNI152 template (demo data only).

:func:`synthesize_subject` deforms the template with a random smooth warp, optionally grows a tumour-like lesion,
and simulates T1, T1ce, T2 and FLAIR contrasts from the tissue classes with a shared bias field and noise. Every
array it returns has the template's shape ``(S, S, S)``; all randomness comes from the ``numpy`` generator passed in,
so the same generator state always gives the same subject.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import RandBiasField
from scipy import ndimage

from common.data.template import FIELD_OF_VIEW_MM, TemplateVolumes

__all__ = [
    "BRATS_LABELS",
    "CONTRASTS",
    "INTENSITIES",
    "MEDDPM_LABELS",
    "SyntheticSubject",
    "synthesize_subject",
]

CONTRASTS = ("t1", "t1ce", "t2", "flair")
"""Simulated contrasts, in the BraTS modality order."""

BRATS_LABELS = {"necrotic_core": 1, "oedema": 2, "enhancing": 4}
"""BraTS 2021 segmentation labels (0 is background and healthy tissue); 4 is remapped to 3 at load time downstream."""

MEDDPM_LABELS = {"background": 0, "brain": 1, "tumour": 2}
"""Med-DDPM mask labels; the tumour is the necrotic core plus the enhancing rim (oedema counts as brain)."""

INTENSITIES: dict[str, dict[str, float]] = {
    "t1": {"csf": 0.25, "gm": 0.62, "wm": 0.87, "necrotic_core": 0.30, "enhancing": 0.55, "oedema": 0.48},
    "t1ce": {"csf": 0.25, "gm": 0.62, "wm": 0.87, "necrotic_core": 0.28, "enhancing": 1.25, "oedema": 0.48},
    "t2": {"csf": 1.00, "gm": 0.60, "wm": 0.40, "necrotic_core": 0.90, "enhancing": 0.65, "oedema": 0.80},
    "flair": {"csf": 0.10, "gm": 0.55, "wm": 0.40, "necrotic_core": 0.35, "enhancing": 0.70, "oedema": 0.95},
}
"""Mean intensity of each tissue class per contrast (arbitrary units, T1 values match the template T1 in [0, 1])."""

_MAX_ROTATION_DEG = 5.0
_MAX_SCALING = 0.05
_MAX_TRANSLATION_MM = 3.0
_DISPLACEMENT_MM = 2.5
_DISPLACEMENT_NODES = 5
_TUMOUR_RADIUS_FOV = (0.06, 0.12)
_CENTRE_GRID = 32
_CORE_FRACTION = 0.5
_OEDEMA_EXTENT = (1.4, 1.8)
_BOUNDARY_IRREGULARITY = 0.3
_INTENSITY_JITTER = 0.05
_TEXTURE_WEIGHT = 0.5
_NOISE_STD = 0.01


@dataclass(frozen=True)
class SyntheticSubject:
    """One synthetic subject on the template grid.

    Attributes:
        contrasts: ``{"t1", "t1ce", "t2", "flair"}`` -> float32 image of shape (S, S, S), >= 0, zero outside the brain.
        tissues: ``{"csf", "gm", "wm"}`` -> float32 partial-volume fraction of shape (S, S, S) in [0, 1]; zero inside
            the lesion, so with the lesion they sum to the brain mask.
        brain_mask: bool array of shape (S, S, S).
        seg: uint8 BraTS 2021 segmentation of shape (S, S, S), labels :data:`BRATS_LABELS` (all zero without tumour).
    """

    contrasts: dict[str, np.ndarray]
    tissues: dict[str, np.ndarray]
    brain_mask: np.ndarray
    seg: np.ndarray

    @property
    def has_tumour(self) -> bool:
        """Whether the subject has a lesion."""
        return bool(self.seg.any())

    def meddpm_mask(self) -> np.ndarray:
        """uint8 Med-DDPM mask of shape (S, S, S): 0 background, 1 brain, 2 tumour (necrotic core + enhancing rim)."""
        tumour = np.isin(self.seg, (BRATS_LABELS["necrotic_core"], BRATS_LABELS["enhancing"]))
        mask = np.where(self.brain_mask, MEDDPM_LABELS["brain"], MEDDPM_LABELS["background"])
        return np.where(tumour, MEDDPM_LABELS["tumour"], mask).astype(np.uint8)


def _smooth_noise(rng: np.random.Generator, channels: int, nodes: int, size: int) -> torch.Tensor:
    """Standard normal noise on a ``nodes``^3 grid, trilinearly upsampled to a (channels, size, size, size) tensor."""
    coarse = torch.from_numpy(rng.standard_normal((1, channels, nodes, nodes, nodes), dtype=np.float32))
    return F.interpolate(coarse, size=(size, size, size), mode="trilinear", align_corners=True)[0]


def _rotation(angles: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix about the three axes by ``angles`` (radians)."""
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rx @ ry @ rz


def _random_warp(volumes: np.ndarray, rng: np.random.Generator, spacing: float) -> np.ndarray:
    """Warp (C, S, S, S) ``volumes`` with one random affine plus smooth displacement field; returns (C, S, S, S).

    The affine rotates by up to 5 degrees about each axis, scales each axis by up to 5 % and shifts by up to 3 mm;
    the displacement is Gaussian noise (2.5 mm standard deviation) on a 5^3 grid, upsampled trilinearly. Sampling is
    trilinear with zero padding, in normalised coordinates where 1 is half the cube (``(S - 1) / 2`` voxels).
    """
    channels, size = volumes.shape[0], volumes.shape[-1]
    half_extent_mm = (size - 1) / 2.0 * spacing
    linear = _rotation(np.deg2rad(rng.uniform(-_MAX_ROTATION_DEG, _MAX_ROTATION_DEG, 3)))
    linear = linear @ np.diag(rng.uniform(1 - _MAX_SCALING, 1 + _MAX_SCALING, 3))
    shift = rng.uniform(-_MAX_TRANSLATION_MM, _MAX_TRANSLATION_MM, 3) / half_extent_mm
    theta = torch.from_numpy(np.concatenate([linear, shift[:, None]], axis=1)[None].astype(np.float32))
    grid = F.affine_grid(theta, [1, channels, size, size, size], align_corners=True)
    displacement = _smooth_noise(rng, 3, _DISPLACEMENT_NODES, size) * (_DISPLACEMENT_MM / half_extent_mm)
    grid = grid + displacement.permute(1, 2, 3, 0)[None]
    warped = F.grid_sample(torch.from_numpy(volumes)[None], grid, mode="bilinear", align_corners=True)
    return warped[0].numpy()


def _tumour_seg(
    rng: np.random.Generator, wm: np.ndarray, brain: np.ndarray, parenchyma: np.ndarray, spacing: float
) -> np.ndarray:
    """Grow a tumour-like lesion; returns a uint8 (S, S, S) BraTS segmentation.

    The centre is drawn among deep white-matter voxels: those, on a grid of at most 32^3 voxels (for speed), whose
    white-matter fraction times depth below the brain surface relative to the radius (capped at 1) is at least half
    its maximum. The radius is 6-12 % of the field of view, modulated by +-30 % smooth noise (varying on the scale of
    half the radius) so that the boundary is irregular. With ``rho`` the distance to the centre divided by the local
    radius: necrotic core ``rho < 0.5`` and enhancing rim ``0.5 <= rho < 1`` (both inside ``brain``); oedema, around
    them, where ``rho`` (with its own boundary noise) is below a random 1.4-1.8, inside ``parenchyma``.
    """
    size = wm.shape[0]
    radius = rng.uniform(*_TUMOUR_RADIUS_FOV) * FIELD_OF_VIEW_MM
    step = max(size // _CENTRE_GRID, 1)
    depth = ndimage.distance_transform_edt(brain[::step, ::step, ::step], sampling=step * spacing)
    score = wm[::step, ::step, ::step] * np.minimum(depth / radius, 1.0)
    candidates = np.flatnonzero(score >= 0.5 * score.max())
    centre = np.array(np.unravel_index(rng.choice(candidates), score.shape)) * step

    nodes = int(np.ceil(2 * FIELD_OF_VIEW_MM / radius)) + 1
    irregularity = 1.0 + _BOUNDARY_IRREGULARITY * _smooth_noise(rng, 2, nodes, size).numpy()
    irregularity = np.clip(irregularity, 0.5, 1.5)
    squared = sum((axis - c) ** 2 for axis, c in zip(np.ogrid[:size, :size, :size], centre, strict=True))
    distance = np.sqrt(squared) * spacing
    rho_tumour = distance / (radius * irregularity[0])
    rho_oedema = distance / (radius * irregularity[1])

    seg = np.zeros(wm.shape, dtype=np.uint8)
    seg[(rho_oedema < rng.uniform(*_OEDEMA_EXTENT)) & parenchyma] = BRATS_LABELS["oedema"]
    seg[(rho_tumour < 1.0) & brain] = BRATS_LABELS["enhancing"]
    seg[(rho_tumour < _CORE_FRACTION) & brain] = BRATS_LABELS["necrotic_core"]
    return seg


def _simulate_contrasts(
    fractions: dict[str, np.ndarray], t1_texture: np.ndarray, healthy: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Mix per-tissue intensities (each jittered by up to 5 %) by the (S, S, S) tissue ``fractions`` of each contrast.

    In ``healthy`` voxels the T1 and T1ce images are averaged with the warped template T1 (``t1_texture``) to keep
    its anatomical texture. Returns float32 (S, S, S) images without bias field or noise.
    """
    contrasts = {}
    for contrast in CONTRASTS:
        image = np.zeros_like(t1_texture)
        for tissue, fraction in fractions.items():
            jitter = rng.uniform(1 - _INTENSITY_JITTER, 1 + _INTENSITY_JITTER)
            image += fraction * np.float32(INTENSITIES[contrast][tissue] * jitter)
        if contrast in ("t1", "t1ce"):
            blended = (1 - _TEXTURE_WEIGHT) * image + _TEXTURE_WEIGHT * t1_texture
            image = np.where(healthy, blended, image)
        contrasts[contrast] = image.astype(np.float32)
    return contrasts


def _bias_field(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth multiplicative (size, size, size) bias field: exponential of a random degree-3 Legendre polynomial."""
    transform = RandBiasField(degree=3, coeff_range=(-0.05, 0.05), prob=1.0)
    transform.set_random_state(seed=int(rng.integers(2**31)))
    return np.asarray(transform(np.ones((1, size, size, size), dtype=np.float32)))[0]


def synthesize_subject(template: TemplateVolumes, rng: np.random.Generator, *, tumour: bool) -> SyntheticSubject:
    """Simulate one subject from ``template`` with the random generator ``rng``.

    Steps: warp the template T1, grey matter, white matter and brain mask together (:func:`_random_warp`); take CSF as
    the brain fraction not covered by grey or white matter; optionally add a lesion (:func:`_tumour_seg`), which
    replaces the healthy tissue it covers; simulate the four contrasts; multiply them by one shared bias field, add
    Gaussian noise (standard deviation 0.01), clip at 0 and zero everything outside the brain.

    Args:
        template: template volumes of shape (S, S, S), see :func:`common.data.template.load_mni152`.
        rng: source of all randomness; the subject is a deterministic function of its state.
        tumour: whether to add a tumour-like lesion.
    """
    size = template.t1.shape[0]
    stacked = np.stack([template.t1, template.gm, template.wm, template.brain_mask]).astype(np.float32)
    t1, gm, wm, brain = np.clip(_random_warp(stacked, rng, template.spacing), 0.0, 1.0)
    brain = brain >= 0.5
    gm, wm, t1 = gm * brain, wm * brain, t1 * brain
    scale = np.maximum(gm + wm, 1.0)
    gm, wm = gm / scale, wm / scale
    csf = np.clip(brain - gm - wm, 0.0, 1.0)

    if tumour:
        seg = _tumour_seg(rng, wm, brain, brain & (gm + wm >= 0.5), template.spacing)
    else:
        seg = np.zeros(brain.shape, dtype=np.uint8)
    healthy = seg == 0
    tissues = {"csf": csf * healthy, "gm": gm * healthy, "wm": wm * healthy}
    lesion = {name: (seg == label).astype(np.float32) for name, label in BRATS_LABELS.items()}
    contrasts = _simulate_contrasts({**tissues, **lesion}, t1, healthy, rng)

    bias = _bias_field(rng, size)
    for name, image in contrasts.items():
        noisy = image * bias + _NOISE_STD * rng.standard_normal(image.shape, dtype=np.float32)
        contrasts[name] = (np.clip(noisy, 0.0, None) * brain).astype(np.float32)
    return SyntheticSubject(contrasts=contrasts, tissues=tissues, brain_mask=brain, seg=seg)
