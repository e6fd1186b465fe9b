"""Run plans: a thread pool of object transfers, a progress display, a manifest kept current.

Workers only download and rename; the calling thread owns the manifests and the progress
display. Large objects are queued as ranged parts (``parts``), interleaved with other objects
in the same pool; the task that settles an object's last part verifies and renames it. A
``KeyboardInterrupt`` (or any exception) raised in the calling thread, for instance
from the progress callback, cancels the workers at their next chunk, waits for them, saves the
manifests and re-raises: final names are only ever complete, verified files, and partials stay
for the next run to resume. So does an exception that is no transfer failure (a bug): it fails
the sync loudly instead of becoming one more failed file.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from eyeful_tools.errors import DownloadError
from eyeful_tools.s3sync.getters import Getter, make_getter
from eyeful_tools.s3sync.manifest import ManifestEntry
from eyeful_tools.s3sync.parts import PartedObject, wants_parts
from eyeful_tools.s3sync.plan import Plan, PlannedFile, s3_url
from eyeful_tools.s3sync.transfer import (
    CHECKED_BY_RANGES,
    ByteCounter,
    Fetched,
    TransferCancelled,
    TransferFailed,
    TransferOptions,
    check_file,
    fetch_object,
    partial_path,
    sidecar_path,
)

log = logging.getLogger(__name__)


class SyncProgress(Protocol):
    """What the sync reports while it runs (called from the calling thread only)."""

    def start(self, files: int, total_bytes: int) -> None: ...

    def update(self, files_done: int, bytes_done: int) -> None: ...

    def finish(self) -> None: ...


class NullProgress:
    def start(self, files: int, total_bytes: int) -> None:
        pass

    def update(self, files_done: int, bytes_done: int) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass
class SyncReport:
    files_fetched: int = 0
    bytes_transferred: int = 0  # bytes received over the network, retries included
    files_present: int = 0  # unchanged, recognised from the manifest (no request)
    files_verified: int = 0  # already on disk and matching the ETag (hashed, no transfer)
    files_skipped: int = 0  # listed but not selected
    failures: list[tuple[str, str]] = field(default_factory=list)  # (s3 url, reason)
    #: files no checksum or MD5 could vouch for (SSE-KMS/SSE-C ETags are not MD5s), checked by
    #: their size and ranges read again from S3 instead
    checked_by_ranges: list[str] = field(default_factory=list)  # s3 urls
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class _Outcome:
    entry: ManifestEntry
    transferred: bool
    checked_by: str = "etag"


def _entry(item: PlannedFile, mtime_ns: int) -> ManifestEntry:
    obj = item.obj
    return ManifestEntry(obj.key, obj.size, obj.etag, obj.last_modified, mtime_ns)


def _work(
    getter: Getter,
    plan: Plan,
    item: PlannedFile,
    options: TransferOptions,
    counter: ByteCounter,
    cancel: threading.Event,
) -> _Outcome:
    obj = item.obj
    if item.reason == "verify":
        stat = item.path.stat()
        bucket = plan.target.bucket
        if stat.st_size == obj.size and check_file(
            getter, bucket, obj.key, item.path, obj.etag, obj.size
        ):
            return _Outcome(_entry(item, stat.st_mtime_ns), transferred=False)
    fetched = fetch_object(
        getter,
        plan.target.bucket,
        obj.key,
        obj.size,
        obj.etag,
        item.path,
        options,
        counter,
        cancel,
        stale=item.stale,
    )
    return _Outcome(_entry(item, fetched.mtime_ns), True, fetched.checked_by)


def execute(
    client: Any,
    plans: Iterable[Plan],
    jobs: int = 16,
    options: TransferOptions | None = None,
    progress: SyncProgress | None = None,
    manifest_every_s: float = 5.0,
) -> SyncReport:
    """Fetch every planned file of every plan with ``jobs`` threads. A file that fails (S3
    refuses it, the network keeps failing, a local write fails) is collected in the report;
    interrupts and unexpected exceptions (bugs) are re-raised after the workers stop."""
    plans = list(plans)
    options = options or TransferOptions()
    progress = progress or NullProgress()
    batch = _Batch(plans, _planned_report(plans))
    items = [(plan, item) for plan in plans for item in plan.fetch]
    _make_folders({item.path.parent for _, item in items})
    counter = ByteCounter()
    cancel = threading.Event()
    started = time.monotonic()
    progress.start(len(items), sum(p.fetch_bytes for p in plans))
    getter = make_getter(client, connections=jobs + 4)
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="s3sync")
    total_bytes = sum(p.fetch_bytes for p in plans)
    for plan, item in items:
        obj = item.obj
        resuming_parts = sidecar_path(partial_path(item.path, obj.etag)).exists()
        if wants_parts(
            obj.size,
            item.reason,
            options,
            others_per_connection_bytes=(total_bytes - obj.size) / max(1, jobs),
            resuming_parts=resuming_parts,
        ):  # parts queued now; no task waits
            bucket = plan.target.bucket
            parted = PartedObject(
                getter, bucket, obj.key, obj.size, obj.etag, item.path, options, counter, cancel,
                submit=pool.submit,
            )  # fmt: skip
            future: Future[Any] = parted.start(item.stale)
        else:
            future = pool.submit(_work, getter, plan, item, options, counter, cancel)
        batch.add(future, plan, item)
    try:
        batch.wait(progress, counter, manifest_every_s, last_save=started)
    except BaseException:
        cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        batch.settle_stragglers()
        raise
    finally:
        pool.shutdown(wait=True)
        for plan in plans:
            plan.manifest.save()
        batch.report.bytes_transferred = counter.value
        batch.report.elapsed_s = time.monotonic() - started
        progress.finish()
    return batch.report


def _planned_report(plans: list[Plan]) -> SyncReport:
    """A report that already counts what planning decided (present, skipped, refused), so the
    summary covers every listed file, not only the fetched ones."""
    report = SyncReport()
    for plan in plans:
        report.files_present += len(plan.present)
        report.files_skipped += len(plan.skipped)
        report.failures.extend((s3_url(plan.target.bucket, k), r) for k, r in plan.refused)
    return report


def _make_folders(folders: set[Path]) -> None:
    """Create every destination folder up front, so a folder that cannot be made fails the sync
    once with one line instead of failing each of its files in the workers."""
    for folder in sorted(folders):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DownloadError(folder, f"cannot create folder: {error.strerror}") from error


@dataclass
class _Batch:
    """The transfers of one :func:`execute` call, settled in the calling thread only, which
    alone owns the manifests and the report (workers just download and rename)."""

    plans: list[Plan]
    report: SyncReport
    futures: dict[Future, tuple[Plan, PlannedFile]] = field(default_factory=dict)
    settled: set[Future] = field(default_factory=set)
    #: futures in completion order, O(1) per completion
    finished: queue.SimpleQueue[Future] = field(default_factory=queue.SimpleQueue)

    def add(self, future: Future, plan: Plan, item: PlannedFile) -> None:
        """Track a submitted transfer; it is queued for settling when it completes."""
        self.futures[future] = (plan, item)
        future.add_done_callback(self.finished.put)

    def wait(
        self,
        progress: SyncProgress,
        counter: ByteCounter,
        manifest_every_s: float,
        last_save: float,
    ) -> None:
        """Settle transfers as they complete, updating the progress display and saving the
        manifests every so often (``last_save``: monotonic time of the last save) so that a
        killed sync loses little."""
        save_every_s = manifest_every_s
        while len(self.settled) < len(self.futures):
            with contextlib.suppress(queue.Empty):
                future = self.finished.get(timeout=0.1)
                while True:
                    self.settled.add(future)
                    self.settle(future)
                    future = self.finished.get_nowait()
            progress.update(len(self.settled), counter.value)
            now = time.monotonic()
            if now - last_save > save_every_s:
                for plan in self.plans:
                    plan.manifest.save()
                # a 10^5-entry manifest takes a while to write: keep that under ~10% of the time
                save_every_s = max(manifest_every_s, 10 * (time.monotonic() - now))
                last_save = time.monotonic()

    def settle_stragglers(self) -> None:
        """After an interrupt and once the workers stopped: record the transfers that did
        complete, so the next run need not fetch them again."""
        for future in self.futures:
            if future not in self.settled and future.done() and not future.cancelled():
                self.settle(future)

    def settle(self, future: Future) -> None:
        """Record one completed transfer in its manifest and the report; a failed file becomes
        a report failure, anything else (a bug, an interrupt) propagates."""
        plan, item = self.futures[future]
        report = self.report
        url = s3_url(plan.target.bucket, item.obj.key)
        try:
            outcome = future.result()
            if isinstance(outcome, Fetched):  # an object fetched in parts
                outcome = _Outcome(_entry(item, outcome.mtime_ns), True, outcome.checked_by)
        except TransferCancelled:
            return
        except TransferFailed as error:
            report.failures.append((url, str(error)))
            plan.manifest.forget(item.obj.rel)
            return
        except OSError as error:
            report.failures.append((url, f"local file error: {error}"))
            return
        plan.manifest.record(item.obj.rel, outcome.entry)
        if outcome.checked_by == CHECKED_BY_RANGES:
            report.checked_by_ranges.append(url)
        if outcome.transferred:
            report.files_fetched += 1
        else:
            report.files_verified += 1
