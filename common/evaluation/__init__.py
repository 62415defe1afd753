"""Evaluation of synthetic volumes: against real ones (metrics.json, figure) and by downstream tumour segmentation."""

from .downstream import (
    DEFAULT_NETWORK_ARGS,
    DOWNSTREAM_SETTINGS,
    SEGMENTATION_METRICS,
    SegmentationScores,
    downstream_segmentation,
    format_table,
    segmentation_items,
    segmentation_transforms,
    summarise,
    synthetic_items,
)
from .evaluate import FID_KINDS, METRICS, RANDOM_WEIGHTS, evaluate, metric_table

__all__ = [
    "DEFAULT_NETWORK_ARGS",
    "DOWNSTREAM_SETTINGS",
    "FID_KINDS",
    "METRICS",
    "RANDOM_WEIGHTS",
    "SEGMENTATION_METRICS",
    "SegmentationScores",
    "downstream_segmentation",
    "evaluate",
    "format_table",
    "metric_table",
    "segmentation_items",
    "segmentation_transforms",
    "summarise",
    "synthetic_items",
]
