"""Does cDPM's unconditioned first stage generate the slices of the depth it is asked for?

Without condition slices, a slice-set network that sees slice indices only as relative distances cannot tell which
part of the volume it is asked for. With ``absolute_position`` (``SliceDiffusionUNet``) it can. This script takes a
trained cDPM bundle run and, for windows of ``--window`` adjacent slices spread over the depth, generates
``--num_samples`` unconditioned sets at those indices (``StagedSliceSampler.generate_stage``, DDIM). Each generated
slice is compared with the real cohort's slices at every depth z' by the Pearson correlation over its pixels, averaged
over samples and subjects. A slice asked for at depth z is placed at the z' of highest mean correlation
(``best``), and the rank of z among all z' (1: the asked depth matches best) is recorded.

Real slices are those of the bundle's training datalist after its loading and intensity transforms. Depths where
every real slice is constant (background above and below the head) have no correlation and are left out, both as
asked depths and as candidates. As a ceiling, the same figures are computed for the real slices themselves
(each subject's slice against the other subjects). The summary gives the mean |best - asked| in slices, its chance
levels (best drawn uniformly among the candidates, or always the middle depth), the mean rank, and the correlation
between asked and best depth. ``--relative_only`` evaluates a run trained with ``network_def#absolute_position false``
(the paper's relative positions only), the control.

    python benchmarks/cdpm_slice_position.py --bundle_root RUN --dataset_dir DEMO_COHORT \\
        --configs train.json tiny_cpu.json --spatial_size 32 32 32
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose
from monai.utils import convert_to_tensor

from common.data import load_datalist
from common.diffusion import StagedSliceSampler, sampling_scheduler

BUNDLE = Path(__file__).resolve().parent.parent / "bundles" / "cdpm_brain_mri"


def load_config(args: argparse.Namespace) -> ConfigParser:
    """The bundle's training config (network, schedule, data transforms) for the run and cohort of ``args``."""
    config = ConfigParser()
    config.read_config([str(BUNDLE / "configs" / name) for name in args.configs])
    config["bundle_root"], config["dataset_dir"] = args.bundle_root, args.dataset_dir
    config["device"] = "$torch.device('cpu')"
    if args.spatial_size:
        config["spatial_size"] = list(args.spatial_size)
    if args.relative_only:
        config["network_def#absolute_position"] = False
    return config


def real_slices(config: ConfigParser) -> torch.Tensor:
    """The training volumes as slices (N, D, H·W) in the model's intensity range."""
    load = config.get_parsed_content("load_transforms")  # one common.transforms.LoadVolumesd
    transform = Compose([load, *config.get_parsed_content("intensity_transforms")])
    axis = config["slice_axis"]
    volumes = [transform(item)["image"] for item in load_datalist(config.get_parsed_content("datalist"), "training")]
    return torch.stack([convert_to_tensor(v, track_meta=False)[0].movedim(axis, 0).flatten(1) for v in volumes]).float()


def generated_slices(config: ConfigParser, args: argparse.Namespace, starts: Sequence[int]) -> torch.Tensor:
    """Unconditioned slices (S, D, H·W) asked for at the indices of every window; other depths are NaN."""
    network = config.get_parsed_content("network_def")
    network.load_state_dict(torch.load(Path(args.bundle_root) / "models" / "model.pt", weights_only=True))
    network.eval()
    scheduler = sampling_scheduler(config.get_parsed_content("noise_scheduler"), "ddim", args.steps)
    spatial_size, axis = config["spatial_size"], config["slice_axis"]
    sampler = StagedSliceSampler(scheduler, spatial_size, axis=axis, stage_size=args.window, verbose=False)
    plane = [size for dim, size in enumerate(spatial_size) if dim != axis]
    no_conditions = torch.zeros(args.num_samples, 0, config["image_channels"], *plane)
    slices = torch.full((args.num_samples, spatial_size[axis], int(np.prod(plane))), float("nan"))
    for start in starts:
        targets = list(range(start, start + args.window))
        torch.manual_seed(args.seed + start)
        slices[:, targets] = sampler.generate_stage(network, no_conditions, [], targets).flatten(2)
    return slices


def standardise(slices: torch.Tensor) -> torch.Tensor:
    """Each slice (..., P) minus its mean, over its norm: dot products of two are Pearson correlations."""
    centred = slices - slices.mean(-1, keepdim=True)
    return centred / centred.norm(dim=-1, keepdim=True).clamp_min(1e-8)


def placement(scores: np.ndarray, asked: Sequence[int], candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best-matching depth and rank of the asked depth for every row of ``scores`` (asked, D)."""
    masked = np.where(candidates, scores, -np.inf)
    best = masked.argmax(axis=1)
    ranks = 1 + (masked > masked[np.arange(len(asked)), asked][:, None]).sum(axis=1)
    return best, ranks


def summary(asked: np.ndarray, best: np.ndarray, ranks: np.ndarray, candidates: np.ndarray) -> dict[str, float]:
    """Mean |best - asked|, mean rank, share of rank 1, correlation of asked and best depth.

    Two references for the error: ``chance`` (best drawn uniformly among the candidates) and ``middle`` (best always
    the middle candidate: roughly what a model that draws mid-volume slices wherever it is asked scores).
    """
    depths = np.flatnonzero(candidates)
    chance = np.abs(depths[None, :] - asked[:, None]).mean()
    middle = np.abs(np.median(depths).round() - asked).mean()
    return {
        "mean_abs_error_slices": float(np.abs(best - asked).mean()),
        "chance_mean_abs_error_slices": float(chance),
        "middle_mean_abs_error_slices": float(middle),
        "mean_rank": float(ranks.mean()),
        "num_candidates": int(len(depths)),
        "fraction_rank_1": float((ranks == 1).mean()),
        "corr_asked_best": float(np.corrcoef(asked, best)[0, 1]) if best.std() > 0 else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle_root", required=True, help="trained run: models/model.pt is loaded")
    parser.add_argument("--dataset_dir", required=True, help="cohort with datalist.json (the real slices)")
    parser.add_argument("--configs", nargs="+", default=["train.json"], help="bundle config files merged in order")
    parser.add_argument("--spatial_size", nargs=3, type=int, help="override of the configs' spatial_size")
    parser.add_argument(
        "--relative_only", action="store_true", help="the run was trained with network_def#absolute_position false"
    )
    parser.add_argument("--window", type=int, default=4, help="adjacent slices asked for at once")
    parser.add_argument("--num_samples", type=int, default=8, help="generated sets per window")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", help="write the figures to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = load_config(args)
    real = real_slices(config)  # (N, D, P)
    depth = real.shape[1]
    candidates = (real.std(-1) > 1e-6).any(0).numpy()  # depths with some non-constant real slice
    windows = range(0, depth - args.window + 1, args.window)
    starts = [start for start in windows if candidates[start : start + args.window].any()]
    generated = generated_slices(config, args, starts)  # (S, D, P)
    real_std, generated_std = standardise(real), standardise(generated)

    # mean correlation of each asked depth's generated slices with each depth's real slices: (D_asked, D)
    generated_scores = torch.einsum("szp,nyp->zy", generated_std, real_std) / (len(generated) * len(real))
    pairwise = torch.einsum("nzp,myp->zynm", real_std, real_std)  # (D, D, N, N) real slice against real slice
    others = 1 - torch.eye(len(real))
    real_scores = (pairwise * others).sum((-1, -2)) / others.sum()  # each subject against the others

    asked = np.array([z for start in starts for z in range(start, start + args.window) if candidates[z]])
    figures = {"settings": {k: v for k, v in vars(args).items() if k != "output"}, "depth": depth}
    print(f"depth {depth}; candidate depths {np.flatnonzero(candidates).min()}-{np.flatnonzero(candidates).max()}")
    print(f"{'asked':>8} | {'generated: best depth':>22} {'rank':>5} | {'real: best depth':>17} {'rank':>5}")
    for name, scores in (("generated", generated_scores), ("real", real_scores)):
        best, ranks = placement(scores.numpy()[asked], asked, candidates)
        figures[name] = summary(asked, best, ranks, candidates) | {"best": best.tolist(), "ranks": ranks.tolist()}
    gen, ceiling = figures["generated"], figures["real"]
    for z, gen_best, gen_rank, real_best, real_rank in zip(
        asked, gen["best"], gen["ranks"], ceiling["best"], ceiling["ranks"], strict=True
    ):
        print(f"{z:>8} | {gen_best:>22} {gen_rank:>5} | {real_best:>17} {real_rank:>5}")
    for name in ("generated", "real"):
        print(name, {k: round(v, 3) for k, v in figures[name].items() if not isinstance(v, list)})
    if args.output:
        Path(args.output).write_text(json.dumps(figures | {"asked": asked.tolist()}, indent=2))


if __name__ == "__main__":
    main()
