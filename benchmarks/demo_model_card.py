"""Measure a demo model against held-out real volumes and write its card (``metrics.json`` beside the weights).

The bundle's ``inference.json`` + ``demo_cpu.json`` generates ``--num_volumes`` volumes with the weights of
``--ckpt_dir`` (respaced DDPM, 50 steps; Med-DDPM from the validation masks of ``--real``), then
``common.evaluation.evaluate`` compares them with the ``validation`` subjects of ``--real`` (held out from training):
C2ST accuracy with its 95 % interval, MS-SSIM diversity of both sets, MMD, mean intensity outside the head, and for
Med-DDPM the tumour-to-brain intensity ratio. Memorisation is measured against the ``training`` subjects. The
real-vs-real figures (MMD and diversity of as many training subjects against the validation ones) give the scale.
For cDPM, the seam ratio is the mean absolute difference between neighbouring slices across a generation stage's
boundary over that within stages (``--stage_size`` slices per stage along the last axis), for the synthetic and the
held-out real volumes: about 1 means no visible seam.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/demo_model_card.py --bundle cdpm_brain_mri \\
        --ckpt_dir bundles/cdpm_brain_mri/models/demo --real data/demo/demo_s32_n64_seed0_t0.5/datalist.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from common.bundle_runner import run_bundle
from common.data import load_datalist
from common.evaluation import evaluate

MED_DDPM = "med_ddpm_brain_mri"
CDPM = "cdpm_brain_mri"


def seam_ratio(paths: list[Path], stage_size: int) -> float:
    """Mean |x[..., z + 1] - x[..., z]| over pairs that cross a stage boundary, over that of pairs within stages.

    Each volume (X, Y, Z) is scaled to [0, 1] by its own range; boundaries follow every ``stage_size`` slices.
    """
    across, within = [], []
    for path in paths:
        volume = np.asarray(nib.load(path).dataobj, dtype=np.float64)
        volume = (volume - volume.min()) / max(np.ptp(volume), 1e-8)
        steps = np.abs(np.diff(volume, axis=-1)).mean(axis=(0, 1))  # (Z - 1,): slice z to z + 1
        boundary = (np.arange(len(steps)) + 1) % stage_size == 0
        across.append(steps[boundary].mean())
        within.append(steps[~boundary].mean())
    return float(np.mean(across) / np.mean(within))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--ckpt_dir", required=True)
    parser.add_argument("--real", required=True, help="datalist whose validation subjects were held out")
    parser.add_argument("--num_volumes", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--output", help="card path; default CKPT_DIR/metrics.json")
    parser.add_argument("--work_dir", help="keep the generated volumes here (default: a temporary folder)")
    parser.add_argument("--stage_size", type=int, default=4, help="cDPM slices per generation stage")
    args = parser.parse_args()
    torch.set_num_threads(2)
    channel = "t1ce" if args.bundle == MED_DDPM else "t1"
    held_out = load_datalist(args.real, "validation")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir or tmp)
        synthetic = work / "synthetic"
        inputs = {"masks": args.real, "num_samples_per_mask": 1} if args.bundle == MED_DDPM else {}
        start = time.perf_counter()
        run_bundle(
            args.bundle, ["inference.json", "demo_cpu.json"], "run", ckpt_dir=args.ckpt_dir, output_dir=str(synthetic),
            sampler="ddpm", num_inference_steps=args.steps, seed=0, batch_size=4,
            **(inputs or {"num_volumes": args.num_volumes}),
        )  # fmt: skip
        seconds = time.perf_counter() - start
        options = {"synthetic_key": channel, "kernel_size": 7, "verbose": False}
        metrics = ["diversity", "mmd", "c2st", "background"] + (["contrast"] if args.bundle == MED_DDPM else [])
        quality = evaluate(args.real, synthetic, work / "held_out", metrics, sections=["validation"], **options)
        copied = evaluate(args.real, synthetic, work / "training", ["memorisation"], sections=["training"], **options)
        real_copies = work / "real_training"
        real_copies.mkdir()
        for item in load_datalist(args.real, "training")[: len(held_out)]:
            (real_copies / Path(item["image"]).name).symlink_to(Path(item["image"]).resolve())
        seams = None
        if args.bundle == CDPM:
            seams = {
                "seam_ratio": seam_ratio(sorted(synthetic.glob(f"*_{channel}.nii.gz")), args.stage_size),
                "seam_ratio_real": seam_ratio([Path(item["image"]) for item in held_out], args.stage_size),
            }
        scale = evaluate(
            args.real, real_copies, work / "real_vs_real", ["diversity", "mmd"], sections=["validation"],
            kernel_size=7, verbose=False,
        )  # fmt: skip
    card = {
        "bundle": args.bundle,
        "weights": args.ckpt_dir,
        "real": args.real,
        "num_synthetic": quality["counts"]["synthetic"],
        "num_real_held_out": quality["counts"]["real"],
        "sampler": f"respaced DDPM, {args.steps} steps",
        "generation_seconds": round(seconds, 1),
        "c2st": quality["c2st"]["accuracy"],
        "c2st_ci": [quality["c2st"]["ci_low"], quality["c2st"]["ci_high"]],
        "diversity": quality["diversity"]["ms_ssim_synthetic"],
        "diversity_real": quality["diversity"]["ms_ssim_real"],
        "mmd": quality["mmd"]["mmd"],
        "mmd_real_vs_real": scale["mmd"]["mmd"],
        "background": quality["background"]["synthetic_mean"],
        "background_real": quality["background"]["real_mean"],
        "memorised": copied["memorisation"]["num_memorised"],
        "max_ms_ssim_to_training": copied["memorisation"]["max_ms_ssim"],
    }
    if seams is not None:
        card.update(seams)
    if "contrast" in quality:
        card["contrast"] = quality["contrast"]["synthetic_ratio"]
        card["contrast_real"] = quality["contrast"]["real_ratio"]
    output = Path(args.output or Path(args.ckpt_dir) / "metrics.json")
    output.write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
