"""Package a bundle folder as a self-contained MONAI bundle archive, and fetch one back from a URL by checksum.

An archive ``<name>_v<version>.zip`` holds one top folder ``<name>/`` with the bundle's ``configs/``, ``docs/`` and
``models/`` (weights, or a ``large_files.yml`` listing their URLs and SHA-256 sums) plus a copy of this repository's
``common/`` package. Bundle configs ``$import common``; ``python -m monai.bundle run`` started in the unpacked
folder puts that folder first on ``sys.path``, so the archive runs on the exact library code it was packaged with,
in an environment that only has the third-party packages its ``metadata.json`` lists. (Listing this repository
as a pip requirement instead would tie every downloaded bundle to a package that is not on PyPI.)
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

import yaml
from monai.apps.utils import download_url
from monai.bundle.scripts import download_large_files

from common.bundle_runner import bundle_dir as resolve_bundle_dir

COMMON_DIR = Path(__file__).resolve().parent
#: Bundle sub-folders that travel in an archive.
BUNDLE_PARTS = ("configs", "docs", "models")
#: Files never packaged: training checkpoints (resume state, not release weights) and Python caches.
EXCLUDED_PATTERNS = ("checkpoint_*.pt", "*_checkpoints", "__pycache__", "*.pyc")
WEIGHT_SUFFIXES = (".pt", ".pth", ".ts", ".onnx")
LARGE_FILES = "large_files.yml"


@dataclass(frozen=True)
class PackagedBundle:
    """An archive written by :func:`package_bundle` and the SHA-256 to publish with it."""

    archive: Path
    sha256: str


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*EXCLUDED_PATTERNS))


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
    bundle: str | Path, output_dir: str | Path = "dist", weights_base_url: str | None = None
) -> PackagedBundle:
    """Write ``<output_dir>/<name>_v<version>.zip`` (and ``.sha256``) from a bundle folder.

    Args:
        bundle: bundle name (folder under ``bundles/``) or path to a bundle folder.
        output_dir: where the archive goes; created if missing.
        weights_base_url: leave the weights out of the archive and list them in ``large_files.yml`` with the URL
            ``<weights_base_url>/models/...`` and their SHA-256; the files are written under
            ``<output_dir>/<name>_v<version>_weights/models/...``, ready to upload to that URL.

    Returns:
        the archive and its SHA-256 (also written to ``<archive>.sha256`` in ``sha256sum`` format).

    Raises:
        FileExistsError: if the archive already exists (a published archive is never overwritten).
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
                _copy_tree(source / part, root / part)
        (root / "models").mkdir(exist_ok=True)
        _copy_tree(COMMON_DIR, root / "common")
        if weights_base_url is not None:
            weights_dir = output_dir / f"{name}_v{version}_weights"
            weights_dir.mkdir(exist_ok=True)
            _move_weights_to_large_files(root, weights_dir, weights_base_url)
        partial = Path(shutil.make_archive(str(Path(staging) / "archive"), "zip", root_dir=staging, base_dir=name))
        os.replace(partial, archive)
    digest = sha256_of(archive)
    Path(f"{archive}.sha256").write_text(f"{digest}  {archive.name}\n")
    return PackagedBundle(archive, digest)


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
