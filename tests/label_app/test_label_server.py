"""The MONAI Label app served by the real ``monailabel`` server on 127.0.0.1, called through its REST API.

MONAI Label needs torch 2.14.1 + torchvision, so it lives in its own virtual environment (``make install-label``,
``.venv-label``; ``BRAINSYNTH_LABEL_PYTHON`` names another interpreter). The server runs there; these tests are
its HTTP clients. Without that environment the tests are skipped, except under CI, where they fail.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import ConfigParser

from common.bundle_runner import write_untrained_weights
from common.data import build_demo_cohort, load_datalist
from common.label_app import start_server_command, write_app_dir

REPO = Path(__file__).resolve().parents[2]
LABEL_PYTHON = Path(os.environ.get("BRAINSYNTH_LABEL_PYTHON", REPO / ".venv-label" / "bin" / "python"))
TINY_CONFIGS = ["inference.json", "tiny_cpu.json"]
UNCONDITIONAL = ["cdpm_brain_mri", "medical_diffusion_brain_mri", "diffusemorph_brain_mri"]
SERVED = ["med_ddpm_brain_mri", *UNCONDITIONAL]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def untrained_bundle(name: str, root: Path) -> Path:
    """A copy of bundle ``name``'s configs under ``root`` with what its tiny inference loads, untrained."""
    folder = root / name
    shutil.copytree(REPO / "bundles" / name / "configs", folder / "configs")
    write_untrained_weights(folder, TINY_CONFIGS)
    return folder


def post_infer(url: str, model: str, files: dict[str, Path], params: dict | None = None) -> tuple[int, bytes]:
    """``POST /infer/{model}?output=image`` with ``files`` as multipart fields; the status and body."""
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    fields = [("params", "", "application/json", json.dumps(params or {}).encode())]
    fields += [(key, path.name, "application/octet-stream", path.read_bytes()) for key, path in files.items()]
    for key, filename, content_type, data in fields:
        body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"'.encode())
        body.write(f'; filename="{filename}"'.encode() if filename else b"")
        body.write(f"\r\nContent-Type: {content_type}\r\n\r\n".encode() + data + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    request = urllib.request.Request(
        f"{url}/infer/{model}?output=image",
        data=body.getvalue(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def as_nifti(data: bytes, path: Path) -> nib.Nifti1Image:
    path.write_bytes(data)
    return nib.load(path)


@pytest.fixture(scope="module")
def subject(tmp_path_factory) -> dict[str, Path]:
    """One synthetic 32³ subject with a tumour: ``{"image": T1ce, "label": 0/1/2 mask}``."""
    cohort = build_demo_cohort(tmp_path_factory.mktemp("cohort"), num_subjects=1, size=32, seed=0, tumour_fraction=1)
    item = load_datalist(cohort / "datalist.json", "training")[0]
    return {"image": Path(item["image"]), "label": Path(item["label"])}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``monailabel start_server`` with the app and the four bundles' tiny untrained models; yields its URL."""
    if not LABEL_PYTHON.is_file():
        message = f"{LABEL_PYTHON}: no MONAI Label environment; run `make install-label`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("label")
    studies, bundles = root / "studies", [untrained_bundle(name, root / "bundles") for name in SERVED]
    without_weights = root / "bundles" / "cdpm_without_weights"
    shutil.copytree(REPO / "bundles" / "cdpm_brain_mri" / "configs", without_weights / "configs")
    bundles.append(without_weights)
    studies.mkdir()
    port = free_port()
    app = write_app_dir(root / "app")
    command = start_server_command(
        app, studies, bundles, TINY_CONFIGS, port=port, python=LABEL_PYTHON, sampler="ddim", num_inference_steps=5
    )
    log = (root / "server.log").open("w")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MONAI_LABEL_AUTO_UPDATE_SCORING": "false"}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"{url}/info/", timeout=5) as response:
                    info = json.loads(response.read())
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"monailabel server did not start:\n{(root / 'server.log').read_text()[-6000:]}")
                time.sleep(1)
        yield {"url": url, "info": info, "log": root / "server.log"}
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_info_lists_one_task_per_bundle_with_its_options(server):
    models = server["info"]["models"]
    assert sorted(models) == sorted([*SERVED, "cdpm_without_weights"])
    assert models["med_ddpm_brain_mri"]["config"] == {
        "seed": None,
        "sampler": "ddim",
        "num_inference_steps": 5,
        "tumour_scale": 1.0,
        "tumour_shift": [0, 0, 0],
        "channel": "t1ce",
    }
    for name in UNCONDITIONAL:
        assert "tumour_scale" not in models[name]["config"]
        assert models[name]["config"]["channel"] == "t1"


def test_med_ddpm_turns_the_drawn_label_into_an_mri(server, subject, tmp_path: Path):
    image, label = subject["image"], subject["label"]
    status, body = post_infer(server["url"], "med_ddpm_brain_mri", {"file": image, "label": label}, {"seed": 3})
    assert status == 200, body[:2000]
    result = as_nifti(body, tmp_path / "result.nii.gz")
    mask = nib.load(label)
    assert result.shape == mask.shape == (32, 32, 32)
    np.testing.assert_allclose(result.affine, mask.affine, atol=1e-5)
    values = result.get_fdata()
    assert values.min() >= 0 and values.max() <= 1 and values.std() > 0

    again = as_nifti(post_infer(server["url"], "med_ddpm_brain_mri", {"file": image, "label": label}, {"seed": 3})[1],
                     tmp_path / "again.nii.gz")  # fmt: skip
    np.testing.assert_array_equal(again.get_fdata(), values)
    other = post_infer(server["url"], "med_ddpm_brain_mri", {"file": image, "label": label}, {"seed": 4})[1]
    assert not np.array_equal(as_nifti(other, tmp_path / "other.nii.gz").get_fdata(), values)


def test_med_ddpm_without_a_label_is_a_clear_error(server, subject):
    status, body = post_infer(server["url"], "med_ddpm_brain_mri", {"file": subject["image"]})
    assert status == 400
    assert "label" in json.loads(body)["detail"]


@pytest.mark.parametrize("bundle", UNCONDITIONAL)
def test_unconditional_bundle_returns_a_new_volume(server, subject, bundle, tmp_path: Path):
    status, body = post_infer(server["url"], bundle, {"file": subject["image"]}, {"seed": 0})
    assert status == 200, body[:2000]
    result = as_nifti(body, tmp_path / "result.nii.gz")
    parser = ConfigParser()
    parser.read_config([str(REPO / "bundles" / bundle / "configs" / name) for name in TINY_CONFIGS])
    assert list(result.shape) == parser["spatial_size"]
    assert not np.allclose(result.affine, np.eye(4)), "a voxel-to-world affine with the bundle's geometry"
    values = result.get_fdata()
    assert values.min() >= 0 and values.max() <= 1 and values.std() > 0


def test_unknown_channel_is_a_clear_error(server, subject):
    status, body = post_infer(server["url"], "cdpm_brain_mri", {"file": subject["image"]}, {"channel": "flair"})
    assert status == 400 and "flair" in json.loads(body)["detail"]


def test_missing_weights_are_named(server, subject):
    status, body = post_infer(server["url"], "cdpm_without_weights", {"file": subject["image"]})
    assert status == 500
    detail = json.loads(body)["detail"]
    assert detail.startswith("cdpm_without_weights: FileNotFoundError") and "models/model.pt" in detail


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
@pytest.mark.parametrize("bundle", SERVED)
def test_fifty_step_samplers_of_every_bundle(server, subject, bundle, sampler, tmp_path: Path):
    files = {"file": subject["image"], **({"label": subject["label"]} if bundle == "med_ddpm_brain_mri" else {})}
    params = {"seed": 0, "sampler": sampler, "num_inference_steps": 50}
    status, body = post_infer(server["url"], bundle, files, params)
    assert status == 200, body[:2000]
    values = as_nifti(body, tmp_path / "result.nii.gz").get_fdata()
    assert values.min() >= 0 and values.max() <= 1 and values.std() > 0


@pytest.mark.parametrize(
    "params, reason",
    [
        ({"num_inference_steps": 0}, "num_inference_steps must be from 1 to 250"),
        ({"num_inference_steps": 251}, "num_inference_steps must be from 1 to 250"),
        ({"num_inference_steps": 2.5}, "num_inference_steps must be a whole number"),
        ({"num_inference_steps": "5"}, "num_inference_steps must be a whole number"),
        ({"sampler": "euler"}, "unknown sampler 'euler'"),
    ],
)
def test_impossible_sampling_requests_are_refused(server, subject, params, reason):
    files = {"file": subject["image"], "label": subject["label"]}
    status, body = post_infer(server["url"], "med_ddpm_brain_mri", files, params)
    assert status == 400 and reason in json.loads(body)["detail"]
