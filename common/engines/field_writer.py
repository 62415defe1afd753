"""Ignite handler writing generated displacement fields (NIfTI, voxels) and their folding fractions."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

from common.data.fields import save_field
from common.metrics.deformation import folding_fraction

logger = logging.getLogger(__name__)


class GeneratedFieldWriter:
    """Write each generated field as ``<name_prefix>_sample<k>_field.nii.gz`` and, at the end, ``folding.json``.

    Reads ``engine.state.output[i][field_key]`` (3, X, Y, Z) in voxels and the sample index of
    ``engine.state.batch[i]`` (MONAI evaluators decollate both). ``folding.json`` lists each field's folding
    fraction (share of voxels with Jacobian determinant <= 0) and their mean.

    Args:
        output_dir: output folder (created).
        affine: 4x4 voxel-to-world affine of the fields' grid (the template's).
        field_key / sample_index_key: keys of the field in the outputs and of the sample index in the batch.
        name_prefix: file name prefix.
    """

    def __init__(
        self,
        output_dir: str | Path,
        affine: Sequence[Sequence[float]] | np.ndarray | torch.Tensor,
        field_key: str = "field",
        sample_index_key: str = "sample_index",
        name_prefix: str = "generated",
    ) -> None:
        self.output_dir = Path(output_dir)
        self.affine = np.asarray(affine, dtype=np.float64)
        self.field_key, self.sample_index_key = field_key, sample_index_key
        self.name_prefix = name_prefix
        self.records: list[dict[str, float | int | str]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.finalize)

    def _reset(self, engine: Engine) -> None:
        self.records = []

    def __call__(self, engine: Engine) -> None:
        for output, item in zip(engine.state.output, engine.state.batch, strict=True):
            field = torch.as_tensor(output[self.field_key]).detach().cpu().float()
            index = int(torch.as_tensor(item.get(self.sample_index_key, 0)).item())
            path = save_field(
                field, self.affine, self.output_dir / f"{self.name_prefix}_sample{index:02d}_field.nii.gz"
            )
            record = {
                "sample_index": index,
                "field": str(path),
                "folding_fraction": folding_fraction(field[None]).item(),
            }
            self.records.append(record)

    def finalize(self, engine: Engine) -> None:
        if not self.records:
            return
        mean = float(np.mean([record["folding_fraction"] for record in self.records]))
        report = {"unit": "voxel", "folding_fraction_mean": mean, "fields": self.records}
        (self.output_dir / "folding.json").write_text(json.dumps(report, indent=2) + "\n")
        logger.info(f"wrote {len(self.records)} field(s); mean folding fraction {mean:.4g}")
