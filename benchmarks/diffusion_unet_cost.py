"""Time and peak memory of one training iteration and one sampling step of a bundle's diffusion U-Net.

Builds the network from the bundle's ``train.json`` (plus optional override files), feeds random tensors of the
configured size and prints one line per measurement. Peak memory is CUDA's ``max_memory_allocated`` on a GPU and
the growth of the process's peak resident set size (``ru_maxrss``) on the CPU; sampling is measured first, so
on the CPU the training figure is an upper bound that includes it.

    python benchmarks/diffusion_unet_cost.py --bundle med_ddpm_brain_mri --size 64 --device cpu
    python benchmarks/diffusion_unet_cost.py --bundle med_ddpm_brain_mri --size 128 --device cuda
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch
from monai.bundle import ConfigParser

BUNDLES = Path(__file__).resolve().parent.parent / "bundles"


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return kib / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="med_ddpm_brain_mri")
    parser.add_argument("--configs", nargs="*", default=["train.json"], help="config files of the bundle, in order")
    parser.add_argument("--size", type=int, nargs="+", default=[128], help="spatial size (one value = cube)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    config = ConfigParser()
    config.read_config([str(BUNDLES / args.bundle / "configs" / name) for name in args.configs])
    device = torch.device(args.device)
    config["device"] = f"$torch.device('{device}')"
    network = config.get_parsed_content("network")
    in_channels, out_channels = network.in_channels, network.out_channels
    size = args.size * 3 if len(args.size) == 1 else args.size
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-5)
    params = sum(p.numel() for p in network.parameters()) / 1e6
    x = torch.randn(1, in_channels, *size, device=device)
    t = torch.randint(0, 250, (1,), device=device)
    target = torch.randn(1, out_channels, *size, device=device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    baseline = peak_memory_mib(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        baseline = 0.0
    network.eval()
    step_timings = []
    with torch.no_grad():
        for _ in range(args.repeats):
            sync()
            start = time.perf_counter()
            network(x, timesteps=t)
            sync()
            step_timings.append(time.perf_counter() - start)
    sample_peak = peak_memory_mib(device) - baseline
    network.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timings = []
    for _ in range(args.repeats):
        sync()
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = torch.nn.functional.l1_loss(network(x, timesteps=t), target)
        loss.backward()
        optimizer.step()
        sync()
        timings.append(time.perf_counter() - start)
    train_peak = peak_memory_mib(device) - baseline

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"bundle={args.bundle} configs={args.configs} size={size} params={params:.1f}M device={name}")
    print(f"train iteration: {min(timings):.3f} s (best of {args.repeats}), peak memory {train_peak:.0f} MiB")
    print(f"sampling step:   {min(step_timings):.3f} s (best of {args.repeats}), peak memory {sample_peak:.0f} MiB")
    print("memory: CUDA max_memory_allocated" if device.type == "cuda" else "memory: growth of peak RSS (ru_maxrss)")


if __name__ == "__main__":
    sys.exit(main())
