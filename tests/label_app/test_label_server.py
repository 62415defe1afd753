"""The MONAI Label app served by the real ``monailabel`` server on 127.0.0.1, called through its REST API.

MONAI Label needs torch 2.14.1 + torchvision, so it lives in its own virtual environment (``make install-label``,
``.venv-label``; ``BRAINSYNTH_LABEL_PYTHON`` names another interpreter). The server runs there; these tests are
its HTTP clients. Without that environment the tests are skipped, except under CI, where they fail. The server's
temporary folder (``TMPDIR``) is the test's own, so that what a request leaves there shows (:func:`leftovers`).

The bundles are served on their tiny CPU networks (``tiny_cpu.json``), with Med-DDPM and cDPM on 16³ volumes
(:data:`SMALLER`): a 50-step request then takes seconds, not the 18 s of Med-DDPM on 32³ with one torch thread per
worker, and nothing served depends on the volume's size.
"""

from __future__ import annotations

import http.client
import io
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import ConfigParser
from support import (
    REPO,
    TINY_CONFIGS,
    free_port,
    get_info,
    label_server_env,
    require_label_python,
    wait_for_server,
    write_untrained_weights,
)

from common.data import build_demo_cohort, load_datalist
from common.label_app import start_server_command, write_app_dir

UNCONDITIONAL = ["cdpm_brain_mri", "medical_diffusion_brain_mri", "diffusemorph_brain_mri"]
SERVED = ["med_ddpm_brain_mri", *UNCONDITIONAL]
#: The test server's worker processes and queue: a burst of WORKERS + QUEUE_SIZE requests fills it.
WORKERS, QUEUE_SIZE = 2, 6
#: Edge of the test subject's cube, Med-DDPM's grid in the server.
SIZE = 16
#: ``configs/label_test.json`` of each served bundle copy, merged after tiny_cpu.json (:data:`CONFIGS`): smaller
#: volumes where tiny_cpu.json's take longest to sample (cDPM keeps its 16 slices, and so its networks' depth).
SMALLER = {
    "med_ddpm_brain_mri": {"spatial_size": [SIZE, SIZE, SIZE]},
    "cdpm_brain_mri": {"spatial_size": [SIZE, SIZE, 16]},
}
CONFIGS = [*TINY_CONFIGS, "label_test.json"]


def infer_request(
    url: str, model: str, files: dict[str, Path], params: dict | str | None = None
) -> tuple[str, bytes, dict]:
    """``POST /infer/{model}?output=image`` with ``files`` as multipart fields: its path, body and headers.

    ``params`` is sent as JSON, or as given if a string.
    """
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    params = params if isinstance(params, str) else json.dumps(params or {})
    fields = [("params", "", "application/json", params.encode())]
    fields += [(key, path.name, "application/octet-stream", path.read_bytes()) for key, path in files.items()]
    for key, filename, content_type, data in fields:
        body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"'.encode())
        body.write(f'; filename="{filename}"'.encode() if filename else b"")
        body.write(f"\r\nContent-Type: {content_type}\r\n\r\n".encode() + data + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return f"/infer/{model}?output=image", body.getvalue(), headers


def post_infer(url: str, model: str, files: dict[str, Path], params: dict | str | None = None) -> tuple[int, bytes]:
    """``POST /infer/{model}?output=image`` (:func:`infer_request`); the status and body."""
    path, body, headers = infer_request(url, model, files, params)
    request = urllib.request.Request(f"{url}{path}", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def leftovers(server: dict) -> set[Path]:
    """What is in the server's temporary folder besides the files it made at start-up."""
    return set(server["tmp"].iterdir()) - server["startup_files"]


def wait_for_queue(url: str, condition, timeout: float) -> dict:
    """Poll ``GET /info/`` until ``condition(info["queue"])``; the queue then."""
    deadline = time.monotonic() + timeout
    while not condition(queue := get_info(url)["queue"]):
        assert time.monotonic() < deadline, f"queue still {queue} after {timeout} s"
        time.sleep(0.05)
    return queue


def as_nifti(data: bytes, path: Path) -> nib.Nifti1Image:
    path.write_bytes(data)
    return nib.load(path)


def served_bundle(name: str, root: Path, weights: bool = True, configs_of: str | None = None) -> Path:
    """A copy of bundle ``configs_of`` (default ``name``) as ``root / name``: its configs, with ``label_test.json``
    (:data:`SMALLER`), and untrained weights for :data:`CONFIGS` unless not ``weights``."""
    folder = root / name
    source = configs_of or name
    shutil.copytree(REPO / "bundles" / source / "configs", folder / "configs")
    (folder / "configs" / "label_test.json").write_text(json.dumps(SMALLER.get(source, {})))
    if weights:
        write_untrained_weights(folder, CONFIGS)
    return folder


@pytest.fixture(scope="module")
def subject(tmp_path_factory) -> dict[str, Path]:
    """One synthetic 16³ subject with a tumour: ``{"image": T1ce, "label": 0/1/2 mask}``, every other voxel of a 32³
    demo subject (the MNI152 template at 32³, which the demo cohort is made from, is often loaded already)."""
    cohort = build_demo_cohort(tmp_path_factory.mktemp("cohort"), num_subjects=1, size=32, seed=0, tumour_fraction=1)
    item = load_datalist(cohort / "datalist.json", "training")[0]
    folder = tmp_path_factory.mktemp("subject")
    subject = {}
    for key in ("image", "label"):
        volume = nib.load(item[key])
        data = np.asanyarray(volume.dataobj)[:: 32 // SIZE, :: 32 // SIZE, :: 32 // SIZE]
        subject[key] = folder / Path(item[key]).name
        nib.save(nib.Nifti1Image(data, volume.affine @ np.diag([32 // SIZE] * 3 + [1])), subject[key])
    assert set(np.unique(nib.load(subject["label"]).get_fdata())) == {0, 1, 2}
    return subject


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """``monailabel start_server`` with the app and the four bundles' tiny untrained models, started, not yet
    answering (see :func:`server`); stopped at the end of the module."""
    python = require_label_python()
    root = tmp_path_factory.mktemp("label")
    studies, bundles = root / "studies", [served_bundle(name, root / "bundles") for name in SERVED]
    bundles.append(served_bundle("cdpm_without_weights", root / "bundles", weights=False, configs_of="cdpm_brain_mri"))
    studies.mkdir()
    (root / "tmp").mkdir()
    port = free_port()
    app = write_app_dir(root / "app")
    command = start_server_command(
        app, studies, bundles, CONFIGS, port=port, python=python, sampler="ddim", num_inference_steps=5,
        workers=WORKERS, queue_size=QUEUE_SIZE,
    )  # fmt: skip
    log = (root / "server.log").open("w")
    env = label_server_env(root / "tmp")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    try:
        yield {"process": process, "url": f"http://127.0.0.1:{port}", "root": root}
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def server(launched, subject) -> dict:
    """The server of :func:`launched` once it answers and its workers are ready (``subject`` is made meanwhile):
    its URL, first ``GET /info/``, log, bundle copies and temporary folder with the files it made at start-up."""
    url, root = launched["url"], launched["root"]
    info = wait_for_server(url, launched["process"], root / "server.log")
    wait_for_queue(url, lambda queue: queue["ready"] == WORKERS, timeout=120)
    # what the server itself keeps there while it runs: MONAI Label's logging config, torch's (empty) cache folder
    startup_files = set((root / "tmp").iterdir())
    return {
        "url": url,
        "info": info,
        "log": root / "server.log",
        "bundles": root / "bundles",
        "tmp": root / "tmp",
        "startup_files": startup_files,
    }


def test_info_lists_one_task_per_bundle_with_its_options(server):
    models = server["info"]["models"]
    assert sorted(models) == sorted([*SERVED, "cdpm_without_weights"])
    assert {key: server["info"]["queue"][key] for key in ("workers", "queue_size")} == {"workers": 2, "queue_size": 6}
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
    assert result.shape == mask.shape == (SIZE, SIZE, SIZE)
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
    parser.read_config([str(server["bundles"] / bundle / "configs" / name) for name in CONFIGS])
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
        ({"num_inference_steps": -1}, "num_inference_steps must be from 1 to 250"),
        ({"num_inference_steps": 251}, "num_inference_steps must be from 1 to 250"),
        ({"num_inference_steps": 100000}, "num_inference_steps must be from 1 to 250"),
        ({"num_inference_steps": 2.5}, "num_inference_steps must be a whole number"),
        ({"num_inference_steps": "5"}, "num_inference_steps must be a whole number"),
        ({"sampler": "euler"}, "unknown sampler 'euler'"),
    ],
)
def test_impossible_sampling_requests_are_refused(server, subject, params, reason):
    files = {"file": subject["image"], "label": subject["label"]}
    status, body = post_infer(server["url"], "med_ddpm_brain_mri", files, params)
    assert status == 400 and reason in json.loads(body)["detail"]


def bad_label(kind: str, subject: dict[str, Path], folder: Path) -> Path:
    """The subject's label spoilt as ``kind`` says."""
    mask = nib.load(subject["label"])
    data = np.asanyarray(mask.dataobj).astype(np.uint8)
    if kind == "truncated":
        path = folder / "truncated.nii.gz"
        path.write_bytes(subject["label"].read_bytes()[:-200])
        return path
    if kind == "text":
        path = folder / "label.txt"
        path.write_text("0 1 2\n")
        return path
    if kind == "value 7":
        data[0, 0, 0] = 7
        image = nib.Nifti1Image(data, mask.affine)
    elif kind == "4D":
        image = nib.Nifti1Image(np.stack([data, data], axis=-1), mask.affine)
    elif kind == "8³ grid":
        image = nib.Nifti1Image(data[::2, ::2, ::2], mask.affine @ np.diag([2, 2, 2, 1]))
    path = folder / f"{kind.replace(' ', '_')}.nii.gz"
    nib.save(image, path)
    return path


@pytest.mark.parametrize(
    "model, label, params, status, reason",
    [
        ("med_ddpm_brain_mri", "value 7", {}, 400, "label: values must be whole numbers from 0 to 2; found [7]"),
        ("med_ddpm_brain_mri", "4D", {}, 400, "label: expected a 3D volume, got shape (16, 16, 16, 2)"),
        ("med_ddpm_brain_mri", "truncated", {}, 400, "label: not a readable NIfTI volume"),
        ("med_ddpm_brain_mri", "text", {}, 400, "send the label volume as NIfTI"),
        ("med_ddpm_brain_mri", "8³ grid", {}, 400, "label: its grid 8x8x8 is not the model's 16x16x16"),
        ("med_ddpm_brain_mri", None, {"tumour_scale": -1.5}, 400, "tumour_scale must be a number above 0"),
        ("med_ddpm_brain_mri", None, {"tumour_shift": [1, 2]}, 400, "tumour_shift must be 3 whole numbers"),
        ("med_ddpm_brain_mri", None, {"label": "/etc/hostname"}, 400, "never named by a path on the server"),
        ("cdpm_brain_mri", None, {"seed": "one"}, 400, "seed must be null or a whole number"),
        ("cdpm_brain_mri", None, {"seed": 1.5}, 400, "seed must be null or a whole number"),
        ("cdpm_brain_mri", None, {"tumour_scale": 2}, 400, "unknown parameter(s) ['tumour_scale']"),
        ("cdpm_brain_mri", None, {"image": str(REPO / "README.md")}, 400, "never named by a path on the server"),
        ("cdpm_brain_mri", None, "[1, 2]", 400, "params must be a JSON object of the task's options, got list"),
        ("cdpm_brain_mri", None, '"seed"', 400, "params must be a JSON object of the task's options, got str"),
        ("cdpm_brain_mri", None, "{seed: 1", 400, "params is not valid JSON"),
        ("no_such_model", None, {}, 404, "unknown model 'no_such_model'; served: ["),
    ],
)
def test_bad_requests_are_refused_with_the_reason_and_leave_nothing(
    server, subject, tmp_path: Path, model, label, params, status, reason
):
    files = {
        "file": subject["image"],
        "label": subject["label"] if label is None else bad_label(label, subject, tmp_path),
    }
    got, body = post_infer(server["url"], model, files, params)
    assert (got, reason in json.loads(body)["detail"]) == (status, True), body[:1000]
    assert not leftovers(server), "the request left files in the server's temporary folder"


def test_a_server_path_in_params_tells_nothing_about_the_file(server, subject):
    files = {"file": subject["image"], "label": subject["label"]}
    answers = {post_infer(server["url"], "med_ddpm_brain_mri", files, {"label": path}) for path in
               [str(subject["label"]), "/no/such/file.nii.gz", "/etc/hostname"]}  # fmt: skip
    assert len(answers) == 1 and next(iter(answers))[0] == 400


def test_nothing_is_left_in_the_temporary_folder_after_failures_and_successes(server, subject):
    files = {"file": subject["image"], "label": subject["label"]}
    assert post_infer(server["url"], "cdpm_without_weights", files)[0] == 500
    assert post_infer(server["url"], "med_ddpm_brain_mri", files, {"seed": 1, "num_inference_steps": 2})[0] == 200
    assert post_infer(server["url"], "med_ddpm_brain_mri", {"file": subject["image"]})[0] == 400
    assert not leftovers(server)


def test_a_label_in_another_orientation_gets_its_own_grid_back(server, subject, tmp_path: Path):
    mask = nib.load(subject["label"])
    lps = mask.as_reoriented([[0, -1], [1, -1], [2, 1]])  # RAS -> LPS: flip the first two axes
    nib.save(lps, tmp_path / "lps.nii.gz")
    params = {"seed": 5, "num_inference_steps": 2}
    results = {}
    for name, label in [("ras", subject["label"]), ("lps", tmp_path / "lps.nii.gz")]:
        status, body = post_infer(
            server["url"], "med_ddpm_brain_mri", {"file": subject["image"], "label": label}, params
        )
        assert status == 200, body[:2000]
        results[name] = as_nifti(body, tmp_path / f"result_{name}.nii.gz")
    assert results["lps"].shape == lps.shape
    np.testing.assert_allclose(results["lps"].affine, lps.affine, atol=1e-5)
    np.testing.assert_array_equal(results["lps"].get_fdata(), results["ras"].get_fdata()[::-1, ::-1, :])


def test_a_burst_is_served_in_parallel_bounded_and_reproducibly(server, subject, tmp_path: Path):
    url, files = server["url"], {"file": subject["image"], "label": subject["label"]}
    seeds = [seed % 4 for seed in range(WORKERS + QUEUE_SIZE)]
    params = {seed: {"seed": seed, "num_inference_steps": 5} for seed in seeds}  # each ~1 s: the 8 are all queued
    sequential = {seed: post_infer(url, "med_ddpm_brain_mri", files, params[seed]) for seed in set(seeds)}
    assert {status for status, _ in sequential.values()} == {200}

    probes, finished, stop = [], [], threading.Event()

    def probe_info() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            get_info(url, timeout=5)
            probes.append(time.perf_counter() - start)
            time.sleep(0.1)

    def request(seed: int) -> None:
        status, body = post_infer(url, "med_ddpm_brain_mri", files, params[seed])
        finished.append((time.perf_counter() - start, seed, status, body))

    start = time.perf_counter()
    threads = [threading.Thread(target=request, args=(seed,)) for seed in seeds] + [threading.Thread(target=probe_info)]
    for thread in threads:
        thread.start()
    try:
        wait_for_queue(url, lambda queue: queue["running"] + queue["waiting"] == len(seeds), timeout=30)
        status, body = post_infer(url, "med_ddpm_brain_mri", files, {"seed": 0})
        assert status == 503 and "the server is busy" in json.loads(body)["detail"]
    finally:
        for thread in threads[:-1]:
            thread.join()
        stop.set()
        threads[-1].join()
    times = sorted(elapsed for elapsed, *_ in finished)
    assert [status for *_, status, _ in finished] == [200] * len(seeds)
    assert times[0] < 0.5 * times[-1], f"responses at {times}: the first should come well before the last"
    assert max(probes) < 1.0, f"GET /info/ took {max(probes):.2f} s during the burst"
    for index, (_, seed, _, body) in enumerate(finished):
        volume = as_nifti(body, tmp_path / f"burst_{index}.nii.gz").get_fdata()
        reference = as_nifti(sequential[seed][1], tmp_path / f"sequential_{index}.nii.gz").get_fdata()
        np.testing.assert_array_equal(volume, reference)


def test_a_request_is_cancelled_when_its_client_disconnects(server, subject):
    url = server["url"]
    path, body, headers = infer_request(
        url, "med_ddpm_brain_mri", {"file": subject["image"], "label": subject["label"]},
        {"sampler": "ddpm", "num_inference_steps": 250},
    )  # fmt: skip
    connection = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=60)
    connection.request("POST", path, body=body, headers=headers)
    wait_for_queue(url, lambda queue: queue["running"] == 1, timeout=30)
    time.sleep(1)
    connection.close()
    start = time.monotonic()
    wait_for_queue(url, lambda queue: queue["running"] + queue["waiting"] == 0, timeout=10)
    assert time.monotonic() - start < 5, "the worker should stop within a denoising step or two, not after 250"
    deadline = time.monotonic() + 5
    while "request cancelled, its client went away" not in server["log"].read_text():
        assert time.monotonic() < deadline, "the cancellation is not in the server's log"
        time.sleep(0.1)
    assert not leftovers(server)
