"""A spawn process pool for CPU-bound per-file work (image pyramids), fed in small chunks.

``spawn``, not ``fork``: a child forked from a parent that has used OpenCV can deadlock. Each
worker runs OpenCV single-threaded, since the pool already uses every core.

Workers never outlive the parent: on Linux the kernel kills them when it dies
(``PR_SET_PDEATHSIG``, so even SIGKILL and the OOM killer are covered), elsewhere a watchdog
thread notices the parent is gone. They ignore Ctrl-C (the parent gets it too, and stops them);
a parent that is interrupted or fails terminates its workers instead of waiting for them.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from typing import TypeVar

import cv2

T = TypeVar("T")
R = TypeVar("R")


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


_PR_SET_PDEATHSIG = 1
#: how often the portable watchdog checks that the parent is alive
_WATCHDOG_PERIOD_S = 1.0


def _die_with_parent(parent_pid: int) -> None:
    """Exit when ``parent_pid`` does: a kernel death signal on Linux, a polling thread
    elsewhere (or where prctl is unavailable)."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    if armed:
        return

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_WATCHDOG_PERIOD_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _worker_init(parent_pid: int) -> None:
    """Tie the worker's life to the parent's; ignore Ctrl-C (the parent handles it); one
    OpenCV thread per worker process (the pool already uses every core)."""
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)


def terminate(pool: ProcessPoolExecutor) -> None:
    """Stop the workers now (SIGTERM), without waiting for the chunks they are running."""
    stop = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if stop is not None:
        stop()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()


def run_jobs(
    function: Callable[[T], R],
    items: Sequence[T],
    *,
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    executor: Executor | None = None,
) -> list[R]:
    """Run ``function`` over ``items`` in a spawn process pool (inline for one job or item).

    Items travel in small chunks (:func:`chunk_size`); results come back in completion order.
    On the first exception, pending items are cancelled.
    """
    total = len(items)
    if progress:
        progress(0, total)
    jobs = default_jobs() if jobs is None else max(1, jobs)
    if executor is None and (jobs == 1 or total <= 1):
        results = []
        for done, item in enumerate(items, start=1):
            results.append(function(item))
            if progress:
                progress(done, total)
        return results
    if executor is not None:
        return _collect(executor, function, items, progress)
    pool = make_pool(min(jobs, total))
    try:
        return _collect(pool, function, items, progress)
    except BaseException:
        terminate(pool)  # an error or an interrupt: the rest of the work is not wanted
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def make_pool(jobs: int | None = None) -> ProcessPoolExecutor:
    """A spawn pool set up like :func:`run_jobs`' own (for callers that reuse one)."""
    return ProcessPoolExecutor(
        max_workers=default_jobs() if jobs is None else max(1, jobs),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(os.getpid(),),
    )


#: most items sent to a worker in one message; per-item messages cost ~0.3 ms of pickling and
#: pipe traffic each, a few percent of a small image's decode
MAX_CHUNK = 8


def chunk_size(total: int, workers: int) -> int:
    """Items per message: about four messages per worker (so a slow tail still balances), at
    most :data:`MAX_CHUNK`."""
    return max(1, min(MAX_CHUNK, total // max(1, 4 * workers)))


def _run_chunk(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    return [function(item) for item in items]


def _collect(
    pool: Executor,
    function: Callable[[T], R],
    items: Sequence[T],
    progress: Callable[[int, int], None] | None,
) -> list[R]:
    workers = getattr(pool, "_max_workers", None) or default_jobs()
    size = chunk_size(len(items), workers)
    chunks = [items[start : start + size] for start in range(0, len(items), size)]
    futures: list[Future[list[R]]] = [pool.submit(_run_chunk, function, c) for c in chunks]
    results: list[R] = []
    try:
        for future in as_completed(futures):
            results.extend(future.result())
            if progress:
                progress(len(results), len(items))
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    return results
