"""Ignite handlers that write generated volumes: NIfTI + PNG at inference, PNG previews during training."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor

from common.data.nifti import nifti_stem, source_name
from common.diffusion import ConditionalDiffusionSampler
from common.visualize import save_triplanar_preview

logger = logging.getLogger(__name__)


def _affine(tensor: torch.Tensor) -> np.ndarray:
    """World affine of a MetaTensor (RAS, as MONAI keeps it); the identity for plain tensors."""
    if isinstance(tensor, MetaTensor):
        return np.asarray(tensor.affine, dtype=np.float64)
    return np.eye(4)


class GeneratedVolumeWriter:
    """Write each generated volume as NIfTI with its mask's affine, the mask beside it, and PNG previews.

    For every generated item (``engine.state.output[i][pred_key]``, shape (C, X, Y, Z)) and its input item
    (``engine.state.batch[i]``, holding the integer ``mask_key`` map (1, X, Y, Z) with its metadata and the
    ``sample_index_key``), as decollated by MONAI engines, it writes in ``output_dir``::

        <mask name>_sample<k>_<channel name>.nii.gz   one file per generated channel, intensities in [0, 1]
        <mask name>_sample<k>_mask.nii.gz             the (possibly edited) mask the volume was generated from
        <mask name>_sample<k>.png                     tri-planar preview, mask drawn in colour

    and, when the run completes, ``preview.png`` (a grid of the first ``max_preview`` volumes) and ``outputs.json``
    listing every pair. Outputs never replace an input: writing to a path any item volume was read from raises.

    Args:
        output_dir: output folder (created).
        channel_names: one name per generated channel, e.g. ``["t1ce"]`` or ``["t1", "t1ce", "t2", "flair"]``.
        pred_key / mask_key: keys of the generated image and of the mask in the output dicts.
        sample_index_key: key of the sample index of a mask (several samples per mask).
        value_range: intensity range of the model output, mapped linearly to [0, 1].
        max_preview: volumes in the final grid preview.
    """

    def __init__(
        self,
        output_dir: str | Path,
        channel_names: Sequence[str] = ("image",),
        pred_key: str = "pred",
        mask_key: str = "label",
        sample_index_key: str = "sample_index",
        value_range: tuple[float, float] = (-1.0, 1.0),
        max_preview: int = 8,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.channel_names = list(channel_names)
        self.pred_key, self.mask_key, self.sample_index_key = pred_key, mask_key, sample_index_key
        self.value_range = value_range
        self.max_preview = max_preview
        self.written: list[dict[str, Any]] = []
        self._preview: list[tuple[np.ndarray, np.ndarray]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.finalize)

    def _reset(self, engine: Engine) -> None:
        self.written, self._preview = [], []

    def _save_nifti(self, array: np.ndarray, affine: np.ndarray, path: Path, inputs: set[Path]) -> str:
        if path.resolve() in inputs:
            raise FileExistsError(f"{path}: refusing to overwrite an input file; choose another output_dir")
        nib.save(nib.Nifti1Image(array, affine), str(path))
        return str(path)

    def __call__(self, engine: Engine) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for output, item in zip(engine.state.output, engine.state.batch, strict=True):
            pred, mask = output[self.pred_key], item[self.mask_key]
            if pred.shape[0] != len(self.channel_names):
                raise ValueError(f"got {pred.shape[0]} generated channels but channel_names {self.channel_names}")
            source = source_name(mask)
            inputs = {Path(source_name(value)).resolve() for value in item.values() if isinstance(value, MetaTensor)}
            index = int(torch.as_tensor(item.get(self.sample_index_key, 0)).item())
            prefix = self.output_dir / f"{(nifti_stem(source) or 'generated')}_sample{index:02d}"
            affine = _affine(mask)
            low, high = self.value_range
            image = ((torch.as_tensor(pred).detach().cpu().float().numpy() - low) / (high - low)).clip(0, 1)
            labels = np.rint(torch.as_tensor(mask).detach().cpu().numpy()[0]).astype(np.uint8)
            record = {"mask_source": source, "sample_index": index}
            for channel, name in enumerate(self.channel_names):
                record[name] = self._save_nifti(image[channel], affine, Path(f"{prefix}_{name}.nii.gz"), inputs)
            record["mask"] = self._save_nifti(labels, affine, Path(f"{prefix}_mask.nii.gz"), inputs)
            record["preview"] = str(
                save_triplanar_preview(list(image), f"{prefix}.png", overlays=[labels] * len(image))
            )
            self.written.append(record)
            if len(self._preview) < self.max_preview:
                self._preview.append((image[0], labels))
            logger.info(f"wrote {prefix}_*.nii.gz")

    def finalize(self, engine: Engine) -> None:
        if not self.written:
            return
        volumes, masks = zip(*self._preview, strict=True)
        grid = save_triplanar_preview(list(volumes), self.output_dir / "preview.png", overlays=list(masks))
        (self.output_dir / "outputs.json").write_text(json.dumps(self.written, indent=2))
        print(f"Generated {len(self.written)} volume(s) in {self.output_dir}; preview: {grid}")


class SamplePreviewHandler:
    """Every ``interval`` iterations, sample one volume from the (EMA) network and write a PNG preview.

    The condition is the first item of the current training batch (decollated or not); the preview shows the
    real image with its mask and the image generated from the same mask: ``<output_dir>/iteration_<n>.png``.

    Args:
        network: the model to sample from (usually the EMA copy).
        sampler: a :class:`ConditionalDiffusionSampler` (a short DDIM schedule keeps previews cheap).
        output_dir: folder of the preview PNGs.
        interval: iterations between previews.
        condition_key / image_key / mask_key: batch keys.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        sampler: ConditionalDiffusionSampler,
        output_dir: str | Path,
        interval: int = 5000,
        condition_key: str = "condition",
        image_key: str = "image",
        mask_key: str = "label",
    ) -> None:
        self.network = network
        self.sampler = sampler
        self.output_dir = Path(output_dir)
        self.interval = interval
        self.condition_key, self.image_key, self.mask_key = condition_key, image_key, mask_key

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self)

    def __call__(self, engine: Engine) -> Path:
        batch = engine.state.batch
        first: Mapping[str, torch.Tensor] = (
            batch[0] if isinstance(batch, Sequence) else {k: v[0] for k, v in batch.items()}
        )
        device = next(self.network.parameters()).device
        was_training = self.network.training
        self.network.eval()
        try:
            generated = self.sampler(first[self.condition_key][None].to(device), self.network)[0].cpu()
        finally:
            self.network.train(was_training)
        mask = first[self.mask_key][0]
        path = self.output_dir / f"iteration_{engine.state.iteration:07d}.png"
        return save_triplanar_preview([first[self.image_key][0], generated[0]], path, overlays=[mask, None])
