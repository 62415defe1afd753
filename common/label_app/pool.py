"""The server's inference workers: processes that run :class:`~common.label_app.worker.SynthesisJob` s off the event
loop, behind a bounded queue.

Each worker is a process of its own (spawned, so it shares no state with the server) that keeps the networks it has
loaded (:func:`common.label_app.worker.loaded_networks`) and runs one job at a time: torch's global random state,
which seeded sampling uses, is then never shared by two requests, so a seed gives the same volume whatever else runs.
Nothing here imports MONAI Label.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from common.label_app.worker import BundleRunError, RequestCancelled, SynthesisJob, serve

#: Prefix of the requests' work folders in the temporary folder, followed by the server's process id.
WORK_DIR_PREFIX = "brainsynth_label_"
#: Seconds between two checks that a waiting request's client is still connected.
DISCONNECT_POLL_S = 0.25


class QueueFull(RuntimeError):
    """Every worker is busy and the queue is full: the request is refused (HTTP 503)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_work_dirs(folder: str | Path | None = None) -> list[Path]:
    """Remove the work folders left in ``folder`` (default the temporary folder) by servers that are gone (kill -9).

    Returns:
        the folders removed.
    """
    removed = []
    for path in Path(folder or tempfile.gettempdir()).glob(f"{WORK_DIR_PREFIX}*_*"):
        pid = path.name[len(WORK_DIR_PREFIX) :].split("_", 1)[0]
        if path.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def new_work_dir() -> str:
    """A new work folder for one request in the temporary folder, named after this process (see
    :func:`remove_stale_work_dirs`); the caller removes it."""
    return tempfile.mkdtemp(prefix=f"{WORK_DIR_PREFIX}{os.getpid()}_")


@dataclass
class _Entry:
    job: SynthesisJob
    future: asyncio.Future
    worker: _Worker | None = None


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    connection: Connection
    cancel: Any = field(repr=False)  # multiprocessing Events: set by the server to cancel the running job,
    ready: Any = field(repr=False)  # and by the worker once it has loaded the bundles to preload

    async def call(self, job: SynthesisJob) -> tuple[Any, BaseException | None]:
        """Send ``job`` and wait, without blocking the event loop, for the reply.

        Raises:
            EOFError / OSError: the process died.
        """
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        descriptor = self.connection.fileno()
        loop.add_reader(descriptor, lambda: readable.done() or readable.set_result(None))
        try:
            self.connection.send(job)
            await readable
        finally:
            loop.remove_reader(descriptor)
        return self.connection.recv()


class WorkerPool:
    """``workers`` worker processes fed by a queue of at most ``queue_size`` waiting requests.

    :meth:`start` it from the server's event loop; :meth:`run` a job from a request handler. A request that finds
    ``workers`` jobs running and ``queue_size`` waiting is refused with :class:`QueueFull`.

    Args:
        workers: worker processes, each running one job at a time with its own copy of the networks.
        queue_size: requests that may wait for a worker.
        num_threads: torch threads of each worker; default the CPUs this process may use divided among the
            workers, or torch's own default where ``OMP_NUM_THREADS`` is set.
        preload: ``(bundle folder, config files)`` whose networks and sampler each worker loads when it starts
            (:func:`common.label_app.worker.preload_bundle`).
    """

    def __init__(
        self,
        workers: int = 1,
        queue_size: int = 8,
        num_threads: int | None = None,
        preload: Sequence[tuple[str, Sequence[str]]] = (),
    ) -> None:
        if workers < 1 or queue_size < 0:
            raise ValueError(f"need at least 1 worker and a queue size of 0 or more, got {workers} and {queue_size}")
        self.workers, self.queue_size = workers, queue_size
        if num_threads is None and "OMP_NUM_THREADS" not in os.environ:
            num_threads = max(1, len(os.sched_getaffinity(0)) // workers)
        self.num_threads = num_threads
        self.preload = [(str(folder), tuple(configs)) for folder, configs in preload]
        self._context = multiprocessing.get_context("spawn")
        self._queue: asyncio.Queue[_Entry] = asyncio.Queue()
        self._pending = 0
        self._running: list[_Entry | None] = [None] * workers
        self._workers: list[_Worker | None] = [None] * workers
        self._slots: list[asyncio.Task] = []

    def _spawn(self) -> _Worker:
        ours, theirs = self._context.Pipe()
        cancel, ready = self._context.Event(), self._context.Event()
        process = self._context.Process(
            target=serve,
            args=(theirs, cancel, ready, os.getpid(), self.num_threads, self.preload),
            name="brainsynth-worker",
            daemon=True,
        )
        process.start()
        theirs.close()
        return _Worker(process, ours, cancel, ready)

    def start(self) -> None:
        """Start the workers (from the event loop's thread: Linux ties a worker's life to the thread that
        started it) and remove the work folders of servers killed before."""
        remove_stale_work_dirs()
        self._slots = [asyncio.get_running_loop().create_task(self._serve(index)) for index in range(self.workers)]

    def stats(self) -> dict[str, int]:
        """``workers``, those ``ready`` (started, bundles preloaded), ``queue_size``, and the requests ``running``
        and ``waiting`` now."""
        running = sum(entry is not None for entry in self._running)
        return {
            "workers": self.workers,
            "ready": sum(worker is not None and worker.ready.is_set() for worker in self._workers),
            "queue_size": self.queue_size,
            "running": running,
            "waiting": self._pending - running,
        }

    async def _serve(self, index: int) -> None:
        worker = self._workers[index] = self._spawn()
        while True:
            entry = await self._queue.get()
            if entry.future.done():  # cancelled while it waited
                continue
            worker.cancel.clear()  # before the entry is seen running: a cancellation from now on is kept
            entry.worker, self._running[index] = worker, entry
            try:
                result, error = await worker.call(entry.job)
            except (EOFError, OSError):  # the process died (killed, out of memory): answer, and start another
                worker.process.join(timeout=5)
                result, error = None, BundleRunError(f"the worker process died (exit code {worker.process.exitcode})")
                worker = self._workers[index] = self._spawn()
            finally:
                entry.worker, self._running[index] = None, None
            if not entry.future.done():
                if error is None:
                    entry.future.set_result(result)
                else:
                    entry.future.set_exception(error)

    def _cancel(self, entry: _Entry) -> None:
        if entry.worker is not None:  # running: the worker stops at its next network call and replies
            entry.worker.cancel.set()
        elif not entry.future.done():  # waiting: it never runs
            entry.future.set_exception(RequestCancelled("cancelled: the client went away"))

    async def run(self, job: SynthesisJob, disconnected: Callable[[], Awaitable[bool]]) -> tuple[str, dict[str, Any]]:
        """Queue ``job`` and return what :func:`~common.label_app.worker.synthesise` returns once a worker ran it.

        Args:
            job: the request's work.
            disconnected: whether the client went away (e.g. ``starlette.requests.Request.is_disconnected``), polled
                while the job waits or runs; then the job is cancelled and this waits until it has stopped, so that
                nothing writes to its work folder any more.

        Raises:
            QueueFull: ``workers`` jobs are running and ``queue_size`` waiting.
            BundleRunError: the bundle failed, or the worker process died.
            RequestCancelled: the client went away.
        """
        if self._pending >= self.workers + self.queue_size:
            stats = self.stats()
            raise QueueFull(
                f"the server is busy: {stats['running']} requests running and {stats['waiting']} waiting "
                f"(workers {self.workers}, queue_size {self.queue_size}); retry later"
            )
        entry = _Entry(job, asyncio.get_running_loop().create_future())
        self._pending += 1
        try:
            self._queue.put_nowait(entry)
            while not entry.future.done():
                await asyncio.wait({entry.future}, timeout=DISCONNECT_POLL_S)
                if not entry.future.done() and await disconnected():
                    self._cancel(entry)
                    await asyncio.wait({entry.future})
            return entry.future.result()
        finally:
            self._pending -= 1
