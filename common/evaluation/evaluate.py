"""Evaluate a set of synthetic volumes against real ones: metrics.json and a figure of views, metrics and neighbours.

The synthetic volumes can come from any tool (a folder of NIfTI files); when the folder holds the ``outputs.json``
of :class:`common.engines.GeneratedVolumeWriter`, it picks the image files and pairs each volume generated from a
real mask with the real image of that mask (paired metrics). Metrics are those of :mod:`common.metrics`:

- ``diversity``: mean pairwise MS-SSIM of each set and their absolute difference (:func:`diversity_report`);
- ``mmd``: MMD between the sets (:func:`common.metrics.mmd`);
- ``fid``: FID per view (2D network on axial, coronal, sagittal slices) and in 3D (MedicalNet), from local weights;
- ``c2st``: held-out accuracy of a small 3D CNN trained to tell real from synthetic (:func:`common.metrics.c2st`;
  0.5 indistinguishable, 1.0 trivially told apart), with its confidence interval: needs no pretrained weights;
- ``memorisation``: each synthetic volume's nearest real volume by MS-SSIM, flagged above a threshold;
- ``paired``: MSE, PSNR and SSIM of generated volumes against their paired real ones (only when pairs exist);
- ``background``: mean intensity outside the head, as a fraction of the intensity range, outside the conditioning
  masks (``outputs.json`` with masks) or else outside the real cohort's background, beside the real cohort's value;
- ``contrast``: mean tumour-to-brain intensity ratio of volumes generated from masks (Med-DDPM) and of the real
  volumes with labels (only when conditioning masks exist).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import (
    Compose,
    ResizeWithPadOrCropd,
    ScaleIntensityd,
)
from tqdm import tqdm

from common.data.datalist import load_datalist
from common.data.nifti import nifti_files, nifti_stem
from common.errors import InputError
from common.metrics import (
    SliceFeatureExtractor,
    VolumeFeatureExtractor,
    background_intensity,
    background_mask,
    c2st,
    diversity_report,
    fid,
    load_feature_network,
    mmd,
    nearest_neighbours,
    paired_metrics,
    random_feature_network,
    tumour_brain_ratio,
)
from common.transforms import LoadVolumesd
from common.visualize import evaluation_figure

logger = logging.getLogger(__name__)

METRICS = ("diversity", "mmd", "fid", "c2st", "memorisation", "paired", "background", "contrast")
"""Valid metric names, in the order they are computed."""

FID_KINDS = {
    "sagittal": ("resnet2d", 0),
    "coronal": ("resnet2d", 1),
    "axial": ("resnet2d", 2),
    "3d": ("medicalnet3d", None),
}
"""FID variants: (feature network kind, slice axis of RAS volumes, or None for whole volumes)."""

RANDOM_WEIGHTS = "random-for-testing"
"""``fid_weights`` value that asks for randomly initialised feature networks: tests the plumbing, FID meaningless."""

WRITER_KEYS = ("sample_index", "mask_source", "mask", "preview")
"""Keys of a ``GeneratedVolumeWriter`` record that are not generated channels."""


def _real_items(real: Path, sections: Sequence[str], image_key: str, channel: int) -> list[dict[str, Any]]:
    """``{"path", "name", "label"}`` of each real volume: the ``image_key`` items of a datalist's ``sections``
    (channel ``channel`` of multi-file images, ``label`` the resolved mask path if any), or a folder's NIfTI files."""
    if real.is_dir():
        return [{"path": p, "name": p.name, "label": None} for p in nifti_files(real)]
    if not real.is_file():
        raise FileNotFoundError(f"{real}: no such datalist JSON or NIfTI folder")
    available = list(json.loads(real.read_text()))
    present = [s for s in sections if s in available]
    if not present:
        raise InputError(f"{real}: none of the sections {list(sections)} is in the datalist; it has {available}")
    items = []
    for item in load_datalist(real, present):
        if image_key not in item:
            raise InputError(f"{real}: an item has no {image_key!r} key (keys: {sorted(item)}); set image_key")
        image = item[image_key]
        path = Path(image[channel] if isinstance(image, list) else image)
        label = Path(item["label"]).resolve() if isinstance(item.get("label"), str) else None
        items.append({"path": path, "name": path.name, "label": label})
    return items


def _resolve_output(folder: Path, listed: str) -> Path:
    """A file listed in ``outputs.json``: as written, else the file of that name in ``folder`` (moved outputs)."""
    path = Path(listed)
    if not path.is_file():
        path = folder / path.name
    if not path.is_file():
        raise FileNotFoundError(f"{folder / 'outputs.json'}: listed file {listed} does not exist")
    return path


def _synthetic_items(
    folder: Path, pattern: str, synthetic_key: str | None, channel: int, real_items: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``{"path", "name", "pair", "mask"}`` of each synthetic volume; ``pair`` indexes the real item whose mask it
    was generated from (by ``mask_source`` in ``outputs.json``), else None; ``mask`` is the mask it was generated
    from (``mask`` in ``outputs.json``), else None."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder of synthetic volumes")
    listing = folder / "outputs.json"
    if not listing.is_file():
        paths = [p for p in sorted(folder.glob(pattern)) if p.is_file() and not (nifti_stem(p) or "").endswith("_mask")]
        return [{"path": p, "name": p.name, "pair": None, "mask": None} for p in paths]
    by_label = {item["label"]: i for i, item in enumerate(real_items) if item["label"] is not None}
    items = []
    for record in json.loads(listing.read_text()):
        channels = [key for key in record if key not in WRITER_KEYS]
        if synthetic_key is None and channel >= len(channels):
            raise InputError(f"{listing}: channel {channel} asked for, but the records have channels {channels}")
        key = synthetic_key or channels[channel]
        if key not in record:
            raise InputError(f"{listing}: a record has no {key!r} key (generated channels: {channels})")
        path = _resolve_output(folder, record[key])
        source = record.get("mask_source")
        pair = by_label.get(Path(source).resolve()) if source else None
        mask = _resolve_output(folder, record["mask"]) if record.get("mask") else None
        items.append({"path": path, "name": path.name, "pair": pair, "mask": mask})
    return items


def _subset(items: list[dict[str, Any]], max_volumes: int | None, seed: int) -> list[dict[str, Any]]:
    """At most ``max_volumes`` items, a seeded random subset kept in order."""
    if max_volumes is None or len(items) <= max_volumes:
        return items
    chosen = np.sort(np.random.default_rng(seed).choice(len(items), size=max_volumes, replace=False))
    return [items[i] for i in chosen]


def _load_volumes(
    paths: Sequence[Path], spatial_size: Sequence[int] | None, desc: str, verbose: bool, scale: bool = True
) -> torch.Tensor:
    """Volumes (N, 1, X, Y, Z) in RAS, padded or cropped to ``spatial_size`` (default: the first file's shape) and
    scaled to [0, 1] each (label maps: ``scale=False``). Raises ValueError naming the file for unreadable, 4D or
    non-finite volumes."""
    load = LoadVolumesd("image", num_channels=[1])
    prepare = None
    volumes = []
    for path in tqdm(paths, desc=desc, disable=not verbose):
        volume = load.read({"image": path})
        if prepare is None:  # the size is known once the first volume is loaded
            size = tuple(volume["image"].shape[1:]) if spatial_size is None else spatial_size
            scaling = [ScaleIntensityd("image", 0.0, 1.0)] if scale else []
            prepare = Compose([ResizeWithPadOrCropd("image", size), *scaling])
        volumes.append(prepare(volume)["image"].as_tensor().float())
    return torch.stack(volumes)


def _too_few(counts: Mapping[str, int], minimum: int = 2) -> str | None:
    """Why a metric comparing sets is skipped when a set has fewer than ``minimum`` volumes, else ``None``."""
    short = {name: n for name, n in counts.items() if n < minimum}
    return f"needs at least {minimum} volumes per set, got {short}" if short else None


def _background_report(
    real: torch.Tensor,
    synthetic: torch.Tensor,
    synthetic_items: Sequence[dict[str, Any]],
    threshold: float,
    verbose: bool,
) -> dict[str, Any] | str:
    """The ``background`` entry of :func:`evaluate` for volumes (N, 1, X, Y, Z) in [0, 1], or why it is skipped.

    Synthetic volumes are measured outside their conditioning masks (label 0) when all have one, else, as the real
    ones always are, in the real cohort's background: the voxels at or below ``threshold`` in 95 % of the real
    volumes (:func:`common.metrics.background_mask`).
    """
    cohort_background = background_mask(real, threshold=threshold)
    if not cohort_background.any():
        return f"no voxel is at or below {threshold} in 95 % of the real volumes; raise background_threshold"
    real_values = background_intensity(real, cohort_background)
    conditioned = all(item["mask"] is not None for item in synthetic_items)
    if conditioned:
        masks = _load_volumes([i["mask"] for i in synthetic_items], real.shape[2:], "loading masks", verbose, False)
        synthetic_values = background_intensity(synthetic, masks == 0)
    else:
        synthetic_values = background_intensity(synthetic, cohort_background)
    return {
        "synthetic_mean": synthetic_values.mean().item(),
        "synthetic_max": synthetic_values.max().item(),
        "real_mean": real_values.mean().item(),
        "head_mask": "conditioning masks" if conditioned else "real cohort background",
        "threshold": threshold,
        "num_cohort_background_voxels": int(cohort_background.sum()),
        "volumes": [
            {"synthetic_file": item["name"], "background": value}
            for item, value in zip(synthetic_items, synthetic_values.tolist(), strict=True)
        ],
    }


def _contrast_report(
    real: torch.Tensor,
    synthetic: torch.Tensor,
    real_items: Sequence[dict[str, Any]],
    synthetic_items: Sequence[dict[str, Any]],
    tumour_labels: Sequence[int],
    brain_labels: Sequence[int],
    verbose: bool,
) -> dict[str, Any] | str:
    """The ``contrast`` entry of :func:`evaluate`: mean tumour-to-brain intensity ratio of the synthetic volumes
    with a conditioning mask holding both regions, and of the real volumes with such a label; or why it is skipped.
    """
    spatial_size = real.shape[2:]
    ratios: dict[str, list[float]] = {}
    for name, volumes, items, key in (
        ("synthetic", synthetic, synthetic_items, "mask"),
        ("real", real, real_items, "label"),
    ):
        indices = [k for k, item in enumerate(items) if item[key] is not None]
        if not indices:
            ratios[name] = []
            continue
        masks = _load_volumes([items[k][key] for k in indices], spatial_size, f"loading {name} masks", verbose, False)
        values = tumour_brain_ratio(volumes[indices], masks, tumour_labels, brain_labels)
        ratios[name] = values[~values.isnan()].tolist()
    if not ratios["synthetic"]:
        return (
            f"no synthetic volume has a conditioning mask with tumour labels {list(tumour_labels)} and brain labels "
            f"{list(brain_labels)}"
        )
    synthetic_ratio = float(np.mean(ratios["synthetic"]))
    real_ratio = float(np.mean(ratios["real"])) if ratios["real"] else None
    return {
        "synthetic_ratio": synthetic_ratio,
        "real_ratio": real_ratio,
        "ratio_difference": None if real_ratio is None else synthetic_ratio - real_ratio,
        "num_synthetic": len(ratios["synthetic"]),
        "num_real": len(ratios["real"]),
        "tumour_labels": list(tumour_labels),
        "brain_labels": list(brain_labels),
    }


def metric_table(results: Mapping[str, Any]) -> list[str]:
    """The metric table of :func:`evaluate` results as text: one ``group.name: value`` line per scalar metric."""
    lines = []
    for group in METRICS:
        for name, value in results.get(group, {}).items():
            if isinstance(value, float):
                lines.append(f"{group}.{name}: {value:.4g}")
            elif isinstance(value, int | bool):
                lines.append(f"{group}.{name}: {value}")
    return lines


def _check_output_dir(output_dir: Path, inputs: Sequence[Path]) -> None:
    """Refuse an ``output_dir`` that holds an input file (metrics.json and the figure go into a folder of their own)."""
    folders = {path.resolve().parent for path in inputs}
    if output_dir.resolve() in folders:
        raise InputError(f"output_dir {output_dir} holds input files; choose a folder of its own for the evaluation")


def evaluate(
    real: str | Path,
    synthetic: str | Path,
    output_dir: str | Path,
    metrics: Sequence[str] | str = ("diversity", "mmd", "c2st", "memorisation", "paired", "background", "contrast"),
    spatial_size: Sequence[int] | None = None,
    image_key: str = "image",
    sections: Sequence[str] = ("training", "validation"),
    synthetic_pattern: str = "*.nii.gz",
    synthetic_key: str | None = None,
    channel: int = 0,
    fid_weights: str | Mapping[str, str] | None = None,
    fid_kinds: Sequence[str] = ("axial", "coronal", "sagittal", "3d"),
    fid_depths: Mapping[str, int] | None = None,
    num_pairs: int = 100,
    kernel_size: int = 11,
    memorisation_threshold: float = 0.95,
    c2st_folds: int = 5,
    c2st_epochs: int = 30,
    c2st_size: Sequence[int] | int | None = 32,
    background_threshold: float = 0.05,
    tumour_labels: Sequence[int] = (2,),
    brain_labels: Sequence[int] = (1,),
    max_volumes: int | None = None,
    num_figure_rows: int = 4,
    seed: int = 0,
    verbose: bool = True,
) -> dict[str, Any]:
    """Evaluate synthetic volumes against real ones; write ``metrics.json`` and ``evaluation.png`` in ``output_dir``.

    Every volume is loaded with MONAI transforms (``LoadImaged``, ``EnsureChannelFirstd``, a check that it is one
    finite 3D volume, ``Orientationd("RAS")``, ``ResizeWithPadOrCropd(spatial_size)``, ``ScaleIntensityd`` to
    [0, 1]) into memory, (N, 1, X, Y, Z) per set, with a progress bar. Inputs are only read.

    Args:
        real: a datalist JSON (the ``image_key`` items of its ``sections`` that it has; by default training and
            validation, i.e. every real subject) or a folder of NIfTI files.
        synthetic: a folder of NIfTI files: those of its ``outputs.json`` when it has one (written by
            ``GeneratedVolumeWriter``; volumes generated from a mask of the datalist are paired with its image),
            else those matching ``synthetic_pattern`` except ``*_mask`` files.
        output_dir: folder for ``metrics.json`` and ``evaluation.png``; it must not hold any input file.
        metrics: names from :data:`METRICS` (a comma-separated string works too). ``diversity``, ``mmd``, ``fid``
            and ``c2st`` are skipped (and the reason recorded under ``"skipped"``) when a set has fewer than 2
            volumes, ``paired`` when no synthetic volume has a pair, ``contrast`` when none has a
            conditioning mask with a tumour, ``background`` when the real volumes share no background.
        spatial_size: (X, Y, Z) all volumes are padded or cropped to; default: the first real volume's shape.
        image_key: datalist key of the real images.
        sections: datalist sections to read.
        synthetic_pattern: glob of the synthetic files when there is no ``outputs.json``.
        synthetic_key: ``outputs.json`` key of the image to evaluate (e.g. ``"t1ce"``); default: the
            ``channel``-th generated channel.
        channel: which file of multi-file datalist images (e.g. BraTS ``[t1, t1ce, t2, flair]``) is the real image,
            and which generated channel of ``outputs.json`` the synthetic one.
        fid_weights: local weights of the FID feature networks: one path for all kinds needed, or a mapping
            ``{"resnet2d": path, "medicalnet3d": path}`` (see :func:`common.metrics.load_feature_network`, whose
            error says what to provide when missing). :data:`RANDOM_WEIGHTS` uses random networks, for tests only:
            metrics.json then labels the FID values meaningless.
        fid_kinds: FID variants, keys of :data:`FID_KINDS` (per-view 2D FID and 3D FID).
        fid_depths: ResNet depth per network kind, e.g. ``{"resnet2d": 18}`` (defaults: 50 in 2D, 10 in 3D).
        num_pairs: random pairs per set for the diversity MS-SSIM.
        kernel_size: Gaussian window side of MS-SSIM and SSIM (11, or 7 for volumes of 32 voxels per side).
        memorisation_threshold: MS-SSIM to the nearest real volume at or above which a synthetic one is flagged.
        c2st_folds: folds of the classifier two-sample test (fewer when a set has fewer volumes).
        c2st_epochs: training epochs of its classifier per fold.
        c2st_size: largest size (or side) of the volumes fed to the classifier, larger ones are shrunk to it by area
            averaging; ``None`` keeps them.
        background_threshold: intensity (fraction of each real volume's range) at or below which a real voxel is
            background, for the real cohort's background mask.
        tumour_labels: mask labels of the tumour, for ``contrast`` (Med-DDPM: 2).
        brain_labels: mask labels of the brain outside the tumour, for ``contrast`` (Med-DDPM: 1).
        max_volumes: evaluate at most this many volumes per set (a seeded random subset).
        num_figure_rows: volumes per set shown in the figure, and nearest-neighbour pairs shown.
        seed: seed of the subsets, the diversity pairs and random feature networks.
        verbose: show progress bars.

    Returns:
        the content of ``metrics.json``: ``settings``, ``counts``, ``files``, one entry per computed metric,
        ``skipped`` and ``outputs`` (the paths written). PSNR of identical pairs is ``Infinity``.

    Raises:
        ValueError: an unknown metric or FID kind, an empty set, a volume that is not one finite, non-constant 3D
            volume (naming the file), or an ``output_dir`` holding input files.
        FileNotFoundError: a missing input, or FID without weights (naming what to provide).
    """
    metrics = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in metrics if m not in METRICS] + [k for k in fid_kinds if k not in FID_KINDS]
    if unknown:
        raise InputError(
            f"unknown metric or FID kind {unknown}; metrics: {list(METRICS)}, FID kinds: {list(FID_KINDS)}"
        )
    real, synthetic, output_dir = Path(real), Path(synthetic), Path(output_dir)
    networks = {}
    if "fid" in metrics:  # fail on missing weights before loading any volume
        for kind in {FID_KINDS[k][0] for k in fid_kinds}:
            weights = fid_weights.get(kind) if isinstance(fid_weights, Mapping) else fid_weights
            depth = (fid_depths or {}).get(kind)
            networks[kind] = (
                random_feature_network(kind, seed=seed, depth=depth)
                if weights == RANDOM_WEIGHTS
                else load_feature_network(kind, weights, depth=depth)
            )
    real_items = _subset(_real_items(real, sections, image_key, channel), max_volumes, seed)
    synthetic_items = _subset(
        _synthetic_items(synthetic, synthetic_pattern, synthetic_key, channel, real_items), max_volumes, seed
    )
    for name, items, source in (("real", real_items, real), ("synthetic", synthetic_items, synthetic)):
        if not items:
            raise InputError(f"{source}: no {name} volumes found")
    listing = [synthetic / "outputs.json"] if (synthetic / "outputs.json").is_file() else []
    _check_output_dir(
        output_dir, [*(i["path"] for i in real_items + synthetic_items), *([real] if real.is_file() else []), *listing]
    )

    real_volumes = _load_volumes([i["path"] for i in real_items], spatial_size, "loading real", verbose)
    spatial_size = tuple(real_volumes.shape[2:])
    synthetic_volumes = _load_volumes([i["path"] for i in synthetic_items], spatial_size, "loading synthetic", verbose)
    counts = {"real": len(real_volumes), "synthetic": len(synthetic_volumes)}
    results: dict[str, Any] = {
        "settings": {
            "real": str(real),
            "synthetic": str(synthetic),
            "metrics": metrics,
            "spatial_size": list(spatial_size),
            "image_key": image_key,
            "sections": list(sections),
            "channel": channel,
            "num_pairs": num_pairs,
            "kernel_size": kernel_size,
            "memorisation_threshold": memorisation_threshold,
            "c2st_folds": c2st_folds,
            "c2st_epochs": c2st_epochs,
            "c2st_size": c2st_size,
            "background_threshold": background_threshold,
            "tumour_labels": list(tumour_labels),
            "brain_labels": list(brain_labels),
            "max_volumes": max_volumes,
            "seed": seed,
            "fid_weights": fid_weights,
            "fid_kinds": list(fid_kinds),
            "fid_depths": fid_depths,
        },  # fmt: skip
        "counts": counts,
        "files": {"real": [str(i["path"]) for i in real_items], "synthetic": [str(i["path"]) for i in synthetic_items]},
        "skipped": {},
    }
    ms_ssim_kwargs = {"kernel_size": kernel_size, "verbose": verbose}
    too_few = _too_few(counts)
    for name in ("diversity", "mmd", "fid", "c2st"):
        if name in metrics and too_few:
            results["skipped"][name] = too_few
    if "diversity" in metrics and not too_few:
        results["diversity"] = diversity_report(
            synthetic_volumes, real_volumes, num_pairs=num_pairs, seed=seed, **ms_ssim_kwargs
        )
    if "mmd" in metrics and not too_few:
        results["mmd"] = {"mmd": mmd(synthetic_volumes, real_volumes)}
    if "fid" in metrics and not too_few:
        fids: dict[str, Any] = {}
        for name in fid_kinds:
            kind, axis = FID_KINDS[name]
            extractor = (
                VolumeFeatureExtractor(networks[kind])
                if axis is None
                else SliceFeatureExtractor(networks[kind], axis=axis)
            )
            fids[name] = fid(synthetic_volumes, real_volumes, extractor, verbose=verbose)
        if fid_weights == RANDOM_WEIGHTS or isinstance(fid_weights, Mapping) and RANDOM_WEIGHTS in fid_weights.values():
            fids["meaningless"] = True
            fids["note"] = f"fid_weights={fid_weights!r}: random feature networks, for testing only; FID is meaningless"
        results["fid"] = fids
    if "c2st" in metrics and not too_few:
        results["c2st"] = c2st(
            real_volumes, synthetic_volumes, num_folds=c2st_folds, num_epochs=c2st_epochs, input_size=c2st_size,
            seed=seed, verbose=verbose,
        )  # fmt: skip
    if "memorisation" in metrics:
        neighbours = nearest_neighbours(
            synthetic_volumes, real_volumes, threshold=memorisation_threshold, **ms_ssim_kwargs
        )
        for entry in neighbours:
            entry["synthetic_file"] = synthetic_items[entry["synthetic"]]["name"]
            entry["nearest_real_file"] = real_items[entry["nearest_real"]]["name"]
        flagged = sum(entry["memorised"] for entry in neighbours)
        results["memorisation"] = {
            "threshold": memorisation_threshold,
            "num_memorised": flagged,
            "fraction_memorised": flagged / len(neighbours),
            "max_ms_ssim": max(entry["ms_ssim"] for entry in neighbours),
            "nearest_neighbours": neighbours,
        }
    if "paired" in metrics:
        pairs = [(s, item["pair"]) for s, item in enumerate(synthetic_items) if item["pair"] is not None]
        if not pairs:
            results["skipped"]["paired"] = "no synthetic volume was generated from a mask of the real datalist"
        else:
            report = paired_metrics(
                synthetic_volumes[[s for s, _ in pairs]], real_volumes[[r for _, r in pairs]], kernel_size=kernel_size
            )
            results["paired"] = {
                **{f"{name}_mean": report[f"{name}_mean"] for name in ("mse", "psnr", "ssim")},
                "num_pairs": len(pairs),
                "pairs": [
                    {
                        "synthetic_file": synthetic_items[s]["name"],
                        "real_file": real_items[r]["name"],
                        **{name: report[name][k] for name in ("mse", "psnr", "ssim")},
                    }
                    for k, (s, r) in enumerate(pairs)
                ],  # fmt: skip
            }
    reports = {}
    if "background" in metrics:
        reports["background"] = _background_report(
            real_volumes, synthetic_volumes, synthetic_items, background_threshold, verbose
        )
    if "contrast" in metrics:
        reports["contrast"] = _contrast_report(
            real_volumes, synthetic_volumes, real_items, synthetic_items, tumour_labels, brain_labels, verbose
        )
    for name, report in reports.items():
        if isinstance(report, str):
            results["skipped"][name] = report
        else:
            results[name] = report
    output_dir.mkdir(parents=True, exist_ok=True)
    metrics_file, figure = output_dir / "metrics.json", output_dir / "evaluation.png"
    results["outputs"] = {"metrics": str(metrics_file), "figure": str(figure)}
    neighbours = results.get("memorisation", {}).get("nearest_neighbours", [])
    evaluation_figure(real_volumes, synthetic_volumes, metric_table(results), neighbours, num_figure_rows, figure)
    metrics_file.write_text(json.dumps(results, indent=2))
    logger.info(f"wrote {metrics_file} and {figure}")
    return results
