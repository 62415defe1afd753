"""Sample quality and time against the number of sampling steps, respaced DDPM vs DDIM, on a bundle's demo model.

Med-DDPM (default): the network of ``inference.json`` + ``tiny_cpu.json`` is loaded with the EMA weights of the
shipped demo checkpoint (``models/demo/checkpoint_demo_s32.pt``) and conditioned on the validation masks of the 32³
demo cohort it was trained on. For each sampler and step count, one sample per mask (same seed) is scaled to [0, 1]
by its 0.5/99.5 percentiles (as the real images) and summarised: mean intensity outside the head (label 0), inside
the tumour (2) and the rest of the brain (1), and the correlation with the paired real image inside the head. Time
is the wall time of sampling both masks, in one process, with 2 threads.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/sampler_steps.py --steps 10 25 50 100 250

Unconditional bundles (``--bundle cdpm_brain_mri`` etc.): the bundle's ``inference.json`` + ``demo_cpu.json`` run
with the demo weights (``--ckpt_dir``, default ``models/demo``) and generate ``--num_volumes`` volumes per setting;
``common.evaluation.evaluate`` measures their mean intensity outside the head (the real cohort's background, on
[0, 1]) against the real volumes of ``--real`` (a datalist), and the mean inside the head of both sets. Time is the
wall time of the bundle run (weights loading included).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/sampler_steps.py --bundle cdpm_brain_mri --steps 10 25 50 100 \
        --real data/demo/demo_s32_n64_seed0_t0.5/datalist.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser

from common.bundle_runner import bundle_dir, run_bundle
from common.data import build_demo_cohort, mask_items
from common.diffusion import ConditionalDiffusionSampler, make_noise_scheduler
from common.evaluation import evaluate

BUNDLE = "med_ddpm_brain_mri"
LABELS = {"background": 0, "brain": 1, "tumour": 2}


def unit_range(volume: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the 0.5 and 99.5 percentiles, clipped."""
    low, high = np.percentile(volume, [0.5, 99.5])
    return np.clip((volume - low) / max(high - low, 1e-8), 0, 1)


def summarise(images: list[np.ndarray], reals: list[np.ndarray], masks: list[np.ndarray]) -> dict[str, float]:
    """Means per label over all volumes (X, Y, Z) in [0, 1]; mean correlation with the real image in the head."""
    stats = {}
    for name, label in LABELS.items():
        values = np.concatenate([image[mask == label] for image, mask in zip(images, masks, strict=True)])
        stats[name] = float(values.mean()) if values.size else float("nan")
    stats["correlation"] = float(
        np.mean(
            [
                np.corrcoef(image[mask > 0], real[mask > 0])[0, 1]
                for image, real, mask in zip(images, reals, masks, strict=True)
            ]
        )
    )
    return stats


def unconditional(args: argparse.Namespace) -> None:
    """The table of an unconditional bundle's demo model (see the module docstring)."""
    ckpt_dir = args.ckpt_dir or str(bundle_dir(args.bundle) / "models" / "demo")
    print(f"{args.bundle} demo model ({ckpt_dir}), {args.num_volumes} volumes per setting, real: {args.real}")
    print(f"{'sampler':<8}{'steps':>6}{'outside head':>14}{'real':>7}{'time s':>8}")
    for sampler in args.samplers:
        for steps in args.steps:
            with tempfile.TemporaryDirectory() as folder:
                start = time.perf_counter()
                run_bundle(
                    args.bundle, ["inference.json", "demo_cpu.json"], "run", ckpt_dir=ckpt_dir, output_dir=folder,
                    num_volumes=args.num_volumes, batch_size=args.num_volumes, sampler=sampler,
                    num_inference_steps=steps, seed=args.seed,
                )  # fmt: skip
                seconds = time.perf_counter() - start
                report = evaluate(
                    args.real, folder, Path(folder) / "evaluation", metrics=["background"], verbose=False,
                    sections=["validation"], synthetic_key="t1",
                )["background"]  # fmt: skip
            print(f"{sampler:<8}{steps:>6}{report['synthetic_mean']:>14.3f}{report['real_mean']:>7.3f}{seconds:>8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default=BUNDLE)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50, 100, 250])
    parser.add_argument("--samplers", nargs="+", default=["ddpm", "ddim"])
    parser.add_argument("--data_root", default="data/demo")
    parser.add_argument("--real", help="datalist of held-out real volumes (unconditional bundles)")
    parser.add_argument("--ckpt_dir", help="folder of the weights (unconditional bundles; default models/demo)")
    parser.add_argument("--num_volumes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.bundle != BUNDLE:
        unconditional(args)
        return

    folder = bundle_dir(BUNDLE)
    config = ConfigParser()
    config.read_config([str(folder / "configs" / name) for name in ("inference.json", "tiny_cpu.json")])
    cohort = build_demo_cohort(args.data_root, num_subjects=8, size=32, seed=0, tumour_fraction=0.5)
    config["masks"] = str(cohort / "datalist.json")
    config["mask_load_keys"], config["mask_load_channels"] = ["label", "image"], [1, 1]  # the real image too
    network = config.get_parsed_content("network_def").eval()
    checkpoint = torch.load(folder / "models" / "demo" / "checkpoint_demo_s32.pt", weights_only=True)
    network.load_state_dict(checkpoint["ema"])
    load = config.get_parsed_content("preprocessing")
    items = [load(item) for item in mask_items(config["masks"], sections="validation")]
    condition = torch.stack([item["condition"] for item in items]).as_tensor()
    masks = [item["label"][0].numpy() for item in items]
    reals = [unit_range(item["image"][0].numpy()) for item in items]

    print(f"Med-DDPM demo model ({checkpoint['trainer']['iteration']} iterations), {len(items)} validation masks")
    real = summarise(reals, reals, masks)
    header = f"{'sampler':<8}{'steps':>6}{'background':>12}{'tumour':>8}{'brain':>8}{'corr':>7}{'time s':>8}"
    print(header)
    print(f"{'real':<8}{'':>6}{real['background']:>12.3f}{real['tumour']:>8.3f}{real['brain']:>8.3f}{'1':>7}{'':>8}")
    for sampler in args.samplers:
        for steps in args.steps:
            scheduler = make_noise_scheduler(
                sampler, num_train_timesteps=config["num_train_timesteps"], schedule="cosine", num_inference_steps=steps
            )
            sample = ConditionalDiffusionSampler(scheduler, seed=args.seed, verbose=False)
            start = time.perf_counter()
            with torch.no_grad():
                images = sample(condition, network)
            seconds = time.perf_counter() - start
            stats = summarise([unit_range(image[0].numpy()) for image in images], reals, masks)
            print(
                f"{sampler:<8}{steps:>6}{stats['background']:>12.3f}{stats['tumour']:>8.3f}{stats['brain']:>8.3f}"
                f"{stats['correlation']:>7.2f}{seconds:>8.1f}"
            )


if __name__ == "__main__":
    main()
