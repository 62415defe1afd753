from .checkpoint import CheckpointSaver, ResumeFromLatestCheckpoint, latest_checkpoint, save_atomically
from .prepare_batch import ConcatDiffusionPrepareBatch, ConditionOnlyPrepareBatch
from .writers import GeneratedVolumeWriter, SamplePreviewHandler

__all__ = [
    "CheckpointSaver",
    "ConcatDiffusionPrepareBatch",
    "ConditionOnlyPrepareBatch",
    "GeneratedVolumeWriter",
    "ResumeFromLatestCheckpoint",
    "SamplePreviewHandler",
    "latest_checkpoint",
    "save_atomically",
]
