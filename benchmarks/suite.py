"""Benchmark suite: training and generation cost of every bundle, built from the bundles' own configs.

For each training stage of the four bundles (Med-DDPM; cDPM; Medical Diffusion's VQ-GAN and latent DDPM;
DiffuseMorph's registration and field DDPM) it builds the stage's ``SupervisedTrainer`` from its training config
(``--size tiny`` adds the bundle's ``configs/tiny_cpu.json``; ``--size paper`` is the paper configuration) and
measures, each in a fresh process so that one measurement's memory never shows in another's:

- train: one training iteration of the bundle's own trainer (its prepare-batch, inferer, loss, optimizer, and
  iteration for the VQ-GAN and DiffuseMorph) on random tensors of the configured batch, after one warm-up
  iteration; the trainer's handlers (checkpoints, EMA, previews, TensorBoard) are left out and so is data loading.
- sampling call: one network forward of the sampler at the inference config's size (batch of one volume); for
  cDPM the largest stage of its staged sampler; for the VQ-GAN decoding one latent; for DiffuseMorph's
  registration network one registration.
- generation: one whole volume with the inference config's sampler, with the default (the paper's full chain,
  ``sampler="ddpm"`` with T steps) and the fast scheduler (``make_noise_scheduler(sampler="ddpm",
  num_inference_steps=50)``, respaced DDPM). A generation whose projected time (network calls x sampling call)
  exceeds ``--max-generation-seconds`` is not run but extrapolated from the timed sampling calls, and the table
  marks it with ``≈`` (always the case for the paper sizes on a CPU).

Memory is CUDA's ``max_memory_allocated`` on a GPU and the peak resident set size of the measurement's process on
the CPU (see ``benchmarks/cdpm_memory.py``, whose helpers this script shares). The networks have random weights:
the costs do not depend on them. Medical Diffusion's VQ-GAN is measured with its discriminators on
(``adversarial_start`` 0, the steady state after the paper's 10,000 iterations) and without the LPIPS term, whose
VGG weights are downloaded at run time.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/suite.py --device cpu --size tiny
    python benchmarks/suite.py --device cuda --size paper --json > paper_cuda.json
    python benchmarks/suite.py --device cpu --size tiny --stages med_ddpm --set optimizer#fused=false
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from cdpm_memory import KILLED, cdpm_generate, device_name, mean_seconds, memory_mib
from ignite.engine import Events
from monai.bundle import ConfigParser
from torch import nn

from common.slice_roles import CONDITION, TARGET

BUNDLES = Path(__file__).resolve().parent.parent / "bundles"
FAST_STEPS = 50
PHASES = ("train", "sample")


@dataclass(frozen=True)
class Stage:
    """A training stage of a bundle: its configs, and how to feed and sample it."""

    name: str
    bundle: str
    train_configs: tuple[str, ...]  # merged in order: a later stage is an overlay on the first stage's config
    inference_config: str | None  # None: the stage has no sampler of its own
    make_batch: Callable[[ConfigParser, nn.Module, torch.device], dict[str, torch.Tensor]]
    sampling_call: Callable[[ConfigParser, nn.Module, torch.device], Callable[[], None]]
    generates: bool = True


def timesteps_of(config: ConfigParser, batch: int, device: torch.device) -> torch.Tensor:
    return torch.randint(0, config["num_train_timesteps"], (batch,), device=device)


def image_batch(channels: Callable[[ConfigParser], int]) -> Callable[..., dict[str, torch.Tensor]]:
    """A batch ``{"image": (batch_size, channels, *spatial_size)}`` of images in [0, 1]."""

    def make(config: ConfigParser, network: nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
        return {"image": torch.rand(config["batch_size"], channels(config), *config["spatial_size"], device=device)}

    return make


def med_ddpm_batch(config: ConfigParser, network: nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
    shape = (config["batch_size"], *config["spatial_size"])
    condition = torch.rand(shape[0], network.in_channels - config["image_channels"], *shape[1:], device=device)
    return {"image": torch.rand(shape[0], config["image_channels"], *shape[1:], device=device), "condition": condition}


def cdpm_batch(config: ConfigParser, network: nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
    """Slice sets of ``max_slices`` slots, the first half condition and the second half target slices."""
    size, axis = config["spatial_size"], config["slice_axis"]
    plane = [side for index, side in enumerate(size) if index != axis]
    batch, slots = config["batch_size"], config["max_slices"]
    roles = torch.full((batch, slots), TARGET, device=device)
    roles[:, : slots // 2] = CONDITION
    return {
        "slices": torch.rand(batch, slots, config["image_channels"], *plane, device=device),
        "slice_indices": torch.rand(batch, size[axis]).argsort(dim=1)[:, :slots].to(device),
        "slice_roles": roles,
    }


def denoising_call(channels: Callable[[ConfigParser], int], size: Callable[[ConfigParser], Sequence[int]]):
    """One no-grad network forward on a (1, channels, *size) input at the last timestep."""

    def make(config: ConfigParser, network: nn.Module, device: torch.device) -> Callable[[], None]:
        inputs = torch.randn(1, channels(config), *size(config), device=device)
        timesteps = torch.full((1,), config["num_train_timesteps"] - 1, device=device, dtype=torch.long)

        @torch.no_grad()
        def call() -> None:
            network(inputs, timesteps)

        return call

    return make


def decode_call(config: ConfigParser, network: nn.Module, device: torch.device) -> Callable[[], None]:
    """Decoding one latent volume (the VQ-GAN's share of a Medical Diffusion generation)."""
    latent_size = [side // config["compression"] for side in config["spatial_size"]]
    latents = torch.randn(1, config["embedding_dim"], *latent_size, device=device)

    @torch.no_grad()
    def call() -> None:
        network.decode(network.quantize(latents)[0])

    return call


def register_call(config: ConfigParser, network: nn.Module, device: torch.device) -> Callable[[], None]:
    """One registration of the template onto a subject (DiffuseMorph's inference: a single pass at t = 0)."""
    template = config.get_parsed_content("template")[None, :1].to(device)  # the T1 channel of (T1, GM, WM)
    subject = torch.rand_like(template)

    @torch.no_grad()
    def call() -> None:
        network.register(template, subject)

    return call


STAGES = {
    stage.name: stage
    for stage in (
        Stage(
            "med_ddpm", "med_ddpm_brain_mri", ("train.json",), "inference.json", med_ddpm_batch,
            denoising_call(lambda c: c["image_channels"] + c["num_classes"] - 1, lambda c: c["spatial_size"]),
        ),
        Stage(
            "cdpm", "cdpm_brain_mri", ("train.json",), "inference.json", cdpm_batch,
            lambda config, network, device: cdpm_generate(config, network, None, device),
        ),
        Stage(
            "medical_diffusion_vqgan", "medical_diffusion_brain_mri", ("train_autoencoder.json",), None,
            image_batch(lambda c: c["image_channels"]), decode_call, generates=False,
        ),
        Stage(
            "medical_diffusion_latent", "medical_diffusion_brain_mri",
            ("train_autoencoder.json", "train_diffusion.json"), "inference.json",
            image_batch(lambda c: c["image_channels"]),
            denoising_call(lambda c: c["embedding_dim"], lambda c: c.get_parsed_content("latent_size")),
        ),
        Stage(
            "diffusemorph_registration", "diffusemorph_brain_mri", ("train_registration.json",), None,
            image_batch(lambda c: 1), register_call, generates=False,
        ),
        Stage(
            "diffusemorph_fields", "diffusemorph_brain_mri",
            ("train_registration.json", "train_diffusion.json"), "inference.json",
            image_batch(lambda c: 3), denoising_call(lambda c: 3, lambda c: c["spatial_size"]),
        ),
    )
}  # fmt: skip


def parse_value(text: str) -> object:
    """A ``--set`` value: JSON if it parses (numbers, booleans, lists), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def load_config(
    stage: Stage,
    names: Sequence[str],
    args: argparse.Namespace,
    work_dir: Path,
    overrides: dict[str, object] | None = None,
) -> ConfigParser:
    """The stage's config files ``names`` merged (+ ``tiny_cpu.json``), on the device, with ``overrides`` and then
    ``--set``.

    Ids whose parent is not in this config (e.g. the optimizer's in an inference config) are skipped.
    """
    files = [*names] + (["tiny_cpu.json"] if args.size == "tiny" else [])
    config = ConfigParser()
    config.read_config([str(BUNDLES / stage.bundle / "configs" / file) for file in files])
    config["bundle_root"] = str(work_dir)
    config["device"] = f"$torch.device('{args.device}')"
    for key, value in ((overrides or {}) | args.overrides).items():
        parent = key.rpartition("#")[0]
        if not parent or parent in config:
            config[key] = value
    return config


def save_random_autoencoder(stage: Stage, args: argparse.Namespace, work_dir: Path) -> None:
    """Medical Diffusion's latent stages load a trained VQ-GAN: give them a randomly initialised one."""
    config = load_config(stage, ["train_autoencoder.json"], args, work_dir)
    (work_dir / "models").mkdir(exist_ok=True)
    torch.save(config.get_parsed_content("autoencoder_def").state_dict(), work_dir / "models" / "model_autoencoder.pt")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_train(stage: Stage, args: argparse.Namespace, work_dir: Path, device: torch.device) -> dict[str, object]:
    """Mean time of ``--repeats`` iterations of the stage's trainer after one warm-up iteration, and peak memory."""
    iterations = 1 + args.repeats
    overrides = {
        "train#handlers": [],
        "train#dataloader": "$[]",
        "train#trainer#max_epochs": 1,
        "train#trainer#epoch_length": iterations,
        "adversarial_start": 0,  # the VQ-GAN's steady state, discriminators on
        "use_perceptual_loss": False,  # LPIPS needs pretrained weights, never downloaded
    }
    config = load_config(stage, stage.train_configs, args, work_dir, overrides)
    trainer = config.get_parsed_content("train#trainer")
    baseline = memory_mib(device, peak=False)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer.data_loader = [stage.make_batch(config, trainer.network, device) for _ in range(iterations)]
    times: list[float] = []
    optimizer_times: list[float] = []  # the optimizer step alone (for the VQ-GAN: the autoencoder's)

    def optimizer_started(*_) -> None:
        synchronize(device)
        optimizer_times.append(time.perf_counter())

    def optimizer_done(*_) -> None:
        synchronize(device)
        optimizer_times[-1] = time.perf_counter() - optimizer_times[-1]

    trainer.optimizer.register_step_pre_hook(optimizer_started)
    trainer.optimizer.register_step_post_hook(optimizer_done)

    @trainer.on(Events.ITERATION_STARTED)
    def start(engine) -> None:
        synchronize(device)
        times.append(time.perf_counter())

    @trainer.on(Events.ITERATION_COMPLETED)
    def stop(engine) -> None:
        synchronize(device)
        times[-1] = time.perf_counter() - times[-1]

    trainer.run()
    return {
        "parameters": sum(p.numel() for p in trainer.network.parameters()),
        "batch_size": config["batch_size"],
        "spatial_size": config["spatial_size"],
        "train_s": sum(times[1:]) / args.repeats,
        "optimizer_s": sum(optimizer_times[1:]) / args.repeats,
        "train_peak_mib": memory_mib(device, peak=True),
        "train_baseline_mib": baseline,
    }


def network_calls(stage: Stage, config: ConfigParser, scheduler) -> int:
    """Network forwards of one generated volume: the scheduler's steps, times the stages of cDPM's staged sampler."""
    steps = len(scheduler.timesteps)
    if stage.name != "cdpm":
        return steps
    return steps * len(config.get_parsed_content("inferer").plan(config["spatial_size"][config["slice_axis"]]))


def generation(
    stage: Stage, config: ConfigParser, network: nn.Module, steps: int, call_s: float, args: argparse.Namespace
) -> dict[str, object]:
    """Generating one volume with the config's sampler and ``steps`` respaced DDPM steps.

    Run, or projected from the sampling call when that projection exceeds ``--max-generation-seconds``.
    """
    config["sampler"], config["num_inference_steps"] = "ddpm", steps
    sampler = config.get_parsed_content("inferer", lazy=False)  # a new scheduler and sampler; the network is kept
    calls = network_calls(stage, config, config.get_parsed_content("noise_scheduler"))
    result: dict[str, object] = {"steps": steps, "network_calls": calls}
    if calls * call_s > args.max_generation_seconds:
        return result | {"seconds": calls * call_s, "extrapolated": True}
    device = torch.device(args.device)
    if stage.name == "med_ddpm":  # the engine's input is the one-hot condition
        inputs = torch.rand(1, network.in_channels - config["image_channels"], *config["spatial_size"], device=device)
    else:  # the sample index
        inputs = torch.arange(1, device=device)
    sampler.verbose = False
    synchronize(device)
    start = time.perf_counter()
    with torch.no_grad():
        sampler(inputs, network)
    synchronize(device)
    return result | {"seconds": time.perf_counter() - start, "extrapolated": False}


def measure_sample(stage: Stage, args: argparse.Namespace, work_dir: Path, device: torch.device) -> dict[str, object]:
    """One sampling call (mean of ``--calls`` after a warm-up) and, for generating stages, both generations."""
    names = [stage.inference_config] if stage.inference_config else stage.train_configs
    config = load_config(stage, names, args, work_dir, {"field_scale": 1.0})
    network_id = "autoencoder" if stage.name == "medical_diffusion_vqgan" else "network"
    network = config.get_parsed_content(network_id).eval()
    baseline = memory_mib(device, peak=False)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    call_s = mean_seconds(stage.sampling_call(config, network, device), args.calls, device)
    result: dict[str, object] = {"parameters": sum(p.numel() for p in network.parameters()), "sample_s": call_s}
    if stage.generates:
        for label, steps in (("full", config["num_train_timesteps"]), ("fast", FAST_STEPS)):
            result[f"generate_{label}"] = generation(stage, config, network, steps, call_s, args)
    return result | {"sample_peak_mib": memory_mib(device, peak=True), "sample_baseline_mib": baseline}


def measure(args: argparse.Namespace) -> dict[str, object]:
    """One measurement in this process (``--measure STAGE:PHASE``)."""
    stage_name, phase = args.measure.split(":")
    stage, device = STAGES[stage_name], torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        if stage.bundle == "medical_diffusion_brain_mri" and stage.name != "medical_diffusion_vqgan":
            save_random_autoencoder(stage, args, work_dir)
        return (measure_train if phase == "train" else measure_sample)(stage, args, work_dir, device)


def run_child(argv: Sequence[str], stage: str, phase: str, in_process: bool = False) -> dict[str, object]:
    """Run one measurement in a fresh process (``in_process``: in this one); its result, or ``{"error": ...}``."""
    if in_process:
        return measure_here([*argv, "--measure", f"{stage}:{phase}"])
    env = os.environ | {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--measure", f"{stage}:{phase}"]
    process = subprocess.run(command, capture_output=True, text=True, env=env)
    if process.returncode in KILLED:
        return {"error": "killed (out of memory?)"}
    if process.returncode:
        last = process.stderr.strip().splitlines()[-1:] or ["no error output"]
        return {"error": f"failed (exit {process.returncode}): {last[0]}"}
    return json.loads(process.stdout.strip().splitlines()[-1])


def measure_here(argv: Sequence[str]) -> dict[str, object]:
    """:func:`run_child`'s measurement in this process, for tests (no interpreter to start, but the memory peaks
    then include the earlier measurements): the result as its JSON line would give it, or ``{"error": ...}``.

    Torch's thread count and random state are restored afterwards; what the measurement prints goes to stderr.
    """
    threads = torch.get_num_threads()
    try:
        with torch.random.fork_rng(), contextlib.redirect_stdout(sys.stderr):
            return json.loads(json.dumps(measure(parse_args(argv))))
    except Exception as error:
        return {"error": f"failed (in process): {type(error).__name__}: {error}"}
    finally:
        torch.set_num_threads(threads)


def seconds_text(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.3g} s"


def generation_text(entry: dict[str, object]) -> str:
    mark = "≈ " if entry["extrapolated"] else ""
    return f"{mark}{seconds_text(entry['seconds'])} ({entry['steps']} steps, {entry['network_calls']} calls)"


def cell(row: dict[str, object], key: str, text: Callable[[object], str]) -> str:
    return text(row[key]) if key in row else "–"


def table(report: dict[str, object]) -> str:
    """The results as a Markdown table, with its footnotes."""
    header = (
        "| stage | parameters | batch × size | train s/it | optimizer step | train peak MiB | sampling call"
        " | sample peak MiB | generation, default (full chain) | generation, fast (DDPM 50) |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for name, row in report["results"].items():
        cells = [
            cell(row, "parameters", lambda count: f"{count / 1e6:.2f} M"),
            f"{row['batch_size']} × {'×'.join(map(str, row['spatial_size']))}" if "batch_size" in row else "–",
            cell(row, "train_s", lambda seconds: f"{seconds:.3g}"),
            cell(row, "optimizer_s", lambda seconds: f"{seconds * 1e3:.3g} ms"),
            cell(row, "train_peak_mib", lambda mib: f"{mib:.0f}"),
            cell(row, "sample_s", lambda seconds: f"{seconds * 1e3:.3g} ms" if seconds < 1 else seconds_text(seconds)),
            cell(row, "sample_peak_mib", lambda mib: f"{mib:.0f}"),
            cell(row, "generate_full", generation_text),
            cell(row, "generate_fast", generation_text),
        ]
        if "error" in row:
            cells.append(str(row["error"]))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    memory = (
        "CUDA max_memory_allocated"
        if report["device_type"] == "cuda"
        else "peak resident set size of the measurement's process"
    )
    lines += [
        "",
        f"Device: {report['device']}; torch {report['torch']}; size {report['size']}; memory: {memory}.",
        "≈: extrapolated (network calls × the timed sampling call), not run.",
    ]
    if report["set"]:
        lines.append("Overrides: " + ", ".join(report["set"]) + ".")
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", choices=["tiny", "paper"], default="tiny", help="tiny: + configs/tiny_cpu.json")
    parser.add_argument("--stages", nargs="+", choices=list(STAGES), default=list(STAGES))
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES), help="train and/or sample")
    parser.add_argument("--repeats", type=int, default=2, help="timed training iterations (after one warm-up)")
    parser.add_argument("--calls", type=int, default=3, help="timed sampling calls (after one warm-up)")
    parser.add_argument(
        "--max-generation-seconds", type=float, default=60.0, help="longer generations are extrapolated, not run"
    )
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="ID=VALUE", help="config override for every stage, e.g."
        " optimizer#fused=false (JSON values; ids whose parent a config lacks are skipped)"
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # STAGE:PHASE, run by the script in a child process
    args = parser.parse_args(argv)
    if any("=" not in item for item in args.set):
        parser.error("--set takes ID=VALUE")
    args.overrides = {key: parse_value(value) for key, value in (item.split("=", 1) for item in args.set)}
    return args


def main(argv: Sequence[str] | None = None, in_process: bool = False) -> None:
    """Measure and print the report for ``argv`` (default ``sys.argv[1:]``); ``in_process``: every measurement in
    this process instead of a fresh one each (:func:`measure_here`; for tests)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args)))
        return
    child_argv = [item for item in argv if item != "--json"]
    results: dict[str, dict[str, object]] = {}
    for name in args.stages:
        row: dict[str, object] = {}
        for phase in args.phases:
            outcome = run_child(child_argv, name, phase, in_process)
            row |= outcome
            if "error" in outcome:
                row["error"] = f"{phase}: {outcome['error']}"
                break
        results[name] = row
        if not args.json:
            print(f"{name} done", file=sys.stderr, flush=True)
    device = torch.device(args.device)
    report = {
        "device": device_name(device, args.threads),
        "device_type": device.type,
        "torch": torch.__version__,
        "size": args.size,
        "set": args.set,
        "results": results,
    }
    print(json.dumps(report, indent=2) if args.json else table(report))


if __name__ == "__main__":
    main()
