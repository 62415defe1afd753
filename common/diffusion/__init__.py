from .sampler import ConditionalDiffusionSampler, SeededSampler
from .schedulers import make_noise_scheduler
from .slice_diffusion import SliceDiffusionInferer, SliceNoiseLoss, StagedSliceSampler

__all__ = [
    "ConditionalDiffusionSampler",
    "SeededSampler",
    "SliceDiffusionInferer",
    "SliceNoiseLoss",
    "StagedSliceSampler",
    "make_noise_scheduler",
]
