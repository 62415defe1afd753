from .sampler import ConditionalDiffusionSampler
from .schedulers import make_noise_scheduler

__all__ = ["ConditionalDiffusionSampler", "make_noise_scheduler"]
