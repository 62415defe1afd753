"""Gaussian-oracle check of the samplers: sample std / data std at each step count, ours vs MONAI's vs closed form.

Data x0 ~ N(0, 0.5^2) and the exact noise predictor (``common.diffusion.gaussian_oracle``): an exact sampler's
sample std follows a closed recursion over its timesteps, below the data std at few steps (the discretisation of
the sampler, not a defect). MONAI 1.6's own ``DDPMScheduler`` (steps t -> t - 1 whatever N) and ``DDIMScheduler``
(jumps back T // N from linspace timesteps) are run on their own timesteps for comparison.

    python benchmarks/sampler_oracle.py
"""

from __future__ import annotations

import argparse

from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from common.diffusion import ideal_sample_std, make_noise_scheduler
from common.diffusion.gaussian_oracle import sample_std

SCHEDULES = {
    "cosine T=250 (Med-DDPM)": {"num_train_timesteps": 250, "schedule": "cosine"},
    "linear T=1000 (cDPM)": {"num_train_timesteps": 1000, "schedule": "linear_beta", "beta_start": 1e-4,
                             "beta_end": 0.02},
    "cosine T=300 (Medical Diffusion)": {"num_train_timesteps": 300, "schedule": "cosine"},
    "cosine log-SNR T=256 (DiffuseMorph)": {"num_train_timesteps": 256, "schedule": "cosine_log_snr"},
    "linear T=2000 (DiffuseMorph stage 1)": {"num_train_timesteps": 2000, "schedule": "linear_beta",
                                             "beta_start": 1e-6, "beta_end": 0.01},
}  # fmt: skip
MONAI = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50, 100])
    parser.add_argument("--data_std", type=float, default=0.5)
    parser.add_argument("--num_samples", type=int, default=20_000)
    args = parser.parse_args()
    print(f"sample std / data std ({args.data_std}), {args.num_samples} float64 samples; T = all training steps")
    print("| schedule | sampler | steps | closed form | ours | MONAI 1.6 |\n|---|---|---|---|---|---|")
    for name, schedule in SCHEDULES.items():
        for sampler in ("ddpm", "ddim"):
            for steps in [*args.steps, schedule["num_train_timesteps"]]:
                ours = make_noise_scheduler(sampler, num_inference_steps=steps, clip_sample=False, **schedule)
                monai = MONAI[sampler](clip_sample=False, **schedule)
                monai.set_timesteps(steps)
                ideal = ideal_sample_std(ours.alphas_cumprod, ours.timesteps.tolist(), sampler, args.data_std)
                figures = [sample_std(s, args.data_std, args.num_samples) / args.data_std for s in (ours, monai)]
                print(
                    f"| {name} | {sampler} | {steps} | {ideal / args.data_std:.3f} | {figures[0]:.3f} | "
                    f"{figures[1]:.3f} |"
                )


if __name__ == "__main__":
    main()
