"""Packaged bundle archives: self-contained, downloadable by URL with a checksum, safe against bad archives."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from support import monai_bundle, untrained_bundle

from common import cli
from common.data import build_demo_cohort, load_datalist
from common.packaging import fetch_bundle, package_bundle, sha256_of

REPO = Path(__file__).resolve().parents[1]
BUNDLE = "cdpm_brain_mri"
#: Inference on tiny random weights: 2 DDIM steps per stage.
TINY_INFERENCE = {"num_volumes": 1, "batch_size": 1, "num_inference_steps": 2, "seed": 0}
#: The bundles besides ``BUNDLE`` (whose archive the download tests run).
OTHER_BUNDLES = ["med_ddpm_brain_mri", "medical_diffusion_brain_mri", "diffusemorph_brain_mri"]


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory) -> Path:
    """A copy of the cDPM bundle whose ``models/model.pt`` holds a tiny (tiny_cpu.json) network."""
    folder = untrained_bundle(BUNDLE, tmp_path_factory.mktemp("source"), whole=True)
    (folder / "models" / "checkpoint_8.pt").write_bytes(b"training state, not for release")
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A static HTTP server on 127.0.0.1 over a temporary folder: yields (folder, base URL)."""
    root = tmp_path_factory.mktemp("www")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    thread.join()


@pytest.fixture(scope="module")
def published(tiny_bundle, server) -> dict:
    """The tiny bundle packaged with its weights inside and served over HTTP."""
    root, base_url = server
    packaged = package_bundle(tiny_bundle, root)
    return {"archive": packaged.archive, "sha256": packaged.sha256, "url": f"{base_url}/{packaged.archive.name}"}


def installed(distribution: str) -> bool:
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def listed_distributions(bundle_folder: Path) -> dict[str, metadata.Distribution]:
    """The distributions of this environment that ``metadata.json`` lists, and their dependencies, by name.

    A listed package this environment lacks is left out: Medical Diffusion lists lpips and torchvision for its
    VQ-GAN training's perceptual loss, and its inference must run without them.
    """
    meta = json.loads((bundle_folder / "configs" / "metadata.json").read_text())
    listed = ["monai", "torch", "numpy", *meta.get("required_packages_version", {})]
    listed += list(meta.get("optional_packages_version", {}))
    wanted = [name for name in listed if installed(name)]
    closure: dict[str, metadata.Distribution] = {}
    while wanted:
        name = re.sub(r"[-_.]+", "-", wanted.pop()).lower()
        if name in closure:
            continue
        closure[name] = metadata.distribution(name)
        for requirement in map(Requirement, closure[name].requires or []):
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                wanted.append(requirement.name)
    return closure


def only_listed_packages_env(tmp_path: Path, bundle_folder: Path) -> Path:
    """A virtual environment that sees only the distributions ``metadata.json`` lists, and their dependencies
    (:func:`listed_distributions`); its interpreter.

    Nothing is downloaded: the distributions of this environment are linked into a folder that the new
    environment's ``site-packages`` points to. This repository's own package is not listed, so ``common`` must
    come from the archive.
    """
    closure = listed_distributions(bundle_folder)
    linked = tmp_path / "linked_site_packages"
    linked.mkdir()
    for distribution in closure.values():
        site = Path(distribution.locate_file(""))
        for top in {Path(str(f)).parts[0] for f in distribution.files or []} - {"..", "__pycache__"}:
            if (site / top).exists() and not (linked / top).exists():
                (linked / top).symlink_to(site / top)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (Path(purelib) / "only_listed.pth").write_text(f"{linked}\n")
    return python


def inference_argv(output_dir: Path, **overrides) -> list[str]:
    """The arguments of ``python -m monai.bundle`` for the tiny inference of an unpacked bundle, from its folder."""
    files = "['configs/inference.json','configs/tiny_cpu.json']"
    argv = ["run", "--config_file", files, "--output_dir", str(output_dir)]
    for key, value in {**TINY_INFERENCE, **overrides}.items():
        argv += [f"--{key}", str(value)]
    return argv


def clean_env() -> dict[str, str]:
    """This process's environment without its package paths, warnings off."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PYTHONWARNINGS": "ignore"}


def run_inference(python: Path, folder: Path, output_dir: Path, **overrides) -> subprocess.CompletedProcess:
    command = [str(python), "-m", "monai.bundle", *inference_argv(output_dir, **overrides)]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, env=clean_env())


#: Runs the inference of several unpacked bundles in sequence in one interpreter of a clean environment, each as
#: ``python -m monai.bundle run`` does from the bundle folder (fire parses the same arguments; the folder, the
#: working directory, comes first on ``sys.path``); ``common`` is forgotten before each, so that each bundle
#: imports its own copy. Argument: JSON ``[[folder, argv], ...]``; prints JSON ``{folder: {"error": traceback or
#: null, "common": the file common was imported from}}`` as its last line.
SEQUENTIAL_RUNNER = """
import importlib, json, os, sys, traceback
import fire
from monai.bundle.scripts import run

results = {}
for folder, argv in json.loads(sys.argv[1]):
    for name in [name for name in sys.modules if name == "common" or name.startswith("common.")]:
        del sys.modules[name]
    os.chdir(folder)
    importlib.invalidate_caches()
    try:
        fire.Fire({"run": run}, command=argv, name="monai.bundle")
        error = None
    except BaseException:
        error = traceback.format_exc()[-4000:]
    common = sys.modules.get("common")
    results[folder] = {"error": error, "common": common and common.__file__}
print(json.dumps(results))
"""


def test_archive_holds_configs_docs_weights_and_common_but_no_checkpoints(published):
    with zipfile.ZipFile(published["archive"]) as archive:
        names = set(archive.namelist())
    assert published["archive"].name == f"{BUNDLE}_v0.1.0.zip"
    for expected in ("LICENSE", "configs/inference.json", "configs/metadata.json", "docs/README.md", "models/model.pt"):
        assert f"{BUNDLE}/{expected}" in names
    assert f"{BUNDLE}/common/__init__.py" in names and f"{BUNDLE}/common/packaging.py" in names
    assert not [name for name in names if "checkpoint_" in name or "__pycache__" in name]
    assert Path(f"{published['archive']}.sha256").read_text().split()[0] == published["sha256"]


def test_package_refuses_to_overwrite_a_published_archive(tiny_bundle, published):
    with pytest.raises(FileExistsError, match="already exists"):
        package_bundle(tiny_bundle, published["archive"].parent)


def test_monai_bundle_download_then_run_with_only_the_listed_packages(published, tmp_path):
    download_dir = tmp_path / "downloaded"
    argv = ["download", "--name", BUNDLE, "--url", published["url"], "--bundle_dir", str(download_dir)]
    result = monai_bundle(argv, tmp_path)  # in this process, fire parsing as on the command line
    assert result.returncode == 0, result.stderr[-3000:]
    folder = download_dir / BUNDLE
    assert (folder / "common" / "__init__.py").is_file()

    python = only_listed_packages_env(tmp_path, folder)
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(u.find_spec('common'), u.find_spec('nilearn'))"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert probe.stdout.split()[0] == "None", "outside the bundle folder, common must not be importable"

    output_dir = tmp_path / "generated"
    result = run_inference(python, folder, output_dir)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (output_dir / "cdpm_sample00_t1.nii.gz").is_file() and (output_dir / "preview.png").is_file()


@pytest.fixture(scope="module")
def other_archives_run(tmp_path_factory) -> dict[str, dict]:
    """Each of :data:`OTHER_BUNDLES` packaged, unpacked and its inference run with only the listed packages.

    Bundles that list the same packages run in sequence in one interpreter of one such environment
    (:data:`SEQUENTIAL_RUNNER`; ``python -m monai.bundle run`` itself is run by the download test): per bundle, its
    folder, output folder, and ``error`` (a traceback or None) and ``common`` (where it was imported from).
    """
    tmp_path = tmp_path_factory.mktemp("archives")
    jobs: dict[str, tuple[Path, list[str]]] = {}
    groups: dict[frozenset, list[str]] = {}
    for bundle in OTHER_BUNDLES:
        packaged = package_bundle(untrained_bundle(bundle, tmp_path / "source", whole=True), tmp_path / "dist")
        with zipfile.ZipFile(packaged.archive) as archive:
            archive.extractall(tmp_path / "unpacked")
        folder = tmp_path / "unpacked" / bundle
        overrides = {}
        if bundle == "med_ddpm_brain_mri":  # generates from a mask
            cohort = build_demo_cohort(tmp_path / "cohort", num_subjects=1, size=32, seed=0, tumour_fraction=1)
            overrides["masks"] = load_datalist(cohort / "datalist.json")[0]["label"]
        jobs[bundle] = (folder, inference_argv(tmp_path / "generated" / bundle, **overrides))
        groups.setdefault(frozenset(listed_distributions(folder)), []).append(bundle)
    runs = {}
    for index, bundles in enumerate(groups.values()):
        env_dir = tmp_path / f"env{index}"
        env_dir.mkdir()
        python = only_listed_packages_env(env_dir, jobs[bundles[0]][0])
        argument = json.dumps([[str(jobs[bundle][0]), jobs[bundle][1]] for bundle in bundles])
        result = subprocess.run(
            [str(python), "-c", SEQUENTIAL_RUNNER, argument], cwd=env_dir, capture_output=True, text=True,
            env=clean_env(), timeout=900,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-4000:]
        results = json.loads(result.stdout.strip().splitlines()[-1])
        for bundle in bundles:
            runs[bundle] = {**results[str(jobs[bundle][0])], "folder": jobs[bundle][0]}
            runs[bundle]["output_dir"] = tmp_path / "generated" / bundle
    return runs


@pytest.mark.parametrize("bundle", OTHER_BUNDLES)
def test_every_bundle_archive_runs_with_only_the_listed_packages(bundle, other_archives_run):
    run = other_archives_run[bundle]
    assert run["error"] is None, run["error"]
    assert Path(run["common"]).resolve().is_relative_to(run["folder"].resolve()), f"common from {run['common']}"
    (record,) = json.loads((run["output_dir"] / "outputs.json").read_text())
    assert Path(record["preview"]).is_file()


def test_cli_fetch_checks_sha256_unpacks_and_runs(published, tmp_path, monkeypatch, capfd):
    """``brainsynth fetch`` in this process (``cli.main``: fire's parsing, the digest kept a string, user errors as
    exit status 1); its ``--run`` is the new process ``python -m monai.bundle run`` in the unpacked folder."""
    target = tmp_path / "bundles"
    argv = ["fetch", published["url"], "--sha256", published["sha256"]]
    argv += ["--bundle_dir", str(target), "--run", "[inference.json,tiny_cpu.json]"]
    argv += ["--output_dir", str(tmp_path / "out")] + [f"--{k}={v}" for k, v in TINY_INFERENCE.items()]
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")  # of the bundle run
    try:
        cli.main(argv)
    except SystemExit as error:
        pytest.fail(f"brainsynth fetch exited with {error.code}:\n{capfd.readouterr().err[-4000:]}")
    assert (target / BUNDLE / "models" / "model.pt").is_file()
    assert (tmp_path / "out" / "cdpm_sample00_t1.nii.gz").is_file()


def test_corrupted_archive_is_rejected_and_nothing_is_left(published, server, tmp_path):
    root, base_url = server
    data = bytearray(published["archive"].read_bytes())
    data[len(data) // 2] ^= 0xFF
    (root / "corrupted.zip").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="the bundle archive does not match the published value"):
        fetch_bundle(f"{base_url}/corrupted.zip", published["sha256"], tmp_path / "bundles")
    assert list((tmp_path / "bundles").iterdir()) == []


def test_tampered_archive_is_rejected_and_nothing_is_left(published, server, tmp_path):
    root, base_url = server
    tampered = root / "tampered.zip"
    shutil.copyfile(published["archive"], tampered)
    with zipfile.ZipFile(tampered, "a") as archive:
        archive.writestr(f"{BUNDLE}/configs/evil.json", "{}")
    with pytest.raises(ValueError, match="corrupted or was tampered with"):
        fetch_bundle(f"{base_url}/tampered.zip", published["sha256"], tmp_path / "bundles")
    assert list((tmp_path / "bundles").iterdir()) == []


def test_missing_archive_fails_clearly(server, tmp_path):
    _, base_url = server
    with pytest.raises(ValueError, match="64 hexadecimal digits"):
        fetch_bundle(f"{base_url}/no_such_bundle.zip", "not-a-checksum", tmp_path / "bundles")
    with pytest.raises(FileNotFoundError, match="HTTP 404"):
        fetch_bundle(f"{base_url}/no_such_bundle.zip", "0" * 64, tmp_path / "bundles")
    assert list((tmp_path / "bundles").iterdir()) == []


def test_weights_published_separately_through_large_files(tiny_bundle, server, tmp_path):
    root, base_url = server
    dist = root / "separate"
    packaged = package_bundle(tiny_bundle, dist, weights_base_url=f"{base_url}/separate/{BUNDLE}_v0.1.0_weights")
    with zipfile.ZipFile(packaged.archive) as archive:
        assert f"{BUNDLE}/models/model.pt" not in archive.namelist()
        assert f"{BUNDLE}/large_files.yml" in archive.namelist()
    url = f"{base_url}/separate/{packaged.archive.name}"
    folder = fetch_bundle(url, packaged.sha256, tmp_path / "good")
    assert sha256_of(folder / "models" / "model.pt") == sha256_of(tiny_bundle / "models" / "model.pt")

    (dist / f"{BUNDLE}_v0.1.0_weights" / "models" / "model.pt").write_bytes(b"tampered weights")
    with pytest.raises(ValueError, match="a weight file listed in large_files.yml does not match the published"):
        fetch_bundle(url, packaged.sha256, tmp_path / "bad")
    assert list((tmp_path / "bad").iterdir()) == []
