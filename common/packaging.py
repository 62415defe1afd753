"""Package a bundle folder as a self-contained MONAI bundle archive, and fetch one back from a URL by checksum.

An archive ``<name>_v<version>.zip`` holds one top folder ``<name>/`` with the bundle's ``LICENSE``, ``configs/``,
``docs/`` and ``models/`` (weights, or a ``large_files.yml`` listing their URLs and SHA-256 sums) plus a copy of this
repository's ``common/`` package. Weights follow the MONAI model-zoo's names: ``models/model.pt`` for the network
inference samples with, ``models/model_<stage>.pt`` for a bundle's further networks (``model_autoencoder.pt``).
Bundle configs ``$import common``; ``python -m monai.bundle run`` started in the unpacked folder puts that folder
first on ``sys.path``, so the archive runs on the exact library code it was packaged with, in an environment that
only has the third-party packages its ``metadata.json`` lists. (Listing this repository as a pip requirement
instead would tie every downloaded bundle to a package that is not on PyPI.)

:func:`check_model_zoo_rules` applies, offline, the rules that the MONAI model-zoo's CI checks on a submitted
bundle (necessary and preferred files, version in the changelog, the metadata schema, the zoo's file-size limit).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.error
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch
import yaml
from monai.apps.utils import download_url
from monai.bundle.scripts import download_large_files
from monai.utils import optional_import

from common.bundle_runner import bundle_dir as resolve_bundle_dir
from common.bundle_runner import inference_files
from common.errors import UserError

# Optional: MONAI Label's environment pins jsonschema < 4 (through pydicom-seg), which lacks the 2019-09 draft that
# MONAI's schema uses; the model-zoo check needs jsonschema 4 (the [test] extra), the rest of this module does not.
jsonschema, _ = optional_import("jsonschema")
has_jsonschema = hasattr(jsonschema, "Draft201909Validator")

COMMON_DIR = Path(__file__).resolve().parent
#: Bundle sub-folders that travel in an archive.
BUNDLE_PARTS = ("configs", "docs", "models")
#: Files at a bundle's root that travel in an archive.
BUNDLE_FILES = ("LICENSE",)
#: Sub-folder of ``models/`` with the demo model (its weights, or a training checkpoint ``checkpoint_demo_*.pt``),
#: never packaged as such: a bundle without trained weights is packaged with its demo weights in ``models/``.
DEMO_DIR = "demo"
#: Files never packaged: training checkpoints (resume state, not release weights) and Python caches.
EXCLUDED_PATTERNS = ("checkpoint_*.pt", "*_checkpoints", "__pycache__", "*.pyc")
WEIGHT_SUFFIXES = (".pt", ".pth", ".ts", ".onnx")
LARGE_FILES = "large_files.yml"
#: MONAI's bundle metadata schema, kept in ``common`` so that metadata is checked offline.
SCHEMA_FILE = COMMON_DIR / "data" / "monai_schema" / "meta_schema_20240725.json"
#: The model-zoo's rules: files a bundle must have, files it should have (``models/model.pt`` may instead be listed
#: in its large-files config), the hash types a large-files entry may name, and the largest file it accepts.
ZOO_NECESSARY_FILES = ("configs/metadata.json", "LICENSE")
ZOO_WEIGHTS = "models/model.pt"
ZOO_CONFIG_SUFFIXES = ("json", "yaml", "yml")
ZOO_HASH_TYPES = ("md5", "sha1", "sha256", "sha512")
ZOO_MAX_FILE_BYTES = 25 * 2**20


@dataclass(frozen=True)
class PackagedBundle:
    """An archive written by :func:`package_bundle`, the SHA-256 to publish with it, and what it carries.

    Attributes:
        archive: the ``.zip`` file.
        sha256: its SHA-256.
        weights: one line on the weights inside: trained, demo or none.
        zoo_problems: the archive's bundle against the model-zoo rules (:func:`check_model_zoo_rules`); empty if
            it passes them.
    """

    archive: Path
    sha256: str
    weights: str
    zoo_problems: tuple[str, ...]


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _copy_tree(source: Path, target: Path, *excluded: str) -> None:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*EXCLUDED_PATTERNS, *excluded))


def _complete_weights(source: Path, root: Path, allow_no_weights: bool) -> str:
    """Check that the staged bundle ``root`` has every file its inference loads; the line saying which weights.

    Missing files that the bundle ``source`` ships as its demo model (``models/demo/<name>``) are copied in; where
    only ``models/model.pt`` is missing and ``source`` has a demo checkpoint (``models/demo/checkpoint_demo_*.pt``),
    that checkpoint's EMA network becomes ``models/model.pt``.

    Raises:
        FileNotFoundError: files are missing and ``allow_no_weights`` is false.
        ValueError: the bundle has several demo checkpoints.
    """
    loaded = [path.relative_to(root.resolve()).as_posix() for path in inference_files(root)]
    missing = [name for name in loaded if not (root / name).is_file()]
    if not missing:
        return f"trained weights: {', '.join(loaded)}"
    demo = source / "models" / DEMO_DIR
    shipped = {name: demo / Path(name).relative_to("models") for name in missing}
    if all(name.startswith("models/") and path.is_file() for name, path in shipped.items()):
        for name, path in shipped.items():
            shutil.copyfile(path, root / name)
        return (
            f"demo weights: {', '.join(missing)} from models/{DEMO_DIR}/, trained on the synthetic demo cohort only; "
            "they fit inference.json + demo_cpu.json (see docs/README.md)"
        )
    demos = sorted(demo.glob("checkpoint_demo_*.pt"))
    if missing == [ZOO_WEIGHTS] and demos:
        if len(demos) > 1:
            raise ValueError(f"{source}: several demo checkpoints {[p.name for p in demos]}; keep one")
        torch.save(torch.load(demos[0], map_location="cpu", weights_only=True)["ema"], root / ZOO_WEIGHTS)
        return (
            f"demo weights: {ZOO_WEIGHTS} is the EMA network of {demos[0].relative_to(source).as_posix()}, "
            "trained on the synthetic demo cohort only (see docs/README.md)"
        )
    if not allow_no_weights:
        raise FileNotFoundError(
            f"{source}: no {', '.join(missing)}, which its inference loads; train the bundle first, or pass "
            "allow_no_weights to package it without (the model zoo expects models/model.pt)"
        )
    return f"no weights: {', '.join(missing)} missing; the archive runs only after training"


def _move_weights_to_large_files(root: Path, weights_dir: Path, base_url: str) -> None:
    """Move the weights under ``root/models`` to ``weights_dir``, listing each in ``root/large_files.yml``."""
    entries = []
    for weights in sorted(p for p in (root / "models").rglob("*") if p.suffix in WEIGHT_SUFFIXES):
        relative = weights.relative_to(root).as_posix()
        entries.append(
            {
                "path": relative,
                "url": f"{base_url.rstrip('/')}/{relative}",
                "hash_val": sha256_of(weights),
                "hash_type": "sha256",
            }
        )
        (weights_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(weights, weights_dir / relative)
    (root / LARGE_FILES).write_text(yaml.safe_dump({"large_files": entries}, sort_keys=False))


def package_bundle(
    bundle: str | Path,
    output_dir: str | Path = "dist",
    weights_base_url: str | None = None,
    allow_no_weights: bool = False,
) -> PackagedBundle:
    """Write ``<output_dir>/<name>_v<version>.zip`` (and ``.sha256``) from a bundle folder.

    The archive carries every file the bundle's ``inference.json`` loads (``models/model.pt``, and
    ``models/model_autoencoder.pt`` or ``models/field_scale.json`` where a bundle needs them). A bundle without
    trained ``models/model.pt`` but with a demo checkpoint (``models/demo/checkpoint_demo_*.pt``) gets that
    checkpoint's EMA network as ``models/model.pt``. Training checkpoints are never packaged.

    Args:
        bundle: bundle name (folder under ``bundles/``) or path to a bundle folder.
        output_dir: where the archive goes; created if missing.
        weights_base_url: leave the weights out of the archive and list them in ``large_files.yml`` with the URL
            ``<weights_base_url>/models/...`` and their SHA-256; the files are written under
            ``<output_dir>/<name>_v<version>_weights/models/...``, ready to upload to that URL.
        allow_no_weights: package a bundle that lacks files its inference loads (the archive then fails the
            model-zoo rules, and its inference runs only after training) instead of refusing to.

    Returns:
        the archive, its SHA-256 (also written to ``<archive>.sha256`` in ``sha256sum`` format), which weights it
        carries and its problems against the model-zoo rules.

    Raises:
        FileExistsError: if the archive already exists (a published archive is never overwritten).
        FileNotFoundError: if weights are missing and ``allow_no_weights`` is false.
    """
    source = resolve_bundle_dir(str(bundle))
    name = source.name
    version = json.loads((source / "configs" / "metadata.json").read_text())["version"]
    output_dir = Path(output_dir)
    archive = output_dir / f"{name}_v{version}.zip"
    if archive.exists():
        raise FileExistsError(f"{archive} already exists; remove it or bump the version in metadata.json")
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output_dir) as staging:
        root = Path(staging) / name
        for part in BUNDLE_PARTS:
            if (source / part).is_dir():
                _copy_tree(source / part, root / part, *([DEMO_DIR] if part == "models" else []))
        for file in BUNDLE_FILES:
            if (source / file).is_file():
                shutil.copy2(source / file, root / file)
        (root / "models").mkdir(exist_ok=True)
        _copy_tree(COMMON_DIR, root / "common")
        weights = _complete_weights(source, root, allow_no_weights)
        if weights_base_url is not None:
            weights_dir = output_dir / f"{name}_v{version}_weights"
            weights_dir.mkdir(exist_ok=True)
            _move_weights_to_large_files(root, weights_dir, weights_base_url)
        zoo_problems = tuple(check_model_zoo_rules(root))
        partial = Path(shutil.make_archive(str(Path(staging) / "archive"), "zip", root_dir=staging, base_dir=name))
        os.replace(partial, archive)
    digest = sha256_of(archive)
    Path(f"{archive}.sha256").write_text(f"{digest}  {archive.name}\n")
    return PackagedBundle(archive, digest, weights, zoo_problems)


def _zoo_config_file(folder: Path, stem: str) -> tuple[Path | None, list[str]]:
    """The config ``<stem>.json|yaml|yml`` in ``folder`` as the model zoo finds it; problems if there are several."""
    found = [folder / f"{stem}.{suffix}" for suffix in ZOO_CONFIG_SUFFIXES if (folder / f"{stem}.{suffix}").is_file()]
    if len(found) > 1:
        return None, [f"several {stem} configs ({', '.join(p.name for p in found)}): keep one"]
    return (found[0] if found else None), []


def _large_files_problems(folder: Path) -> tuple[set[str], list[str]]:
    """The paths that the bundle's large-files config lists, and its problems (entries without path or URL,
    unknown hash types)."""
    config, problems = _zoo_config_file(folder, "large_files")
    if config is None:
        return set(), problems
    try:
        entries = (yaml.safe_load(config.read_text()) or {}).get("large_files")
    except (yaml.YAMLError, AttributeError) as error:
        return set(), [f"{config.name} is not a mapping with a 'large_files' list ({error})"]
    if not isinstance(entries, list):
        return set(), [f"{config.name} has no 'large_files' list"]
    listed = set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("path") or not entry.get("url"):
            problems.append(f"{config.name}: entry {index} needs a 'path' and a 'url'")
            continue
        listed.add(PurePosixPath(entry["path"]).as_posix())
        hash_type = str(entry.get("hash_type") or "").lower()
        if hash_type and hash_type not in ZOO_HASH_TYPES:
            problems.append(f"{config.name}: hash_type {hash_type!r} of {entry['path']} is not one of {ZOO_HASH_TYPES}")
    return listed, problems


def _metadata_problems(meta_file: Path, schema_file: Path) -> list[str]:
    """``version`` and ``changelog`` of ``configs/metadata.json``, and the file against MONAI's schema."""
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as error:
        return [f"configs/metadata.json is not valid JSON ({error})"]
    problems = [f"configs/metadata.json has no '{key}'" for key in ("version", "changelog") if key not in meta]
    changelog = meta.get("changelog")
    if "version" in meta and isinstance(changelog, dict) and meta["version"] not in changelog:
        problems.append(f"version {meta['version']} of configs/metadata.json is missing from its changelog")
    if PurePosixPath(str(meta.get("schema", ""))).name != schema_file.name:
        problems.append(
            f"configs/metadata.json names the schema {meta.get('schema')!r}, not {schema_file.name}, the one that"
            " can be checked offline"
        )
    elif not schema_file.is_file():
        problems.append(f"{schema_file}: the schema to check configs/metadata.json against is missing")
    elif not has_jsonschema:
        raise UserError(
            "checking configs/metadata.json against MONAI's schema needs jsonschema 4: pip install 'jsonschema>=4,<5' "
            "(part of this project's [test] extra)"
        )
    else:  # what ``monai.bundle verify_metadata`` does with a schema file at hand, without its download machinery
        try:
            jsonschema.validate(instance=meta, schema=json.loads(schema_file.read_text()))
        except jsonschema.ValidationError as error:
            where = "/".join(str(part) for part in error.absolute_path) or "the top level"
            problems.append(f"configs/metadata.json fails the schema {schema_file.name} at {where}: {error.message}")
    return problems


def check_model_zoo_rules(bundle: str | Path, schema_file: str | Path = SCHEMA_FILE) -> list[str]:
    """The problems of a bundle folder against the MONAI model-zoo's rules for a submitted bundle; empty if none.

    The rules (those of the zoo's CONTRIBUTING guide and per-bundle CI, written out here, and checked offline):

    - necessary files: ``configs/metadata.json`` and ``LICENSE`` at the bundle's root;
    - preferred files: ``models/model.pt`` (in the folder, or listed with its URL in ``large_files.yml``, ``.yaml``
      or ``.json``, whose entries each need a ``path`` and a ``url``, and a ``hash_type`` among md5, sha1, sha256,
      sha512 if any) and an inference config ``configs/inference.json`` (or ``.yaml``, ``.yml``);
    - ``metadata.json`` has ``version`` and ``changelog``, the version is a key of the changelog, and the file
      passes MONAI's metadata schema (the local copy ``schema_file``, which ``metadata.json``'s ``schema`` must name);
    - no file above 25 MiB: larger ones go to ``large_files.yml``.

    Not checked: that the version is new to the zoo (its list of published bundles), the zoo's code style checks of
    Python files, and the optional checks the zoo skips for its own generative bundles (network input/output shapes
    with ``verify_net_in_out`` and TorchScript export, which diffusion networks taking timesteps do not support).

    Args:
        bundle: the bundle folder (e.g. an unpacked archive's ``<name>/``).
        schema_file: MONAI's metadata schema, read from disk (never downloaded).
    """
    folder = Path(bundle)
    problems = [f"necessary file {name} is missing" for name in ZOO_NECESSARY_FILES if not (folder / name).is_file()]
    listed, large_files_problems = _large_files_problems(folder)
    problems += large_files_problems
    if not (folder / ZOO_WEIGHTS).is_file() and ZOO_WEIGHTS not in listed:
        problems.append(f"preferred file {ZOO_WEIGHTS} is missing, and no large_files.yml lists it")
    inference, inference_problems = _zoo_config_file(folder / "configs", "inference")
    problems += inference_problems
    if inference is None and not inference_problems:
        problems.append("preferred file configs/inference.json (or .yaml, .yml) is missing")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.stat().st_size > ZOO_MAX_FILE_BYTES:
            problems.append(
                f"{path.relative_to(folder).as_posix()} is {path.stat().st_size / 2**20:.1f} MiB, above the zoo's"
                " 25 MiB per file: publish it through large_files.yml (brainsynth package --weights_base_url)"
            )
    if (folder / "configs" / "metadata.json").is_file():
        problems += _metadata_problems(folder / "configs" / "metadata.json", Path(schema_file))
    return problems


def _check_members(archive: Path, url: str) -> str:
    """The archive's single top folder; refuses absolute paths, ``..`` and more than one top folder."""
    try:
        with zipfile.ZipFile(archive) as bundle_zip:
            names = bundle_zip.namelist()
            broken = bundle_zip.testzip()
    except zipfile.BadZipFile as error:
        raise ValueError(f"{url}: not a readable zip archive ({error})") from error
    if broken is not None:
        raise ValueError(f"{url}: archive member {broken} is corrupted")
    tops = {PurePosixPath(name).parts[0] for name in names if name}
    unsafe = [name for name in names if PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts]
    if unsafe or len(tops) != 1:
        raise ValueError(f"{url}: a bundle archive needs exactly one top folder and relative paths, got {sorted(tops)}")
    return tops.pop()


@contextlib.contextmanager
def _download_errors(url: str, what: str) -> Iterator[None]:
    """Turn MONAI's and urllib's download errors into a missing-file or a failed-checksum error naming ``what``."""
    try:
        yield
    except urllib.error.HTTPError as error:
        raise FileNotFoundError(f"{url}: cannot download {what} (HTTP {error.code} at {error.url})") from error
    except urllib.error.URLError as error:
        raise FileNotFoundError(f"{url}: cannot download {what} ({error.reason})") from error
    except (ValueError, RuntimeError) as error:  # MONAI's download_url on a hash mismatch
        raise ValueError(
            f"{url}: the SHA-256 of {what} does not match the published value: it is corrupted or was tampered with,"
            f" and nothing was unpacked ({error})"
        ) from error


def fetch_bundle(url: str, sha256: str, bundle_dir: str | Path = "bundles_downloaded") -> Path:
    """Download a bundle archive, check its SHA-256, unpack it (and its ``large_files.yml``) into ``bundle_dir``.

    Everything is downloaded and unpacked in a temporary folder inside ``bundle_dir`` and moved into place only
    when every checksum matched, so a corrupted, tampered or missing archive (or weight file) leaves nothing behind.

    Args:
        url: address of ``<name>_v<version>.zip`` (``http(s)://`` or ``file://``).
        sha256: the SHA-256 published with the archive.
        bundle_dir: parent folder of the unpacked bundle.

    Returns:
        the unpacked bundle folder ``<bundle_dir>/<name>``.

    Raises:
        FileNotFoundError: nothing at ``url`` (or at a weight's URL).
        ValueError: the archive's SHA-256 differs from ``sha256`` (corrupted or tampered), or it is not a valid
            bundle archive.
        FileExistsError: ``<bundle_dir>/<name>`` already exists (it is never overwritten).
    """
    if not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise ValueError(f"sha256 must be 64 hexadecimal digits, got {sha256!r}")
    bundle_dir = Path(bundle_dir)
    bundle_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=bundle_dir, prefix=".fetch-") as staging:
        archive = Path(staging) / "bundle.zip"
        with _download_errors(url, "the bundle archive"):
            download_url(url, archive, hash_val=sha256.lower(), hash_type="sha256", progress=True)
        name = _check_members(archive, url)
        target = bundle_dir / name
        if target.exists():
            raise FileExistsError(f"{target} already exists; remove it or choose another bundle_dir")
        unpacked = Path(staging) / "unpacked"
        with zipfile.ZipFile(archive) as bundle_zip:
            bundle_zip.extractall(unpacked)
        if (unpacked / name / LARGE_FILES).is_file():
            with _download_errors(url, f"a weight file listed in {LARGE_FILES}"):
                download_large_files(bundle_path=str(unpacked / name))
        os.replace(unpacked / name, target)
    return target
