"""PSNR and SSIM of a trained Medical Diffusion VQ-GAN's reconstructions of the volumes of a datalist.

The autoencoder and the preprocessing (crop to the non-zero box, resize, pad, scale to [-1, 1]; no flip) are built
from the bundle's ``configs/train_autoencoder.json`` plus optional override files and ``--set key=value`` overrides,
so they match the training run. Each volume is encoded, quantised with the codebook and decoded; PSNR and SSIM
(``common.metrics.paired_metrics``, 7-voxel window) are computed on [0, 1] intensities, per datalist section.

    python benchmarks/vqgan_reconstruction.py --datalist DATA/datalist.json \\
        --weights ROOT/models/model_autoencoder.pt \\
        --configs train_autoencoder.json ../../../benchmarks/vqgan_demo64.json --set compression=8
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose

from common.bundle_runner import bundle_dir
from common.data import load_datalist
from common.metrics import paired_metrics

BUNDLE = "medical_diffusion_brain_mri"


def build(configs: list[str], overrides: dict[str, str]) -> ConfigParser:
    """The bundle's config files merged in order, with ``key=value`` overrides (values parsed as JSON if possible)."""
    parser = ConfigParser()
    parser.read_config([str(bundle_dir(BUNDLE) / "configs" / name) for name in configs])
    parser["device"] = "$torch.device('cpu')"
    parser["flip_prob"] = 0.0
    for key, value in overrides.items():
        try:
            parser[key] = json.loads(value)
        except json.JSONDecodeError:
            parser[key] = value
    return parser


@torch.no_grad()
def reconstruction_metrics(parser: ConfigParser, weights: Path, datalist: Path, sections: list[str]) -> dict:
    """Per section: the number of volumes and the mean PSNR (dB) and SSIM of their reconstructions."""
    autoencoder = parser.get_parsed_content("autoencoder_def")
    autoencoder.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    autoencoder.eval()
    preprocessing = Compose(parser.get_parsed_content("preprocessing").transforms)
    report = {}
    for section in sections:
        images = torch.stack([preprocessing(item)["image"] for item in load_datalist(datalist, section)])
        reconstructions = torch.cat([autoencoder(image[None])[0] for image in images])
        metrics = paired_metrics((reconstructions.clamp(-1, 1) + 1) / 2, (images + 1) / 2, data_range=1.0)
        report[section] = {"volumes": len(images), "psnr": metrics["psnr_mean"], "ssim": metrics["ssim_mean"]}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datalist", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True, help="models/model_autoencoder.pt of the training run")
    parser.add_argument("--configs", nargs="+", default=["train_autoencoder.json"], help="files under configs/")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--sections", nargs="+", default=["training", "validation"])
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    report = reconstruction_metrics(build(args.configs, overrides), args.weights, args.datalist, args.sections)
    print(json.dumps({"weights": str(args.weights), "overrides": overrides, "metrics": report}, indent=2))


if __name__ == "__main__":
    main()
