"""The main job on the demo data: every bundle's demo model generates, Med-DDPM is fine-tuned briefly, one figure.

The demo models (``bundles/<name>/models/demo/``) were trained on synthetic demo cohorts with each bundle's
``configs/demo_cpu.json`` (the commands and measured metrics are in the bundles' READMEs, ``metrics.json`` beside
the weights). A bundle without demo weights is skipped with a line that says so.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from common.bundle_runner import BUNDLES_DIR, run_bundle
from common.data import build_demo_cohort
from common.engines import checkpoint_iteration, latest_checkpoint
from common.visualize import load_ras, triplanar_image

MED_DDPM = "med_ddpm_brain_mri"
#: The unconditional bundles and the label of their row in the figure.
UNCONDITIONAL = {
    "cdpm_brain_mri": "cDPM (2D slices, staged)",
    "medical_diffusion_brain_mri": "Medical Diffusion (latent)",
    "diffusemorph_brain_mri": "DiffuseMorph (warped template)",
}
DEMO_CONFIGS = ["demo_cpu.json"]
#: Metrics of the demo models' cards shown under the figure (``models/demo/metrics.json``).
CARD_METRICS = {
    "c2st": "C2ST acc.",
    "background": "outside head",
    "diversity": "MS-SSIM",
    "contrast": "tumour/brain",
}


def demo_weights_dir(bundle: str) -> Path:
    """``bundles/<bundle>/models/demo``: the demo model's weights, ``metrics.json`` and the Med-DDPM checkpoint."""
    return BUNDLES_DIR / bundle / "models" / "demo"


def starting_iteration(ckpt_dir: Path, use_demo_weights: bool) -> int:
    """The iteration Med-DDPM's fine-tuning resumes from: the newest checkpoint in ``ckpt_dir``; else, if
    ``use_demo_weights``, the shipped demo checkpoint, copied into ``ckpt_dir``; else 0."""
    previous = latest_checkpoint(ckpt_dir)
    if previous is not None:
        return checkpoint_iteration(previous)
    shipped = demo_weights_dir(MED_DDPM) / "checkpoint_demo_s32.pt"
    if not use_demo_weights or not shipped.is_file():
        return 0
    iteration = int(torch.load(shipped, weights_only=True)["trainer"]["iteration"])
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shipped, ckpt_dir / f"checkpoint_{iteration}.pt")
    print(f"Starting from the demo weights {shipped} ({iteration} iterations on the demo cohort)")
    return iteration


def _generated(output_dir: Path, channel: str) -> tuple[str, str | None]:
    """(volume, mask or None) of the first record of a bundle run's ``outputs.json``."""
    record = json.loads((output_dir / "outputs.json").read_text())[0]
    return record[channel], record.get("mask")


def _card_line(bundle: str) -> str:
    """One line of the measured demo-model card, or why there is none."""
    path = demo_weights_dir(bundle) / "metrics.json"
    if not path.is_file():
        return f"{bundle}: no measured card"
    card = json.loads(path.read_text())
    figures = [f"{label} {card[key]:.3g}" for key, label in CARD_METRICS.items() if card.get(key) is not None]
    return f"{bundle}: " + ", ".join(figures)


def save_demo_figure(
    rows: Sequence[tuple[str, str, str | None]], notes: Sequence[str], path: Path, tile: int = 128
) -> Path:
    """Tri-planar rows (label, volume, mask or None) with the labels on the left and ``notes`` underneath.

    Each volume is (X, Y, Z) in RAS; tiles of small volumes are enlarged to at least ``tile`` pixels.
    """
    volumes = [load_ras(volume) for _, volume, _ in rows]
    masks = [None if mask is None else load_ras(mask) for _, _, mask in rows]
    image = triplanar_image(volumes, masks, min_tile_size=tile)
    label_width, line_height = 230, 14
    note_lines = [line for note in notes for line in textwrap.wrap(note, 110)]
    canvas = Image.new("RGB", (image.width + label_width, image.height + line_height * (len(note_lines) + 1)))
    canvas.paste(image, (label_width, 0))
    draw = ImageDraw.Draw(canvas)
    row_height = image.height / len(rows)
    for index, (label, _, _) in enumerate(rows):
        draw.text((6, int((index + 0.5) * row_height) - 6), label, fill=(255, 255, 255))
    for index, line in enumerate(note_lines):
        draw.text((6, image.height + 6 + index * line_height), line, fill=(255, 255, 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def run_demo(
    output_dir: str | Path = "outputs/demo",
    data_root: str | Path = "data/demo",
    train_seconds: float = 60,
    train_iterations: int = 2000,
    from_scratch: bool = False,
    num_inference_steps: int = 50,
    tumour_shift: Sequence[int] = (0, -4, 0),
    seed: int = 0,
) -> Path:
    """Fine-tune Med-DDPM's demo model, generate with every bundle's demo model, write one figure.

    Args:
        output_dir: where models, logs, generated volumes (NIfTI + PNG) and ``demo_preview.png`` go.
        data_root: cache folder of the 8-subject 32³ demo cohort.
        train_seconds: wall-clock budget of Med-DDPM's fine-tuning.
        train_iterations: its iteration budget (whichever ends first).
        from_scratch: train Med-DDPM from scratch instead of its demo checkpoint (gives noise in CPU minutes).
        num_inference_steps: steps of the respaced DDPM of every bundle.
        tumour_shift: voxels to shift Med-DDPM's tumour by along (X, Y, Z) in RAS.
        seed: seed of every sampling chain.

    Returns:
        The figure's path.
    """
    out = Path(output_dir)
    cohort = build_demo_cohort(data_root, num_subjects=8, size=32, seed=0, tumour_fraction=0.5)
    manifest = json.loads((cohort / "manifest.json").read_text())
    print(f"Demo cohort (synthetic DEMO data, not research data): {cohort}")
    sampling = {"sampler": "ddpm", "num_inference_steps": num_inference_steps, "seed": seed}

    ckpt_dir = out / "models"
    start = starting_iteration(ckpt_dir, use_demo_weights=not from_scratch)
    run_bundle(
        MED_DDPM, ["train.json", *DEMO_CONFIGS], "training", time_limit_seconds=train_seconds,
        engine_id="train#trainer", dataset_dir=str(cohort), output_dir=str(out / "logs"), ckpt_dir=str(ckpt_dir),
        max_iterations=start + train_iterations,
    )  # fmt: skip
    tumour_id = manifest["tumour_subjects"][0]
    mask = next((cohort / "single" / "masks").glob(f"{tumour_id}.nii*"))
    image = next((cohort / "single" / "images").glob(f"{tumour_id}.nii*"))
    rows: list[tuple[str, str, str | None]] = [(f"real demo subject {tumour_id}", str(image), str(mask))]
    for name, shift in (("med_ddpm_original_mask", [0, 0, 0]), ("med_ddpm_shifted_tumour", list(tumour_shift))):
        run_bundle(
            MED_DDPM, ["inference.json", *DEMO_CONFIGS], "run", ckpt_dir=str(ckpt_dir), masks=str(mask),
            output_dir=str(out / name), tumour_shift=shift, num_samples_per_mask=1, **sampling,
        )  # fmt: skip
        label = "Med-DDPM, from the mask" if shift == [0, 0, 0] else f"Med-DDPM, tumour moved {shift}"
        rows.append((label, *_generated(out / name, "t1ce")))

    notes = [_card_line(MED_DDPM)]
    for bundle, label in UNCONDITIONAL.items():
        weights = demo_weights_dir(bundle)
        if not (weights / "model.pt").is_file():
            print(f"{bundle}: no demo weights in {weights}; skipped")
            continue
        run_bundle(
            bundle, ["inference.json", *DEMO_CONFIGS], "run", ckpt_dir=str(weights), output_dir=str(out / bundle),
            num_volumes=1, **sampling,
        )  # fmt: skip
        volume, _ = _generated(out / bundle, "t1")
        rows.append((label, volume, None))
        notes.append(_card_line(bundle))
    notes.append("Demo models trained on synthetic demo data only (see each bundle README's model card).")
    figure = save_demo_figure(rows, notes, out / "demo_preview.png")
    print(f"Figure: {figure} (rows: {'; '.join(label for label, _, _ in rows)})")
    print("\n".join(notes[:-1]))
    print(f"NIfTI outputs under {out}; TensorBoard logs: {out / 'logs'}")
    return figure
