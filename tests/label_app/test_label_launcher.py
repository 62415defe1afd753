"""``brainsynth label`` under signals: the launcher becomes the server, so SIGTERM stops it and SIGKILL leaves no
server, nor any of its inference workers, behind, even mid-request (Linux: a worker dies with the server,
``PR_SET_PDEATHSIG``); the work folder such a kill leaves is removed when the next server starts.

Each signal gets its own launcher; both are started at once (:func:`launchers`): a start is mostly one process
importing at a time, so the two overlap on two cores."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support import (
    TINY_CONFIGS,
    free_port,
    get_info,
    label_server_env,
    require_label_python,
    untrained_bundle,
    wait_for_server,
)
from test_label_server import post_infer, wait_for_queue

from common.label_app.pool import WORK_DIR_PREFIX, remove_stale_work_dirs

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; the workers' tie is Linux's")


def descendants(pid: int) -> set[int]:
    """The processes under ``pid`` (from ``/proc/<pid>/task/*/children``)."""
    children = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children |= {int(child) for child in (task / "children").read_text().split()}
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return children.union(*(descendants(child) for child in children))


def spawned_workers(pid: int) -> set[int]:
    """The processes under ``pid`` started by ``multiprocessing``'s spawn (the inference workers)."""
    found = set()
    for child in descendants(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.add(child)
        except FileNotFoundError:
            continue
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def post_infer_until_killed(url: str, params: dict) -> None:
    """A cDPM request whose server is killed while it runs."""
    try:
        post_infer(url, "cdpm_brain_mri", {}, params)
    except OSError:  # the connection is reset
        return


def wait_until(condition, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


SIGNALS = [signal.SIGTERM, signal.SIGKILL]


@pytest.fixture(scope="module")
def launchers(tmp_path_factory) -> dict[signal.Signals, tuple[subprocess.Popen, str, Path]]:
    """For each of :data:`SIGNALS`, ``brainsynth label`` serving cDPM's tiny untrained model, all started at once:
    the launcher process, its URL and its folder (``tmp/`` its ``TMPDIR``, ``server.log``)."""
    python = require_label_python()
    started = {}
    try:
        for signal_number in SIGNALS:
            folder = tmp_path_factory.mktemp(signal_number.name)
            bundle = untrained_bundle("cdpm_brain_mri", folder / "bundles")
            port = free_port()
            command = [str(python), "-m", "common.cli", "label", "--studies", str(folder / "studies")]
            command += ["--app_dir", str(folder / "app"), "--bundles", str(bundle)]
            command += ["--configs", ",".join(TINY_CONFIGS), "--port", str(port)]
            (folder / "tmp").mkdir()
            env = label_server_env(folder / "tmp")
            with (folder / "server.log").open("w") as log:
                launcher = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder)
            started[signal_number] = (launcher, f"http://127.0.0.1:{port}", folder)
        yield started
    finally:
        for launcher, _, _ in started.values():
            if launcher.poll() is None:
                launcher.kill()
                launcher.wait()


@pytest.mark.parametrize("signal_number", SIGNALS, ids=[signal_number.name for signal_number in SIGNALS])
def test_the_launcher_is_the_server_and_leaves_nothing_running(launchers, signal_number):
    launcher, url, folder = launchers[signal_number]
    try:
        assert wait_for_server(url, launcher, folder / "server.log")["queue"]["workers"] == 1
        wait_for_queue(url, lambda queue: queue["ready"] == 1, timeout=120)
        assert len(spawned_workers(launcher.pid)) == 1
        workers = descendants(launcher.pid)  # the worker and multiprocessing's resource tracker
        if signal_number == signal.SIGKILL:  # mid-request: the busy worker reads nothing from the server, and only
            # Linux's parent-death signal stops it before its job ends (minutes later)
            params = {"sampler": "ddpm", "num_inference_steps": 1000}  # minutes of work
            threading.Thread(target=post_infer_until_killed, args=(url, params), daemon=True).start()
            wait_for_queue(url, lambda queue: queue["running"] == 1, timeout=30)

        launcher.send_signal(signal_number)
        assert launcher.wait(timeout=60) == -signal_number  # uvicorn shuts down, then re-raises SIGTERM
        if signal_number == signal.SIGTERM:
            assert "Application shutdown complete" in (folder / "server.log").read_text()
        wait_until(lambda: not any(alive(pid) for pid in workers), 15, f"workers {workers} outlived the server")
        with pytest.raises(urllib.error.URLError):
            get_info(url, timeout=2)
        left = sorted((folder / "tmp").glob(f"{WORK_DIR_PREFIX}{launcher.pid}_*"))
        assert len(left) == (1 if signal_number == signal.SIGKILL else 0)
        assert sorted(remove_stale_work_dirs(folder / "tmp")) == left and not any(path.exists() for path in left)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
