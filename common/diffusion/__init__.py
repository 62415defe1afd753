from .field_sampler import TemplateWarpSampler
from .latent import LatentDiffusionSampler, VQLatentCodec
from .sampler import ConditionalDiffusionSampler, SeededSampler
from .schedulers import cosine_log_snr, make_noise_scheduler
from .slice_diffusion import SliceDiffusionInferer, SliceNoiseLoss, StagedSliceSampler

__all__ = [
    "ConditionalDiffusionSampler",
    "LatentDiffusionSampler",
    "SeededSampler",
    "SliceDiffusionInferer",
    "SliceNoiseLoss",
    "StagedSliceSampler",
    "TemplateWarpSampler",
    "cosine_log_snr",
    "VQLatentCodec",
    "make_noise_scheduler",
]
