"""Downstream tumour segmentation (Med-DDPM, Table II): does synthetic data train a segmenter as well as real data?

For each training setting (real only, synthetic only, real + synthetic) :func:`downstream_segmentation` trains a MONAI
3D :class:`~monai.networks.nets.UNet` (1 channel in, 2 classes out: background, tumour) with
:class:`~monai.engines.SupervisedTrainer`, evaluates it on held-out real subjects with
:class:`~monai.engines.SupervisedEvaluator`, and reports per-subject Dice, IoU, recall and precision with their
mean ± sd, in ``downstream_metrics.json``.

Scores of a subject (tumour channel only, on the binarised argmax prediction; MONAI metrics):

- Dice (``DiceMetric``) and IoU (``MeanIoU``) use ``ignore_empty=False``: a subject without tumour in ground truth
  scores 1 when nothing is predicted and 0 otherwise;
- recall (``ConfusionMatrixMetric`` "sensitivity", TP / (TP + FN)) is undefined, stored as ``None``, for a subject
  without tumour in ground truth; precision (TP / (TP + FP)) is undefined when nothing is predicted;
- mean and sd are over the subjects where the score is defined (``n`` says how many); sd is the population sd
  (ddof 0), which the paper's Table II appears to use.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from ignite.engine import Events
from ignite.handlers import ProgressBar
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import from_engine
from monai.inferers import Inferer, SimpleInferer
from monai.losses import DiceCELoss
from monai.metrics import ConfusionMatrixMetric, DiceMetric, MeanIoU
from monai.networks.nets import UNet
from monai.transforms import (
    AsDiscreted,
    Compose,
    EnsureTyped,
    LabelFilterd,
)
from monai.utils import set_determinism

from common.data.datalist import load_datalist
from common.transforms import LoadVolumesd

__all__ = [
    "DEFAULT_NETWORK_ARGS",
    "SEGMENTATION_METRICS",
    "DOWNSTREAM_SETTINGS",
    "SegmentationScores",
    "downstream_segmentation",
    "format_table",
    "segmentation_items",
    "segmentation_transforms",
    "summarise",
    "synthetic_items",
]

logger = logging.getLogger(__name__)

DOWNSTREAM_SETTINGS = ("real", "synthetic", "real+synthetic")
"""Training settings: which sets the segmenter is trained on."""

SEGMENTATION_METRICS = ("dice", "iou", "recall", "precision")

DEFAULT_NETWORK_ARGS: dict[str, Any] = {"channels": (16, 32, 64, 128), "strides": (2, 2, 2), "num_res_units": 2}
"""Arguments of :class:`monai.networks.nets.UNet` besides ``spatial_dims``, ``in_channels`` and ``out_channels``."""


class SegmentationScores:
    """Per-subject Dice, IoU, recall and precision of binary tumour segmentations, accumulated over batches.

    ``update`` takes one-hot predictions and labels of shape (B, 2, X, Y, Z) (channel 0 background, 1 tumour);
    ``per_subject`` returns one list of B_total values per metric, ``None`` where a score is undefined (see the
    module docstring).
    """

    def __init__(self) -> None:
        self.dice = DiceMetric(include_background=False, reduction="none", ignore_empty=False)
        self.iou = MeanIoU(include_background=False, reduction="none", ignore_empty=False)
        self.confusion = ConfusionMatrixMetric(
            include_background=False, metric_name=("sensitivity", "precision"), compute_sample=True, reduction="none"
        )

    def update(self, pred: torch.Tensor, label: torch.Tensor) -> None:
        for metric in (self.dice, self.iou, self.confusion):
            metric(y_pred=pred, y=label)

    def per_subject(self) -> dict[str, list[float | None]]:
        recall, precision = self.confusion.aggregate()
        values = {"dice": self.dice.aggregate(), "iou": self.iou.aggregate(), "recall": recall, "precision": precision}
        return {name: [_finite_or_none(v) for v in values[name][:, 0].tolist()] for name in SEGMENTATION_METRICS}


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def summarise(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """``{"mean", "sd", "n"}`` of the defined values (``None`` skipped); population sd; ``None`` if none defined."""
    defined = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if defined.size == 0:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": float(defined.mean()), "sd": float(defined.std()), "n": int(defined.size)}


def _nifti_shape(path: str) -> tuple[int, ...]:
    return tuple(int(s) for s in nib.load(path).shape)


def _check_items(items: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """Fail early, naming the set and the file, for missing keys or files and image/label shape mismatches."""
    for item in items:
        for key in ("image", "label"):
            if key not in item:
                raise ValueError(f"{name}: item {item} has no {key!r}")
            if not Path(item[key]).is_file():
                raise FileNotFoundError(f"{name}: {key} file {item[key]} does not exist")
        image, label = _nifti_shape(item["image"]), _nifti_shape(item["label"])
        if image[:3] != label[:3]:
            raise ValueError(f"{name}: image {item['image']} has shape {image}, its label {item['label']} has {label}")
    return items


def segmentation_items(
    source: str | Path | Sequence[Mapping[str, Any]], sections: str | Sequence[str] = "training", name: str = "real"
) -> list[dict[str, str]]:
    """``{"image", "label"}`` items of a datalist JSON (its ``sections``) or of a list of items, checked.

    Raises:
        FileNotFoundError: the datalist or a listed file does not exist.
        ValueError: an item without image or label, or whose image and label shapes differ.
    """
    if isinstance(source, (str, Path)):
        items = load_datalist(source, [sections] if isinstance(sections, str) else list(sections))
    else:
        items = [dict(item) for item in source]
    return _check_items([{"image": str(i.get("image", "")), "label": str(i.get("label", ""))} for i in items], name)


def synthetic_items(
    source: str | Path | Sequence[Mapping[str, Any]], image_key: str = "t1ce", label_key: str = "mask"
) -> list[dict[str, str]]:
    """Image/label items of generated volumes: a folder holding the ``outputs.json`` of
    :class:`common.engines.GeneratedVolumeWriter` (or that file), a datalist JSON (its ``"training"`` section) or
    a list of ``{"image", "label"}`` items.

    Raises:
        FileNotFoundError: no ``outputs.json`` in the folder, or a listed file does not exist.
        ValueError: a record without the image or the mask (e.g. volumes generated without a mask).
    """
    if not isinstance(source, (str, Path)):
        return segmentation_items(source, name="synthetic")
    path = Path(source)
    if path.is_dir():
        path = path / "outputs.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no synthetic outputs (outputs.json of an inference run) or datalist found")
    records = json.loads(path.read_text())
    if isinstance(records, dict):  # a datalist
        return segmentation_items(path, "training", name="synthetic")
    items = []
    for record in records:
        if image_key not in record or label_key not in record:
            raise ValueError(
                f"{path}: record {record} lacks {image_key!r} or {label_key!r}; a segmenter needs each generated "
                "image with its mask (volumes from a mask-conditioned model)"
            )
        items.append({"image": record[image_key], "label": record[label_key]})
    return _check_items(items, "synthetic")


def segmentation_transforms(spatial_size: Sequence[int], tumour_labels: Sequence[int] = (2,)) -> Compose:
    """Load an ``{"image", "label"}`` item as image (1, X, Y, Z) in [0, 1] and binary tumour label (1, X, Y, Z).

    Volumes are loaded by :class:`common.transforms.LoadVolumesd` (checked, oriented to RAS, centre-cropped or
    zero-padded to ``spatial_size``); the label is 1 where it holds one of ``tumour_labels``, 0 elsewhere.
    """
    keys = ["image", "label"]
    return Compose(
        [
            LoadVolumesd(keys, num_channels=[1, 1], spatial_size=spatial_size, intensity_range=(0.0, 1.0)),
            LabelFilterd("label", applied_labels=list(tumour_labels)),
            AsDiscreted("label", threshold=0.5),
            EnsureTyped(keys, dtype=torch.float32),
        ]
    )


def _train(
    setting: str,
    items: list[dict[str, str]],
    transform: Compose,
    network: torch.nn.Module,
    loss: torch.nn.Module,
    learning_rate: float,
    batch_size: int,
    max_epochs: int,
    max_iterations: int | None,
    num_workers: int,
    device: torch.device,
) -> int:
    """Train ``network`` in place with a ``SupervisedTrainer``; returns the number of iterations run."""
    loader = DataLoader(Dataset(items, transform), batch_size=batch_size, shuffle=True, num_workers=num_workers)
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=max_epochs if max_iterations is None else 1,
        epoch_length=None if max_iterations is None else max_iterations,
        train_data_loader=loader,
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), lr=learning_rate),
        loss_function=loss,
    )
    ProgressBar(persist=False, desc=f"train {setting}").attach(
        trainer, output_transform=from_engine(["loss"], first=True)
    )
    trainer.run()
    return trainer.state.iteration


def _evaluate(
    items: list[dict[str, str]],
    transform: Compose,
    network: torch.nn.Module,
    inferer: Inferer,
    num_workers: int,
    device: torch.device,
) -> dict[str, list[float | None]]:
    """Per-subject scores of ``network`` on ``items`` (batch size 1, argmax prediction)."""
    scores = SegmentationScores()
    evaluator = SupervisedEvaluator(
        device=device,
        val_data_loader=DataLoader(Dataset(items, transform), batch_size=1, num_workers=num_workers),
        network=network,
        inferer=inferer,
        postprocessing=Compose([AsDiscreted("pred", argmax=True, to_onehot=2), AsDiscreted("label", to_onehot=2)]),
    )

    @evaluator.on(Events.ITERATION_COMPLETED)
    def _update(engine: SupervisedEvaluator) -> None:
        for output in engine.state.output:
            scores.update(output["pred"][None], output["label"][None])

    ProgressBar(persist=False, desc="test").attach(evaluator)
    evaluator.run()
    return scores.per_subject()


def downstream_segmentation(
    real_train: str | Path | Sequence[Mapping[str, Any]] | None,
    real_test: str | Path | Sequence[Mapping[str, Any]],
    synthetic: str | Path | Sequence[Mapping[str, Any]] | None,
    output_dir: str | Path,
    spatial_size: Sequence[int] = (128, 128, 128),
    tumour_labels: Sequence[int] = (2,),
    settings: Sequence[str] = DOWNSTREAM_SETTINGS,
    real_train_sections: str | Sequence[str] = "training",
    real_test_sections: str | Sequence[str] = "validation",
    synthetic_image_key: str = "t1ce",
    synthetic_label_key: str = "mask",
    max_epochs: int = 100,
    max_iterations: int | None = None,
    batch_size: int = 4,
    learning_rate: float = 1e-4,
    network_args: Mapping[str, Any] | None = None,
    lambda_dice: float = 1.0,
    lambda_ce: float = 1.0,
    inferer: Inferer | None = None,
    seed: int = 0,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    save_models: bool = True,
) -> dict[str, Any]:
    """Train a 3D U-Net tumour segmenter per setting and score it on held-out real subjects (Med-DDPM, Table II).

    Args:
        real_train: real training subjects: a datalist JSON (its ``real_train_sections``) or ``{"image", "label"}``
            items; may be ``None`` when no setting uses real data.
        real_test: held-out real test subjects, the same way (``real_test_sections`` of a datalist).
        synthetic: generated subjects: a folder with the ``outputs.json`` of an inference run (image
            ``synthetic_image_key``, mask ``synthetic_label_key``), a datalist JSON or items; may be ``None`` when no
            setting uses synthetic data.
        output_dir: folder of ``downstream_metrics.json`` and, with ``save_models``, ``model_<setting>.pt``.
        spatial_size: volumes are centre-cropped or padded to this size (X, Y, Z).
        tumour_labels: label values that make the tumour class; every other value is background.
        settings: among ``"real"``, ``"synthetic"``, ``"real+synthetic"``.
        max_epochs: training epochs of each setting (an epoch is one pass over that setting's training set).
        max_iterations: if given, train exactly this many iterations instead, whatever the set size.
        batch_size / learning_rate: of the training loader and of Adam.
        network_args: :class:`monai.networks.nets.UNet` arguments besides the dimensions and channel counts
            (:data:`DEFAULT_NETWORK_ARGS` if not given).
        lambda_dice / lambda_ce: weights of :class:`monai.losses.DiceCELoss` (``lambda_dice=0`` is cross-entropy
            alone, i.e. binary cross-entropy of the tumour class).
        inferer: test-time inferer; :class:`monai.inferers.SimpleInferer` (whole volume) if not given.
        seed: passed to :func:`monai.utils.set_determinism` before each setting, so all start from the same weights.
        num_workers: data loader workers.
        device: ``"cuda"`` if available, else ``"cpu"``, if not given.
        save_models: write each trained network's state dict.

    Returns:
        The content of ``downstream_metrics.json``: ``config``, ``test`` (subjects, tumour-free count) and, per
        setting, ``train_size`` (real, synthetic), ``iterations``, ``per_subject`` scores and ``summary``
        (mean, sd, n per metric).

    Raises:
        ValueError: an unknown setting, a set a setting needs that is missing or empty, a bad item.
        FileNotFoundError: a missing datalist, outputs.json or listed file.
    """
    unknown = [s for s in settings if s not in DOWNSTREAM_SETTINGS]
    if unknown or not settings:
        raise ValueError(f"settings must be a non-empty subset of {DOWNSTREAM_SETTINGS}, got {list(settings)}")
    sets: dict[str, list[dict[str, str]]] = {"real": [], "synthetic": []}
    for part, source, name in (("real", real_train, "real_train"), ("synthetic", synthetic, "synthetic")):
        if not any(part in setting.split("+") for setting in settings):
            continue
        if source is None:
            raise ValueError(f"settings {list(settings)} need {name} data, got None")
        if part == "real":
            sets[part] = segmentation_items(source, real_train_sections, name=name)
        else:
            sets[part] = synthetic_items(source, synthetic_image_key, synthetic_label_key)
        if not sets[part]:
            raise ValueError(f"{name}: no subjects to train on")
    test = segmentation_items(real_test, real_test_sections, name="real_test")
    if not test:
        raise ValueError("real_test: no subjects to test on")

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    network_args = dict(DEFAULT_NETWORK_ARGS if network_args is None else network_args)
    transform = segmentation_transforms(spatial_size, tumour_labels)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "config": {
            "spatial_size": list(spatial_size),
            "tumour_labels": list(tumour_labels),
            "max_epochs": max_epochs,
            "max_iterations": max_iterations,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "network_args": {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in network_args.items()},
            "loss": {"name": "DiceCELoss", "lambda_dice": lambda_dice, "lambda_ce": lambda_ce},
            "seed": seed,
        },
        "test": {"subjects": [item["image"] for item in test]},
        "settings": {},
    }
    for setting in settings:
        parts = setting.split("+")
        items = [item for part in parts for item in sets[part]]
        logger.info(f"downstream setting {setting!r}: {len(items)} training subjects")
        set_determinism(seed=seed)
        network = UNet(spatial_dims=3, in_channels=1, out_channels=2, **network_args).to(device)
        loss = DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=lambda_dice, lambda_ce=lambda_ce)
        iterations = _train(
            setting,
            items,
            transform,
            network,
            loss,
            learning_rate,
            batch_size,
            max_epochs,
            max_iterations,
            num_workers,
            device,
        )
        per_subject = _evaluate(test, transform, network, inferer or SimpleInferer(), num_workers, device)
        if save_models:
            torch.save(network.state_dict(), output_dir / f"model_{setting.replace('+', '_')}.pt")
        report["settings"][setting] = {
            "train_size": {part: len(sets[part]) if part in parts else 0 for part in ("real", "synthetic")},
            "iterations": iterations,
            "per_subject": per_subject,
            "summary": {name: summarise(values) for name, values in per_subject.items()},
        }
    first = next(iter(report["settings"].values()))
    report["test"]["tumour_free"] = sum(value is None for value in first["per_subject"]["recall"])
    (output_dir / "downstream_metrics.json").write_text(json.dumps(report, indent=2))
    print(f"downstream segmentation, mean ± sd (n) on {len(test)} real test subject(s):\n{format_table(report)}")
    return report


def format_table(report: Mapping[str, Any]) -> str:
    """A plain-text table of a :func:`downstream_segmentation` report: one row per setting, mean ± sd per metric."""
    rows = [f"{'setting':<16}{'train (R/S)':<13}" + "".join(f"{m:<18}" for m in SEGMENTATION_METRICS)]
    for setting, result in report["settings"].items():
        size = f"{result['train_size']['real']}/{result['train_size']['synthetic']}"
        cells = []
        for metric in SEGMENTATION_METRICS:
            s = result["summary"][metric]
            cells.append("n/a" if s["mean"] is None else f"{s['mean']:.4f}±{s['sd']:.4f} ({s['n']})")
        rows.append(f"{setting:<16}{size:<13}" + "".join(f"{c:<18}" for c in cells))
    return "\n".join(rows)
