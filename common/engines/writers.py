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
from common.diffusion import SeededSampler
from common.visualize import save_triplanar_preview

logger = logging.getLogger(__name__)


def _affine(tensor: torch.Tensor) -> np.ndarray:
    """World affine of a MetaTensor (RAS, as MONAI keeps it); the identity for plain tensors."""
    if isinstance(tensor, MetaTensor):
        return np.asarray(tensor.affine, dtype=np.float64)
    return np.eye(4)


class GeneratedVolumeWriter:
    """Write each generated volume as NIfTI with a meaningful affine, plus PNG previews (and its mask, if any).

    For every generated item (``engine.state.output[i][pred_key]``, shape (C, X, Y, Z)) and its input item
    (``engine.state.batch[i]``, holding the ``sample_index_key`` and, for mask-conditioned models, the integer
    ``mask_key`` map (1, X, Y, Z) with its metadata), as decollated by MONAI engines, it writes in ``output_dir``::

        <name>_sample<kk>_<channel name>.nii.gz   one file per generated channel, intensities in [0, 1]
        <name>_sample<kk>_mask.nii.gz             the (possibly edited) mask the volume was generated from
        <name>_sample<kk>.png                     tri-planar preview, mask drawn in colour

    where ``<name>`` is the mask's file name, or ``name_prefix`` for unconditional models (which write no mask), and
    ``<kk>`` the sample index in two digits (``_sample00``, ``_sample01``, ...).
    Volumes take the mask's affine, or ``affine`` without a mask. When the run completes it writes
    ``preview.png`` (a grid of the first ``max_preview`` volumes) and ``outputs.json`` listing every output.
    Outputs never replace an input: writing to a path any item volume was read from raises.

    Args:
        output_dir: output folder (created).
        channel_names: one name per generated channel, e.g. ``["t1ce"]`` or ``["t1", "t1ce", "t2", "flair"]``.
        pred_key / mask_key: keys of the generated image and of the mask in the output dicts; ``mask_key=None``
            for unconditional models.
        sample_index_key: key of the sample index of an item (several samples per mask).
        value_range: intensity range of the model output, mapped linearly to [0, 1].
        max_preview: volumes in the final grid preview.
        affine: 4x4 voxel-to-world affine of volumes generated without a mask (e.g.
            ``common.data.centred_affine``); the identity if not given.
        name_prefix: file name prefix of volumes generated without a mask.
    """

    def __init__(
        self,
        output_dir: str | Path,
        channel_names: Sequence[str] = ("image",),
        pred_key: str = "pred",
        mask_key: str | None = "label",
        sample_index_key: str = "sample_index",
        value_range: tuple[float, float] = (-1.0, 1.0),
        max_preview: int = 8,
        affine: Sequence[Sequence[float]] | np.ndarray | None = None,
        name_prefix: str = "generated",
    ) -> None:
        self.output_dir = Path(output_dir)
        self.channel_names = list(channel_names)
        self.pred_key, self.mask_key, self.sample_index_key = pred_key, mask_key, sample_index_key
        self.value_range = value_range
        self.max_preview = max_preview
        self.affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
        self.name_prefix = name_prefix
        self.written: list[dict[str, Any]] = []
        self._preview: list[tuple[np.ndarray, np.ndarray | None]] = []

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
            pred = output[self.pred_key]
            if pred.shape[0] != len(self.channel_names):
                raise ValueError(f"got {pred.shape[0]} generated channels but channel_names {self.channel_names}")
            mask = item[self.mask_key] if self.mask_key is not None else None
            inputs = {Path(source_name(value)).resolve() for value in item.values() if isinstance(value, MetaTensor)}
            index = int(torch.as_tensor(item.get(self.sample_index_key, 0)).item())
            record: dict[str, Any] = {"sample_index": index}
            name, affine, labels = self.name_prefix, self.affine, None
            if mask is not None:
                record = {"mask_source": source_name(mask), **record}
                name, affine = nifti_stem(record["mask_source"]) or name, _affine(mask)
                labels = np.rint(torch.as_tensor(mask).detach().cpu().numpy()[0]).astype(np.uint8)
            prefix = self.output_dir / f"{name}_sample{index:02d}"
            low, high = self.value_range
            image = ((torch.as_tensor(pred).detach().cpu().float().numpy() - low) / (high - low)).clip(0, 1)
            for channel, channel_name in enumerate(self.channel_names):
                path = Path(f"{prefix}_{channel_name}.nii.gz")
                record[channel_name] = self._save_nifti(image[channel], affine, path, inputs)
            if labels is not None:
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

    For a mask-conditioned model the condition is the first item of the current training batch (decollated or
    not) and the preview shows the real image with its mask beside the image generated from that mask. For an
    unconditional model (``condition_key=None``) the preview shows one generated volume. The file is
    ``<output_dir>/iteration_<n>.png``.

    Args:
        network: the model to sample from (usually the EMA copy).
        sampler: a :class:`common.diffusion.SeededSampler`, e.g. ``ConditionalDiffusionSampler`` or
            ``StagedSliceSampler`` (a short DDIM schedule keeps previews cheap).
        output_dir: folder of the preview PNGs.
        interval: iterations between previews.
        condition_key / image_key / mask_key: batch keys; ``condition_key=None`` for unconditional models, whose
            sampler gets a batch of one (and whose training batch holds no whole image to show).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        sampler: SeededSampler,
        output_dir: str | Path,
        interval: int = 5000,
        condition_key: str | None = "condition",
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
        device = next(self.network.parameters()).device
        first: Mapping[str, torch.Tensor] = {}
        if self.condition_key is not None:
            batch = engine.state.batch
            first = batch[0] if isinstance(batch, Sequence) else {k: v[0] for k, v in batch.items()}
        inputs = first[self.condition_key][None] if first else torch.zeros(1)
        was_training = self.network.training
        self.network.eval()
        try:
            generated = self.sampler(inputs.to(device), self.network)[0].cpu()
        finally:
            self.network.train(was_training)
        path = self.output_dir / f"iteration_{engine.state.iteration:07d}.png"
        if not first:
            return save_triplanar_preview([generated[0]], path)
        mask = first[self.mask_key][0]
        return save_triplanar_preview([first[self.image_key][0], generated[0]], path, overlays=[mask, None])
