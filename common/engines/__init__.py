from .checkpoint import (
    CheckpointSaver,
    ResumeFromLatestCheckpoint,
    checkpoint_iteration,
    latest_checkpoint,
    unwrap,
)
from .distributed import handlers_for_rank, init_process_group, local_device, wrap_ddp
from .ema import DelayedEMAHandler
from .field_export import RegisteredFieldWriter, RegistrationInferer
from .field_writer import GeneratedFieldWriter
from .inference import inference_handlers
from .prepare_batch import (
    ConcatDiffusionPrepareBatch,
    LatentDiffusionPrepareBatch,
    SamplerInputPrepareBatch,
    SliceDiffusionPrepareBatch,
)
from .registration import DiffuseMorphIteration
from .training import IterationLimit, LossOutput, epochs_for, training_handlers
from .vqgan import VQGANIteration, random_depth_slices
from .weights_fit import WeightsFitHandler
from .writers import GeneratedVolumeWriter, SamplePreviewHandler

__all__ = [
    "CheckpointSaver",
    "ConcatDiffusionPrepareBatch",
    "DelayedEMAHandler",
    "DiffuseMorphIteration",
    "GeneratedFieldWriter",
    "GeneratedVolumeWriter",
    "IterationLimit",
    "LossOutput",
    "LatentDiffusionPrepareBatch",
    "RegisteredFieldWriter",
    "RegistrationInferer",
    "ResumeFromLatestCheckpoint",
    "checkpoint_iteration",
    "epochs_for",
    "handlers_for_rank",
    "inference_handlers",
    "init_process_group",
    "local_device",
    "SamplePreviewHandler",
    "SamplerInputPrepareBatch",
    "SliceDiffusionPrepareBatch",
    "VQGANIteration",
    "WeightsFitHandler",
    "latest_checkpoint",
    "random_depth_slices",
    "training_handlers",
    "unwrap",
    "wrap_ddp",
]
