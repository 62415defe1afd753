"""Peak memory and time of cDPM's slice-set model against a 3D DDPM at the same volume size.

cDPM (Peng et al. 2023) trains a 2D network on sets of slices and generates a volume in stages, so that it never
holds the whole volume's activations; Med-DDPM runs a 3D U-Net over the whole volume. For both networks, built
from their bundle's ``configs/train.json`` (``network_def``, plus optional override files), this script measures
at one volume size:

- train: one training iteration on random tensors (forward, the bundle's loss, backward, the bundle's optimizer
  step). cDPM: ``batch_size`` slice sets of ``max_slices`` slots (first half condition, second half target
  slices, distinct random slice indices), ``SliceNoiseLoss`` and AdamW. 3D: ``batch_size`` volumes of
  ``in_channels`` (image + mask channels), L1 loss against noise and Adam. One warm-up iteration, then the mean
  time of ``--repeats`` iterations.
- generate: generating one volume. Its peak memory is that of one denoising step at full size, so ``--steps``
  network forwards are timed under ``torch.no_grad()`` (after one warm-up forward) and the time of a whole
  generation is projected from them. cDPM: the forward of the largest stage of ``StagedSliceSampler.plan``
  (10 condition + 10 target slices with the paper's staging) while the whole volume (1, depth, C, H, W) is held,
  as the sampler does; full generation = ``--sampling-steps`` x stages x that time (13 stages for depth 128;
  an upper bound, as the first stage has only target slices). 3D: full generation = ``--ddpm3d-sampling-steps``
  (Med-DDPM samples with 250) x the time of one forward.

cDPM's staging (``stage_size``, ``condition_size``, ...) comes from its bundle's ``inference.json``, read before
the files of ``--cdpm-configs``, which may override it. Every measurement runs in its own Python process, so that
one measurement's memory does not show in another's. Memory is CUDA's ``max_memory_allocated`` on a GPU (the
baseline is the memory allocated once the network is built) and the peak resident set size of the process
(``ru_maxrss``) on the CPU (the baseline is the peak RSS after importing and building the network, i.e. what any
measurement costs before it starts). The summary gives the ratio of the 3D model's peak memory to cDPM's.

    python benchmarks/cdpm_memory.py --size 64 --device cpu
    python benchmarks/cdpm_memory.py --size 128 --device cuda
    python benchmarks/cdpm_memory.py --size 32 --device cpu \\
        --cdpm-configs train.json tiny_cpu.json --ddpm3d-configs train.json tiny_cpu.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from torch import nn

from common.diffusion import StagedSliceSampler
from common.slice_roles import CONDITION, TARGET

BUNDLES = Path(__file__).resolve().parent.parent / "bundles"
BUNDLE_OF = {"cdpm": "cdpm_brain_mri", "ddpm3d": "med_ddpm_brain_mri"}
PHASES = ("train", "generate")
KILLED = (-9, 137)  # SIGKILL, as the kernel's out-of-memory killer sends it, seen directly or through a shell
Step = Callable[[], None]


def load_config(model: str, files: Sequence[str], size: Sequence[int], device: str) -> ConfigParser:
    """The bundle's config at ``size`` (cDPM's ``max_distance`` depends on it); cDPM's also has its staging."""
    names = (["inference.json"] if model == "cdpm" else []) + list(files)
    config = ConfigParser()
    config.read_config([str(BUNDLES / BUNDLE_OF[model] / "configs" / name) for name in names])
    config["spatial_size"] = list(size)
    config["device"] = f"$torch.device('{device}')"
    return config


def count_parameters(model: str, files: Sequence[str], size: Sequence[int]) -> int:
    with torch.device("meta"):  # builds no weights
        network = load_config(model, files, size, "cpu").get_parsed_content("network_def")
    return sum(p.numel() for p in network.parameters())


def memory_mib(device: torch.device, peak: bool) -> float:
    """Peak (or, on a GPU, current) allocated CUDA memory, or the process's peak resident set size on the CPU."""
    if device.type == "cuda":
        allocated = torch.cuda.max_memory_allocated if peak else torch.cuda.memory_allocated
        return allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def mean_seconds(step: Step, repeats: int, device: torch.device) -> float:
    """Mean time of ``repeats`` calls of ``step`` after one warm-up call."""
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / repeats


def optimizer_step(config: ConfigParser, network: nn.Module, compute_loss: Callable[[], torch.Tensor]) -> Step:
    """One training iteration with the bundle's optimizer."""
    optimizer = config.get_parsed_content("optimizer")
    network.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        compute_loss().backward()
        optimizer.step()

    return step


def split_slices(config: ConfigParser) -> tuple[int, list[int]]:
    """(depth, [H, W]) of the volume cut into slices along cDPM's ``slice_axis``."""
    size, axis = config["spatial_size"], config["slice_axis"]
    return size[axis], [side for index, side in enumerate(size) if index != axis]


def staged_sampler(config: ConfigParser) -> StagedSliceSampler:
    return StagedSliceSampler(
        scheduler=config.get_parsed_content("noise_scheduler"),
        spatial_size=config["spatial_size"],
        axis=config["slice_axis"],
        image_channels=config["image_channels"],
        stage_size=config["stage_size"],
        condition_size=config["condition_size"],
        first_stage_size=config["first_stage_size"],
        condition_mode=config["condition_mode"],
        max_slices=config["max_slices"],
        verbose=False,
    )


def cdpm_train(config: ConfigParser, network: nn.Module, args: argparse.Namespace, device: torch.device) -> Step:
    depth, plane = split_slices(config)
    batch, slots = args.cdpm_batch or config["batch_size"], config["max_slices"]
    if slots > depth:
        raise ValueError(f"max_slices {slots} exceeds the depth {depth} of the volume")
    slices = torch.randn(batch, slots, config["image_channels"], *plane, device=device)
    noise = torch.randn_like(slices)
    timesteps = torch.randint(0, config["num_train_timesteps"], (batch,), device=device)
    indices = torch.rand(batch, depth).argsort(dim=1)[:, :slots].to(device)
    roles = torch.full((batch, slots), TARGET, device=device)
    roles[:, : slots // 2] = CONDITION
    loss, target = config.get_parsed_content("loss"), {"noise": noise, "target_mask": roles == TARGET}
    return optimizer_step(config, network, lambda: loss(network(slices, timesteps, indices, roles), target))


def ddpm3d_train(config: ConfigParser, network: nn.Module, args: argparse.Namespace, device: torch.device) -> Step:
    batch, size = config["batch_size"], config["spatial_size"]
    inputs = torch.randn(batch, network.in_channels, *size, device=device)
    noise = torch.randn(batch, network.out_channels, *size, device=device)
    timesteps = torch.randint(0, config["num_train_timesteps"], (batch,), device=device)
    loss = config.get_parsed_content("loss")
    return optimizer_step(config, network, lambda: loss(network(inputs, timesteps=timesteps), noise))


def cdpm_generate(config: ConfigParser, network: nn.Module, args: argparse.Namespace, device: torch.device) -> Step:
    """A denoising step of the largest stage of generating one volume, with the whole volume held."""
    depth, plane = split_slices(config)
    stages = staged_sampler(config).plan(depth)
    conditions, targets = max(stages, key=lambda stage: len(stage[0]) + len(stage[1]))
    channels = config["image_channels"]
    volume = torch.zeros(1, depth, channels, *plane, device=device)
    sample = torch.randn(1, len(targets), channels, *plane, device=device)
    indices = torch.as_tensor(conditions + targets, device=device)[None]
    roles = torch.as_tensor([CONDITION] * len(conditions) + [TARGET] * len(targets), device=device)[None]
    timesteps = torch.full((1,), config["num_train_timesteps"] - 1, device=device, dtype=torch.long)
    network.eval()

    @torch.no_grad()
    def step() -> None:
        network(torch.cat([volume[:, conditions], sample], dim=1), timesteps, indices, roles)

    return step


def ddpm3d_generate(config: ConfigParser, network: nn.Module, args: argparse.Namespace, device: torch.device) -> Step:
    """A denoising step of one volume: the noisy image concatenated with its mask channels."""
    inputs = torch.randn(1, network.in_channels, *config["spatial_size"], device=device)
    timesteps = torch.full((1,), config["num_train_timesteps"] - 1, device=device, dtype=torch.long)
    network.eval()

    @torch.no_grad()
    def step() -> None:
        network(inputs, timesteps=timesteps)

    return step


MEASUREMENTS = {
    ("cdpm", "train"): cdpm_train,
    ("ddpm3d", "train"): ddpm3d_train,
    ("cdpm", "generate"): cdpm_generate,
    ("ddpm3d", "generate"): ddpm3d_generate,
}


def projected_generation_seconds(model: str, config: ConfigParser, args: argparse.Namespace, step: float) -> float:
    if model == "ddpm3d":
        return args.ddpm3d_sampling_steps * step
    stages = staged_sampler(config).plan(split_slices(config)[0])
    return args.sampling_steps * len(stages) * step


def measure(args: argparse.Namespace, model: str, phase: str) -> dict[str, object]:
    """One measurement in this process: build the network, run the phase, report time and memory."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = load_config(model, getattr(args, f"{model}_configs"), args.size, args.device)
    network = config.get_parsed_content("network")
    baseline = memory_mib(device, peak=False)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step = MEASUREMENTS[model, phase](config, network, args, device)
    seconds = mean_seconds(step, args.repeats if phase == "train" else args.steps, device)
    result = {"peak_mib": memory_mib(device, peak=True), "baseline_mib": baseline, "seconds": seconds}
    if phase == "generate":
        result["projected_generation_s"] = projected_generation_seconds(model, config, args, seconds)
    return result


def run_child(argv: Sequence[str], args: argparse.Namespace, model: str, phase: str) -> dict[str, object]:
    """Run one measurement in a fresh process; its result, or ``{"error": ...}``."""
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--device", args.device]
    process = subprocess.run([*command, "--measure", f"{model}:{phase}"], capture_output=True, text=True)
    row: dict[str, object] = {"model": model, "phase": phase}
    if process.returncode in KILLED:
        return row | {"error": "killed (out of memory?)"}
    if process.returncode:
        last = process.stderr.strip().splitlines()[-1:] or ["no error output"]
        return row | {"error": f"failed (exit {process.returncode}): {last[0]}"}
    return row | json.loads(process.stdout.strip().splitlines()[-1])


def device_name(device: torch.device, threads: int | None) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{cpu} ({threads or torch.get_num_threads()} threads)"


def size_text(size: Sequence[int]) -> str:
    return f"{size[0]}³" if len(set(size)) == 1 else "×".join(map(str, size))


def row_text(row: dict[str, object], size: Sequence[int]) -> str:
    head = f"{row['model']:<8} {row['phase']:<9} size {size_text(size)}  "
    if "error" in row:
        return head + str(row["error"])
    unit = "iteration" if row["phase"] == "train" else "step"
    text = f"peak {row['peak_mib']:.0f} MiB  (baseline {row['baseline_mib']:.0f} MiB)  {row['seconds']:.3g} s/{unit}"
    if "projected_generation_s" in row:
        seconds = row["projected_generation_s"]
        text += f"  full generation ≈ {seconds:.0f} s ({seconds / 3600:.2g} h)"
    return head + text


def memory_ratios(rows: Sequence[dict[str, object]]) -> dict[str, float | None]:
    """Peak memory of the 3D model over cDPM's, per phase measured for both."""
    peaks = {(row["model"], row["phase"]): row.get("peak_mib") for row in rows}
    ratios = {}
    for phase in PHASES:
        if ("cdpm", phase) in peaks and ("ddpm3d", phase) in peaks:
            cdpm, ddpm3d = peaks["cdpm", phase], peaks["ddpm3d", phase]
            ratios[phase] = ddpm3d / cdpm if cdpm and ddpm3d else None
    return ratios


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, nargs="+", default=[128], help="volume size (one value = cube)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", choices=list(BUNDLE_OF), default=list(BUNDLE_OF))
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument("--cdpm-configs", nargs="+", default=["train.json"], help="cDPM bundle config files")
    parser.add_argument("--ddpm3d-configs", nargs="+", default=["train.json"], help="Med-DDPM bundle config files")
    parser.add_argument("--cdpm-batch", type=int, help="slice sets per training batch (default: batch_size)")
    parser.add_argument("--repeats", type=int, default=2, help="timed training iterations")
    parser.add_argument("--steps", type=int, default=2, help="timed denoising steps")
    parser.add_argument("--sampling-steps", type=int, default=1000, help="cDPM denoising steps per stage")
    parser.add_argument("--ddpm3d-sampling-steps", type=int, default=250, help="3D DDPM denoising steps")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # MODEL:PHASE, run by the script in a child process
    args = parser.parse_args(argv)
    if len(args.size) not in (1, 3):
        parser.error("--size takes one value (a cube) or three")
    args.size = args.size * 3 if len(args.size) == 1 else args.size
    return args


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.measure:
        model, phase = args.measure.split(":")
        print(json.dumps(measure(args, model, phase)))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    parameters = {model: count_parameters(model, getattr(args, f"{model}_configs"), args.size) for model in BUNDLE_OF}
    print(f"device {device_name(device, args.threads)}, torch {torch.__version__}")
    print("parameters: " + ", ".join(f"{model} {count / 1e6:.1f}M" for model, count in parameters.items()))
    print(
        "memory: CUDA max_memory_allocated; baseline = allocated after building the network"
        if device.type == "cuda"
        else "memory: peak RSS of the measurement's own process; baseline = peak RSS after building the network"
    )
    rows = []
    for phase in args.phases:
        for model in args.models:
            rows.append(run_child(argv, args, model, phase))
            print(row_text(rows[-1], args.size), flush=True)
    ratios = memory_ratios(rows)
    for phase, ratio in ratios.items():
        print(f"summary: {phase:<9} peak memory 3D DDPM / cDPM = " + (f"{ratio:.2f}" if ratio else "n/a"))
    if args.json:
        report = {"device": device_name(device, args.threads), "torch": torch.__version__, "size": args.size}
        report |= {"parameters": parameters, "results": rows, "peak_memory_ratio_3d_to_cdpm": ratios}
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
