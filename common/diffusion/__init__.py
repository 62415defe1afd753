from .field_sampler import TemplateWarpSampler
from .gaussian_oracle import ideal_sample_std, oracle_noise
from .latent import LatentDiffusionSampler, VQLatentCodec
from .sampler import ConditionalDiffusionSampler, SeededSampler
from .schedulers import (
    RespacedDDIMScheduler,
    RespacedDDPMScheduler,
    cosine_log_snr,
    make_noise_scheduler,
    sampling_scheduler,
    spaced_timesteps,
)
from .slice_diffusion import SliceDiffusionInferer, SliceNoiseLoss, StagedSliceSampler

__all__ = [
    "ConditionalDiffusionSampler",
    "RespacedDDIMScheduler",
    "RespacedDDPMScheduler",
    "LatentDiffusionSampler",
    "SeededSampler",
    "SliceDiffusionInferer",
    "SliceNoiseLoss",
    "StagedSliceSampler",
    "TemplateWarpSampler",
    "cosine_log_snr",
    "VQLatentCodec",
    "make_noise_scheduler",
    "sampling_scheduler",
    "ideal_sample_std",
    "oracle_noise",
    "spaced_timesteps",
]
