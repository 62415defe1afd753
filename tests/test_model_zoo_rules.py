"""Packaged archives against the MONAI model-zoo's rules for a submitted bundle, checked offline.

The rules (``common.packaging.check_model_zoo_rules``): ``LICENSE`` and ``configs/metadata.json``; ``models/model.pt``
(or a ``large_files.yml`` entry for it) and ``configs/inference.json``; the version in the changelog; MONAI's
metadata schema; no file above 25 MiB. Weights are named as in the zoo's generative bundles.
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from support import untrained_bundle

from common import cli
from common.export import load_network
from common.packaging import check_model_zoo_rules, package_bundle, sha256_of

pytest_plugins = ["support"]  # the offline fixture

REPO = Path(__file__).resolve().parents[1]
#: The weight files of each bundle's archive, besides DiffuseMorph's models/field_scale.json.
WEIGHTS = {
    "cdpm_brain_mri": ["model.pt"],
    "med_ddpm_brain_mri": ["model.pt"],
    "medical_diffusion_brain_mri": ["model.pt", "model_autoencoder.pt"],
    "diffusemorph_brain_mri": ["model.pt"],
}
DEMO_CHECKPOINT = REPO / "bundles" / "med_ddpm_brain_mri" / "models" / "demo" / "checkpoint_demo_s32.pt"


def unpack(archive: Path, target: Path) -> Path:
    """Unzip ``archive`` into ``target``; the bundle folder."""
    with zipfile.ZipFile(archive) as bundle_zip:
        bundle_zip.extractall(target)
        (top,) = {name.split("/")[0] for name in bundle_zip.namelist()}
    return target / top


@pytest.fixture(scope="module")
def passing_bundle(tmp_path_factory) -> Path:
    """The unpacked archive of the cDPM bundle with tiny untrained weights."""
    root = tmp_path_factory.mktemp("passing")
    packaged = package_bundle(untrained_bundle("cdpm_brain_mri", root / "source", whole=True), root / "dist")
    return unpack(packaged.archive, root / "unpacked")


@pytest.mark.parametrize("bundle", sorted(WEIGHTS))
def test_every_packaged_archive_passes_the_model_zoo_rules(bundle, tmp_path: Path, offline):
    packaged = package_bundle(untrained_bundle(bundle, tmp_path / "source", whole=True), tmp_path / "dist")
    folder = unpack(packaged.archive, tmp_path / "unpacked")
    assert check_model_zoo_rules(folder) == [] and packaged.zoo_problems == ()
    assert packaged.weights.startswith("trained weights: models/model.pt")
    licence = (folder / "LICENSE").read_text()
    assert f"(MONAI bundle {bundle})" in licence and "Apache License" in licence and "docs/data_license.txt" in licence
    assert (folder / "docs" / "data_license.txt").is_file()
    assert sorted(p.name for p in (folder / "models").glob("*.pt")) == WEIGHTS[bundle]
    assert (folder / "models" / "field_scale.json").is_file() == (bundle == "diffusemorph_brain_mri")


def test_weights_listed_in_large_files_pass_the_rules(tmp_path: Path, offline):
    bundle = "medical_diffusion_brain_mri"
    source = untrained_bundle(bundle, tmp_path / "source", whole=True)
    packaged = package_bundle(source, tmp_path / "dist", weights_base_url="https://example.org/weights")
    folder = unpack(packaged.archive, tmp_path / "unpacked")
    assert not list((folder / "models").glob("*.pt"))
    listed = {entry["path"]: entry for entry in yaml.safe_load((folder / "large_files.yml").read_text())["large_files"]}
    assert sorted(listed) == ["models/model.pt", "models/model_autoencoder.pt"]
    for path, entry in listed.items():
        assert entry["url"] == f"https://example.org/weights/{path}" and entry["hash_type"] == "sha256"
        assert entry["hash_val"] == sha256_of(source / path)
    assert check_model_zoo_rules(folder) == []


def test_med_ddpm_is_packaged_with_its_demo_weights(tmp_path: Path, capsys, offline):
    """Without trained weights, the demo checkpoint's EMA network becomes models/model.pt; the checkpoint stays out."""
    source = tmp_path / "med_ddpm_brain_mri"
    # the repository's bundle as committed: locally trained weights and checkpoints, if any, left behind
    shutil.copytree(
        REPO / "bundles" / "med_ddpm_brain_mri", source, ignore=shutil.ignore_patterns("model*.pt", "checkpoint_[0-9]*")
    )
    archive = Path(cli.package(str(source), str(tmp_path / "dist")))
    printed = capsys.readouterr().out
    assert "Weights: demo weights: models/model.pt is the EMA network of models/demo/checkpoint_demo_s32.pt" in printed
    assert "Model-zoo rules: met" in printed
    with zipfile.ZipFile(archive) as bundle_zip:
        models = [name for name in bundle_zip.namelist() if name.startswith("med_ddpm_brain_mri/models/")]
    assert models == ["med_ddpm_brain_mri/models/", "med_ddpm_brain_mri/models/model.pt"]
    folder = unpack(archive, tmp_path / "unpacked")
    assert check_model_zoo_rules(folder) == []
    weights = torch.load(folder / "models" / "model.pt", weights_only=True)
    expected = torch.load(DEMO_CHECKPOINT, weights_only=True)["ema"]
    assert weights.keys() == expected.keys() and all(torch.equal(weights[k], expected[k]) for k in expected)
    load_network(folder, ["inference.json", "tiny_cpu.json"], ckpt_file=folder / "models" / "model.pt")  # strict
    with pytest.raises(RuntimeError, match="weights do not fit"):  # the demo weights are the tiny network's
        load_network(folder, ["inference.json"], ckpt_file=folder / "models" / "model.pt")


def test_missing_weights_are_refused_unless_allowed(tmp_path: Path, capsys):
    source = untrained_bundle("medical_diffusion_brain_mri", tmp_path / "source", whole=True)
    (source / "models" / "model_autoencoder.pt").unlink()
    with pytest.raises(FileNotFoundError, match="no models/model_autoencoder.pt, which its inference loads"):
        package_bundle(source, tmp_path / "dist")
    assert not (tmp_path / "dist" / "medical_diffusion_brain_mri_v0.1.0.zip").exists()

    (source / "models" / "model.pt").unlink()
    cli.package(str(source), str(tmp_path / "dist"), allow_no_weights=True)
    printed = capsys.readouterr().out
    assert "Weights: no weights: models/model.pt, models/model_autoencoder.pt missing" in printed
    assert "Model-zoo rules: not met\n  - preferred file models/model.pt is missing" in printed


def _remove(folder: Path, name: str) -> None:
    (folder / name).unlink()


def _edit_metadata(folder: Path, edit) -> None:
    meta_file = folder / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    edit(meta)
    meta_file.write_text(json.dumps(meta))


def _large_files(folder: Path, entry: dict) -> None:
    (folder / "large_files.yml").write_text(yaml.safe_dump({"large_files": [entry]}))


def _oversized_file(folder: Path) -> None:
    with open(folder / "models" / "model.pt", "r+b") as weights:
        weights.truncate(26 * 2**20)


BREAKAGES = {
    "no LICENSE": (lambda f: _remove(f, "LICENSE"), "necessary file LICENSE is missing"),
    "no metadata": (lambda f: _remove(f, "configs/metadata.json"), "necessary file configs/metadata.json is missing"),
    "no weights": (
        lambda f: _remove(f, "models/model.pt"),
        "preferred file models/model.pt is missing, and no large_files.yml lists it",
    ),
    "no inference config": (
        lambda f: (f / "configs" / "inference.json").rename(f / "configs" / "generate.json"),
        "preferred file configs/inference.json (or .yaml, .yml) is missing",
    ),
    "version not in changelog": (
        lambda f: _edit_metadata(f, lambda meta: meta.update(version="0.2.0")),
        "version 0.2.0 of configs/metadata.json is missing from its changelog",
    ),
    "no changelog": (
        lambda f: _edit_metadata(f, lambda meta: meta.pop("changelog")),
        "configs/metadata.json has no 'changelog'",
    ),
    "schema violation": (
        lambda f: _edit_metadata(f, lambda meta: meta.update(authors=["a list"])),
        "configs/metadata.json fails the schema meta_schema_20240725.json at authors: ['a list'] is not of type",
    ),
    "unknown schema": (
        lambda f: _edit_metadata(f, lambda meta: meta.update(schema="https://example.org/meta_schema_2099.json")),
        "configs/metadata.json names the schema 'https://example.org/meta_schema_2099.json', not meta_schema_20240725",
    ),
    "file above 25 MiB": (_oversized_file, "models/model.pt is 26.0 MiB, above the zoo's 25 MiB per file"),
    "large file without URL": (
        lambda f: _large_files(f, {"path": "models/model_extra.pt"}),
        "large_files.yml: entry 0 needs a 'path' and a 'url'",
    ),
    "unknown hash type": (
        lambda f: _large_files(f, {"path": "models/model_extra.pt", "url": "https://x", "hash_type": "crc32"}),
        "large_files.yml: hash_type 'crc32' of models/model_extra.pt is not one of",
    ),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_each_broken_rule_is_reported(breakage, passing_bundle, tmp_path: Path, offline):
    folder = tmp_path / passing_bundle.name
    shutil.copytree(passing_bundle, folder)
    break_rule, expected = BREAKAGES[breakage]
    break_rule(folder)
    problems = check_model_zoo_rules(folder)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_a_weights_entry_in_large_files_stands_for_the_file(passing_bundle, tmp_path: Path, offline):
    folder = tmp_path / passing_bundle.name
    shutil.copytree(passing_bundle, folder)
    (folder / "models" / "model.pt").unlink()
    _large_files(folder, {"path": "models/model.pt", "url": "https://example.org/model.pt", "hash_type": "SHA256"})
    assert check_model_zoo_rules(folder) == []


def test_metadata_declares_the_monai_label_version_that_serves_the_bundles():
    pinned = re.search(r'"monailabel==([0-9.]+)"', (REPO / "pyproject.toml").read_text()).group(1)
    for bundle in WEIGHTS:
        meta = json.loads((REPO / "bundles" / bundle / "configs" / "metadata.json").read_text())
        assert meta["supported_apps"] == {"monai-label": pinned}, bundle
