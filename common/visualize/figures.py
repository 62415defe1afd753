"""The evaluation figure: real and synthetic tri-planar views, a metric table and nearest-neighbour pairs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from common.visualize.preview import triplanar_grid


def _tiles(volumes: torch.Tensor, factor: int) -> np.ndarray:
    """:func:`triplanar_grid` of volumes (N, 1, X, Y, Z), one row each, enlarged ``factor`` times, (H, W, 3) uint8."""
    grid = triplanar_grid(list(volumes))
    return grid.repeat(factor, axis=0).repeat(factor, axis=1)


def _side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 8) -> np.ndarray:
    """Two (H, W, 3) images next to each other, the shorter padded with black at the bottom."""
    height = max(left.shape[0], right.shape[0])
    padded = [np.pad(image, ((0, height - image.shape[0]), (0, 0), (0, 0))) for image in (left, right)]
    return np.concatenate([padded[0], np.zeros((height, gap, 3), np.uint8), padded[1]], axis=1)


def evaluation_figure(
    real: torch.Tensor,
    synthetic: torch.Tensor,
    metric_lines: Sequence[str],
    neighbours: Sequence[Mapping[str, Any]],
    num_rows: int,
    path: Path,
) -> Path:
    """Write the figure of :func:`common.evaluation.evaluate` to ``path`` (PNG).

    It shows real | synthetic tri-planar views of the first ``num_rows`` volumes of each set (N, 1, X, Y, Z), the
    metric table (``metric_lines``, as :func:`common.evaluation.metric_table` writes it), and the ``num_rows``
    synthetic volumes closest to a real one, each beside it.

    Args:
        real / synthetic: the volumes, (N, 1, X, Y, Z).
        metric_lines: lines of text shown under "Metrics".
        neighbours: the ``memorisation.nearest_neighbours`` entries of the results: ``synthetic`` and
            ``nearest_real`` indices, ``synthetic_file``, ``nearest_real_file``, ``ms_ssim`` and ``memorised``.
        num_rows: volumes per set shown, and nearest-neighbour pairs shown.
        path: output PNG path; parent folders are created.

    Returns:
        The path written.
    """
    factor = max(1, int(np.ceil(96 / min(real.shape[2:]))))
    blocks: list[tuple[str, list[str], np.ndarray | None]] = [
        (
            "Real (left) vs synthetic (right): axial, coronal, sagittal views",
            [],
            _side_by_side(_tiles(real[:num_rows], factor), _tiles(synthetic[:num_rows], factor)),
        ),
        ("Metrics", list(metric_lines), None),
    ]
    for entry in sorted(neighbours, key=lambda e: -e["ms_ssim"])[:num_rows]:
        s, r = entry["synthetic"], entry["nearest_real"]
        title = (
            f"synthetic {entry['synthetic_file']} (left) and its nearest real {entry['nearest_real_file']}: "
            f"MS-SSIM {entry['ms_ssim']:.3f}{' MEMORISED' if entry['memorised'] else ''}"
        )
        blocks.append((title, [], _side_by_side(_tiles(synthetic[s : s + 1], factor), _tiles(real[r : r + 1], factor))))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_height = measure.textbbox((0, 0), "Ag")[3] + 4
    texts = [line for title, lines, _ in blocks for line in (title, *lines)]
    width = 8 + max(max(measure.textlength(t) for t in texts), *(b[2].shape[1] for b in blocks if b[2] is not None))
    height = sum(
        line_height * (1 + len(lines)) + (0 if image is None else image.shape[0]) + 8 for _, lines, image in blocks
    )
    canvas = Image.new("RGB", (int(width), height), "black")
    draw, top = ImageDraw.Draw(canvas), 0
    for title, lines, image in blocks:
        for line, colour in zip((title, *lines), ("yellow", *["white"] * len(lines)), strict=True):
            draw.text((4, top), line, fill=colour)
            top += line_height
        if image is not None:
            canvas.paste(Image.fromarray(image), (4, top))
            top += image.shape[0]
        top += 8
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
