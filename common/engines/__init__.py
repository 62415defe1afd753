from .checkpoint import (
    CheckpointSaver,
    ResumeFromLatestCheckpoint,
    checkpoint_iteration,
    latest_checkpoint,
    save_atomically,
)
from .prepare_batch import ConcatDiffusionPrepareBatch, ConditionOnlyPrepareBatch, SliceDiffusionPrepareBatch
from .writers import GeneratedVolumeWriter, SamplePreviewHandler

__all__ = [
    "CheckpointSaver",
    "ConcatDiffusionPrepareBatch",
    "ConditionOnlyPrepareBatch",
    "GeneratedVolumeWriter",
    "ResumeFromLatestCheckpoint",
    "checkpoint_iteration",
    "SamplePreviewHandler",
    "SliceDiffusionPrepareBatch",
    "latest_checkpoint",
    "save_atomically",
]
