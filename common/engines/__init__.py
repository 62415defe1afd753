from .checkpoint import (
    CheckpointSaver,
    ResumeFromLatestCheckpoint,
    checkpoint_iteration,
    latest_checkpoint,
    save_atomically,
    unwrap,
)
from .distributed import handlers_for_rank, init_process_group, local_device, wrap_ddp
from .ema import DelayedEMAHandler
from .field_writer import GeneratedFieldWriter
from .prepare_batch import (
    ConcatDiffusionPrepareBatch,
    ConditionOnlyPrepareBatch,
    LatentDiffusionPrepareBatch,
    SliceDiffusionPrepareBatch,
)
from .registration import DiffuseMorphIteration
from .vqgan import VQGANIteration, random_depth_slices
from .weights_fit import WeightsFitHandler
from .writers import GeneratedVolumeWriter, SamplePreviewHandler

__all__ = [
    "CheckpointSaver",
    "ConcatDiffusionPrepareBatch",
    "ConditionOnlyPrepareBatch",
    "DelayedEMAHandler",
    "DiffuseMorphIteration",
    "GeneratedFieldWriter",
    "GeneratedVolumeWriter",
    "LatentDiffusionPrepareBatch",
    "ResumeFromLatestCheckpoint",
    "checkpoint_iteration",
    "handlers_for_rank",
    "init_process_group",
    "local_device",
    "SamplePreviewHandler",
    "SliceDiffusionPrepareBatch",
    "VQGANIteration",
    "WeightsFitHandler",
    "latest_checkpoint",
    "random_depth_slices",
    "save_atomically",
    "unwrap",
    "wrap_ddp",
]
