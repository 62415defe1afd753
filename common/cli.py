"""``brainsynth``: the chores around the bundles.

Commands: demo, cohort, prepare, preview, train, generate, evaluate, export, package, fetch, label.

Examples::

    brainsynth demo                                    # the whole pipeline on demo data, in a few minutes
    brainsynth cohort --root data/demo --size 128      # build the synthetic demo cohort
    brainsynth prepare paired IMAGES/ MASKS/ datalist.json
    brainsynth prepare brats BraTS2021/ datalist_brats.json
    brainsynth preview a.nii.gz b.nii.gz --output preview.png --masks a_mask.nii.gz,None
    brainsynth train med_ddpm_brain_mri --dataset_dir DATA --configs "[train.json]"
    brainsynth generate med_ddpm_brain_mri --masks MASKS/ --num_samples_per_mask 4
    brainsynth evaluate --real DATA/datalist.json --synthetic OUTPUTS/ --metrics diversity,mmd
    brainsynth export med_ddpm_brain_mri --output model.pt2    # torch.export of models/model.pt
    brainsynth package med_ddpm_brain_mri --output_dir dist  # -> dist/med_ddpm_brain_mri_v0.1.0.zip and its .sha256
    brainsynth fetch URL --sha256 HEX --bundle_dir bundles_downloaded --run "[inference.json]"
    .venv-label/bin/brainsynth label --studies studies --port 8000   # MONAI Label server (make install-label)

Run ``brainsynth COMMAND --help`` for the options of a command.

A problem that is the user's (a file that fails validation, missing files or weights, a wrong option, a refused
download) is printed as ``brainsynth: <problem>``, one line each, and the command exits with code 1 (2 for a bad
command line); other errors are bugs and keep their traceback. ``--debug`` (or ``BRAINSYNTH_DEBUG=1``) shows the
traceback of user errors too.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import fire

from common.errors import InputError, UserError, find_user_error, problem_lines

# The commands import what they run (torch, MONAI, the bundles' code) when called, so that ``brainsynth --help``
# and the command-line errors come fast; common.errors imports nothing heavy.


class _Imported(staticmethod):
    """A static method that is the function ``module.name``, imported when first looked up (by fire, when the
    command runs or its help is shown). A ``staticmethod`` so that fire lists it among the class's commands."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.module, self.name = module, name

    def __get__(self, instance: object, owner: type | None = None) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.module), self.name)


class Prepare:
    """Turn a folder of NIfTI files into a MONAI datalist JSON, validating every file (inputs are only read)."""

    paired = _Imported("common.data.prepare", "prepare_paired")
    images = _Imported("common.data.prepare", "prepare_images")
    brats = _Imported("common.data.prepare", "prepare_brats")


def cohort(
    root: str = "data/demo", num_subjects: int = 8, size: int = 128, seed: int = 0, tumour_fraction: float = 0.5
):
    """Build (or reuse) the synthetic demo cohort derived from the MNI152 template; prints its folder.

    Args:
        root: folder that holds cached cohorts.
        num_subjects: number of synthetic subjects.
        size: edge of the cubic volumes in voxels (field of view 192 mm).
        seed: seed of the whole cohort.
        tumour_fraction: fraction of subjects with a tumour-like lesion.
    """
    from common.data import build_demo_cohort

    return str(
        build_demo_cohort(root, num_subjects=num_subjects, size=size, seed=seed, tumour_fraction=tumour_fraction)
    )


def _as_list(value: Sequence[str | None] | str) -> list[str | None]:
    """A list given on the command line: fire passes ``a,b`` or ``[a.json,b.json]`` as one string."""
    if isinstance(value, str):
        items = [item.strip(" '\"") for item in value.strip("[]").split(",")]
        return [None if item in ("None", "") else item for item in items]
    return list(value)


def preview(*volumes: str, output: str = "preview.png", masks: Sequence[str | None] | str | None = None) -> str:
    """Write a tri-planar PNG (axial, coronal, sagittal through the centre) of one or more NIfTI volumes.

    Args:
        volumes: NIfTI files, one row each.
        output: PNG path to write.
        masks: optional label NIfTI per volume, comma-separated (``None`` skips one), outlined in colour over it:
            ``--masks a_mask.nii.gz,None``.
    """
    from common.visualize import load_ras, save_triplanar_preview

    if not volumes:
        raise InputError("give at least one NIfTI volume")
    arrays = [load_ras(v) for v in volumes]
    overlays = [None if m is None else load_ras(m) for m in _as_list(masks)] if masks else None
    return str(save_triplanar_preview(arrays, output, overlays=overlays))


def train(
    bundle: str, configs: Sequence[str] | str = ("train.json",), time_limit_seconds: float | None = None, **overrides
):
    """Train a bundle (same as ``python -m monai.bundle run training``), resuming from its last checkpoint.

    Args:
        bundle: a bundle folder, or a bundle name (e.g. ``med_ddpm_brain_mri``): the current folder when it is that
            bundle, else ``bundles/<name>`` of the current folder, else this repository's.
        configs: config files of the bundle merged in order, e.g. ``train.json,brats_multimodal.json``.
        time_limit_seconds: stop cleanly after this long (a checkpoint and ``models/model.pt`` are still written).
        overrides: any config value, e.g. ``--dataset_dir DATA --max_iterations 1000``.
    """
    from common.bundle_runner import run_bundle

    run_bundle(
        bundle,
        _as_list(configs),
        "training",
        time_limit_seconds=time_limit_seconds,
        engine_id="train#trainer",
        **overrides,
    )


def generate(bundle: str, configs: Sequence[str] | str = ("inference.json",), **overrides) -> str:
    """Generate volumes with a trained bundle (same as ``python -m monai.bundle run``); prints the output folder.

    Args:
        bundle: a bundle folder or name, found as for ``train``.
        configs: config files of the bundle merged in order.
        overrides: any config value, e.g. ``--masks MASKS/ --num_samples_per_mask 4 --sampler ddim``.
    """
    from common.bundle_runner import run_bundle

    workflow = run_bundle(bundle, _as_list(configs), "run", **overrides)
    return str(workflow.parser.get_parsed_content("output_dir"))


def evaluate(
    real: str,
    synthetic: str,
    output_dir: str | None = None,
    metrics: Sequence[str] | str = ("diversity", "mmd", "c2st", "memorisation", "paired", "background", "contrast"),
    fid_weights: str | dict[str, str] | None = None,
    fid_kinds: Sequence[str] | str = ("axial", "coronal", "sagittal", "3d"),
    **options: Any,
) -> str:
    """Evaluate synthetic volumes made by any tool against real ones; prints the metric table, returns metrics.json.

    Args:
        real: a datalist JSON (its training and validation images) or a folder of NIfTI volumes.
        synthetic: a folder of NIfTI volumes (its ``outputs.json`` when written by a bundle: pairs for ``paired``,
            conditioning masks for ``background`` and ``contrast``).
        output_dir: folder for ``metrics.json`` and ``evaluation.png``; default ``<synthetic>_evaluation`` beside it.
        metrics: comma-separated, from diversity, mmd, fid, c2st (classifier two-sample test: held-out accuracy of
            a 3D CNN telling real from synthetic, 0.5 = indistinguishable), memorisation, paired, background
            (intensity outside the head), contrast (tumour-to-brain intensity ratio, for mask-conditioned models).
        fid_weights: local weights of the FID feature networks: one path, or ``"{resnet2d: PATH, medicalnet3d:
            PATH}"`` for 2D and 3D FID (``random-for-testing``: random networks, FID meaningless).
        fid_kinds: comma-separated FID variants: axial, coronal, sagittal (2D network), 3d (MedicalNet).
        options: other arguments of ``common.evaluation.evaluate``, e.g. ``--spatial_size [64,64,64]
            --kernel_size 7 --max_volumes 50``.
    """
    from common.evaluation import evaluate as evaluate_volumes
    from common.evaluation import metric_table

    folder = Path(synthetic)
    output_dir = output_dir or str(folder.parent / f"{folder.name}_evaluation")
    results = evaluate_volumes(
        real, synthetic, output_dir, metrics=_as_list(metrics), fid_weights=fid_weights, fid_kinds=_as_list(fid_kinds),
        **options,
    )  # fmt: skip
    print("\n".join(metric_table(results)))
    for name, reason in results["skipped"].items():
        print(f"{name}: skipped, {reason}")
    print(f"Metrics: {results['outputs']['metrics']}\nFigure: {results['outputs']['figure']}")
    return results["outputs"]["metrics"]


def export(
    bundle: str,
    output: str,
    configs: Sequence[str] | str = ("inference.json",),
    ckpt_file: str | None = None,
    max_spatial_size: int | None = None,
    net_id: str = "network_def",
    data_format: str = "network_data_format",
    **overrides,
) -> str:
    """Export a trained bundle's network with ``torch.export`` (a ``.pt2`` file with the bundle metadata inside).

    The alternative to ``python -m monai.bundle ckpt_export`` (TorchScript), which these networks do not compile
    to; load the result with ``torch.export.load(PATH).module()``; the batch dimension is dynamic.

    Args:
        bundle: a bundle folder or name, found as for ``train``.
        output: ``.pt2`` file to write.
        configs: config files of the bundle merged in order, e.g. ``inference.json,tiny_cpu.json``.
        ckpt_file: weights to export; default ``<bundle>/models/model.pt``, or ``models/model_<name>.pt`` for a
            ``<name>_data_format`` (``model_autoencoder.pt``, ``model_registration.pt``).
        max_spatial_size: shrink the example inputs of ``metadata.json`` to at most this size per axis (for networks
            of a smaller config such as ``tiny_cpu.json``).
        net_id: config id of the network, e.g. ``autoencoder_def`` for Medical Diffusion's VQ-GAN.
        data_format: ``metadata.json`` entry describing it, e.g. ``autoencoder_data_format``.
        overrides: config values, e.g. ``--spatial_size [32,32,16]``.
    """
    from common.export import export_network

    path = export_network(
        bundle,
        output,
        _as_list(configs),
        ckpt_file=ckpt_file,
        max_spatial_size=max_spatial_size,
        net_id=net_id,
        data_format=data_format,
        **overrides,
    )
    print(f"Exported {path}")
    return str(path)


def demo(
    output_dir: str = "outputs/demo",
    data_root: str = "data/demo",
    train_seconds: float = 60,
    train_iterations: int = 2000,
    from_scratch: bool = False,
    num_inference_steps: int = 50,
    tumour_shift: Sequence[int] = (0, -4, 0),
) -> str:
    """The main job on demo data: fine-tune Med-DDPM's demo model briefly, synthesise an MRI from a tumour mask and
    from the same mask with the tumour moved, generate a volume with every other bundle's demo model, and write
    NIfTI + PNG and one figure (``demo_preview.png``) with the models' measured cards under ``output_dir``.

    The demo models (``bundles/<name>/models/demo/``) were trained on synthetic demo cohorts with each bundle's
    ``configs/demo_cpu.json`` (commands and metrics in the bundle READMEs). Med-DDPM's fine-tuning resumes from
    ``output_dir/models`` when run again. See :func:`common.demo.run_demo`.

    Args:
        output_dir: where models, logs and generated volumes go.
        data_root: cache folder of the 8-subject 32³ demo cohort.
        train_seconds: wall-clock budget of Med-DDPM's fine-tuning.
        train_iterations: its iteration budget (whichever budget ends first).
        from_scratch: train Med-DDPM from scratch, not from its demo checkpoint (a few CPU minutes give noise).
        num_inference_steps: steps of the respaced DDPM of every bundle (50 matches the full chains).
        tumour_shift: voxels to shift the tumour by along (X, Y, Z) in RAS (default: 4 voxels posterior).
    """
    from common.demo import run_demo

    return str(
        run_demo(
            output_dir, data_root, train_seconds=train_seconds, train_iterations=train_iterations,
            from_scratch=from_scratch, num_inference_steps=num_inference_steps, tumour_shift=tumour_shift,
        )
    )  # fmt: skip


def package(
    bundle: str, output_dir: str = "dist", weights_base_url: str | None = None, allow_no_weights: bool = False
) -> str:
    """Write a self-contained bundle archive (LICENSE, configs, docs, weights or large_files.yml, and ``common/``).

    Prints the archive, its SHA-256, which weights it carries (trained, the demo weights, or none) and whether it
    passes the MONAI model-zoo's rules for a submitted bundle (``common.packaging.check_model_zoo_rules``).

    Args:
        bundle: a bundle folder or name, found as for ``train``.
        output_dir: folder of the archive and its ``.sha256``.
        weights_base_url: publish the weights separately at this URL (listed in ``large_files.yml``).
        allow_no_weights: package a bundle that has not been trained (refused otherwise).
    """
    from common.packaging import package_bundle

    packaged = package_bundle(bundle, output_dir, weights_base_url, allow_no_weights)
    print(f"{packaged.archive}\nSHA-256 {packaged.sha256}\nWeights: {packaged.weights}")
    if packaged.zoo_problems:
        print("Model-zoo rules: not met\n" + "\n".join(f"  - {problem}" for problem in packaged.zoo_problems))
    else:
        print("Model-zoo rules: met (files, version and changelog, metadata schema)")
    return str(packaged.archive)


def fetch(
    url: str, sha256: str, bundle_dir: str = "bundles_downloaded", run: Sequence[str] | str | None = None, **overrides
) -> str:
    """Download a bundle archive, check its SHA-256, unpack it and optionally run some of its configs.

    Args:
        url: the archive's URL.
        sha256: its published SHA-256; a mismatch rejects the archive and leaves nothing behind.
        bundle_dir: parent folder of the unpacked bundle.
        run: config files to run afterwards with ``python -m monai.bundle run``, e.g. ``"[inference.json]"``.
        overrides: config overrides of that run, e.g. ``--num_volumes 2``.
    """
    from common.packaging import fetch_bundle

    folder = fetch_bundle(url, sha256, bundle_dir)
    print(f"Unpacked {folder}")
    if run:
        files = "[" + ",".join(f"'configs/{name}'" for name in _as_list(run)) + "]"
        command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", files]
        for key, value in overrides.items():
            command += [f"--{key}", str(value)]
        result = subprocess.run(command, cwd=folder)  # in the bundle folder: its own copy of ``common``
        if result.returncode != 0:
            raise UserError(f"{folder}: its {files} run failed with exit code {result.returncode}; its error is above")
    return str(folder)


def label(
    studies: str = "studies",
    app_dir: str = "label_app",
    bundles: Sequence[str] | str | None = None,
    configs: Sequence[str] | str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    sampler: str = "ddpm",
    num_inference_steps: int = 50,
    workers: int = 1,
    queue_size: int = 8,
) -> None:
    """Serve the bundles to MONAI Label viewers (3D Slicer, OHIF); needs the ``label`` extra (``make install-label``).

    Med-DDPM's task turns the label volume drawn in the viewer into an MRI; the other bundles' tasks return a new
    volume. See ``common/label_app/main.py``.

    Args:
        studies: MONAI Label's datastore folder (created if missing; may stay empty).
        app_dir: the app folder (created): its ``main.py`` and MONAI Label's logs.
        bundles: bundle names or folders, e.g. ``med_ddpm_brain_mri,cdpm_brain_mri``; default every bundle.
        configs: config files of each bundle's inference, default ``inference.json``.
        host / port: where the server listens; ``0.0.0.0`` to accept other machines.
        sampler / num_inference_steps: default sampling of every request (respaced DDPM, 50 steps); a request may
            ask for others.
        workers / queue_size: inference worker processes (one request at a time each) and the requests that may
            wait for one; more are answered HTTP 503.

    This process becomes the server (exec): SIGTERM / Ctrl-C stop it, and it cannot outlive a killed launcher.
    """
    from common.label_app import exec_server, start_server_command, write_app_dir

    Path(studies).mkdir(parents=True, exist_ok=True)
    app = write_app_dir(app_dir)
    command = start_server_command(
        app, studies, _as_list(bundles or []), _as_list(configs or []), host, port,
        sampler=sampler, num_inference_steps=num_inference_steps, workers=workers, queue_size=queue_size,
    )  # fmt: skip
    exec_server(command)


COMMANDS = {
    "demo": demo,
    "cohort": cohort,
    "prepare": Prepare,
    "preview": preview,
    "train": train,
    "generate": generate,
    "evaluate": evaluate,
    "export": export,
    "package": package,
    "fetch": fetch,
    "label": label,
}
HELP_FLAGS = ("--help", "-h")
DEBUG_FLAG = "--debug"
_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


def _command_line(argv: Sequence[str]) -> list[str]:
    """``argv`` as fire should see it.

    ``--help`` goes after fire's ``--`` separator (fire would otherwise pass it to a command's ``**overrides`` and
    fail); a SHA-256 digest is quoted so that fire keeps it a string (it would read ``000…0`` as the integer 0).
    """
    args = []
    for arg in argv:
        key, equals, value = arg.partition("=")
        if _DIGEST.fullmatch(arg):
            arg = repr(arg)
        elif equals and key == "--sha256" and _DIGEST.fullmatch(value):
            arg = f"{key}={value!r}"
        args.append(arg)
    separator = args.index("--") if "--" in args else len(args)
    if any(arg in HELP_FLAGS for arg in args[:separator]):
        args = [arg for arg in args[:separator] if arg not in HELP_FLAGS] + ["--", "--help"]
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point ``brainsynth``: runs one command of :data:`COMMANDS` on ``argv`` (default
    ``sys.argv[1:]``), printing a user error as ``brainsynth: <problem>`` lines and exiting with code 1."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args or os.environ.get("BRAINSYNTH_DEBUG", "") not in ("", "0")
    args = [arg for arg in args if arg != DEBUG_FLAG]
    try:
        fire.Fire(COMMANDS, command=_command_line(args), name="brainsynth")
    except Exception as error:
        user_error = None if debug else find_user_error(error)
        if user_error is None:
            raise
        for line in problem_lines(user_error):
            print(f"brainsynth: {line}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
