"""Large objects as parallel ranged parts: each part retried on its own, resumable per part.

One connection rarely fills a fast link, so large objects (see :func:`wants_parts`) are
fetched as ``ceil(size / part_bytes)`` ranged GETs (``If-Match`` the planned ETag) that run as
separate tasks in the sync's thread pool, side by side with other objects. No task waits for
another: the parts are queued when the object is, and the task that settles the last part
verifies the whole file and renames it (or fails the object, or, after a checksum mismatch,
waits out the backoff and starts it over). Which objects go in parts: :func:`wants_parts`.

On disk it is the single-stream partial, ``<name>.<etag8>.incomplete``, preallocated to the full
size and written with ``os.pwrite`` at each part's offset, plus a sidecar
``<name>.<etag8>.incomplete.parts`` (JSON: size, etag, part_bytes, done part indices) rewritten
atomically after each part. The sidecar is written before the partial grows, and removed only
after the partial (or after the partial verified), so a partial without a sidecar is always a
contiguous prefix, as the single-stream path leaves it. The target name appears only by
``os.replace`` of a partial whose size and (where the ETag allows) MD5 were verified.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import botocore.exceptions

from eyeful_tools.fsio import atomic_write_bytes, atomic_write_json
from eyeful_tools.s3sync.getters import Getter
from eyeful_tools.s3sync.transfer import (
    ByteCounter,
    ETagHasher,
    Fetched,
    TransferCancelled,
    TransferFailed,
    TransferOptions,
    _Retryable,
    classify,
    partial_path,
    retrying,
    sidecar_path,
    verify_partial,
)

log = logging.getLogger(__name__)
SIDECAR_VERSION = 1
_MIB = 1 << 20

Submit = Callable[..., Any]  # ThreadPoolExecutor.submit: (fn, *args) -> Future


def wants_parts(
    size: int,
    reason: str,
    options: TransferOptions,
    *,
    others_per_connection_bytes: float = 0.0,
    resuming_parts: bool = False,
) -> bool:
    """Whether an object is fetched in ranged parts.

    Only an object of at least ``part_threshold_bytes`` that is also larger than what each
    connection carries of the rest of the transfer (``others_per_connection_bytes``: the other
    objects' bytes / connections). While other objects keep every connection busy, one stream
    each is cheaper (the checksum is computed as bytes arrive instead of re-reading the file,
    and the server assembles each object once); parts are for the big objects that would
    otherwise finish alone, on one connection, at the end. An object whose partial already has a parts sidecar stays in parts (its done parts are
    not contiguous). Never when only verifying a local file, nor where ``os.pwrite`` is missing
    (Windows keeps the single stream).
    """
    if size <= 0 or reason == "verify" or not hasattr(os, "pwrite"):
        return False
    if resuming_parts:
        return True
    return size >= options.part_threshold_bytes and size > others_per_connection_bytes


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def done_ranges(partial: Path, size: int, etag: str) -> list[tuple[int, int]] | None:
    """Byte ranges ``[start, end)`` of ``partial`` already fetched for this object version.

    With a sidecar: its done parts (the partial must have the full size). Without: the partial's
    whole length, a contiguous prefix. None when the files do not describe this version (a
    sidecar for another size or ETag, an unreadable one, a partial longer than the object):
    the caller discards them.
    """
    try:
        raw = sidecar_path(partial).read_bytes()
    except FileNotFoundError:
        try:
            got = partial.stat().st_size
        except FileNotFoundError:
            return []
        return [(0, got)] if got <= size else None
    try:
        data = json.loads(raw)
        part_bytes = int(data["part_bytes"])
        done = {int(i) for i in data["done"]}
        same = data.get("version") == SIDECAR_VERSION and (data["size"], data["etag"]) == (
            size,
            etag,
        )
    except (ValueError, KeyError, TypeError):
        return None
    if not same or part_bytes <= 0 or any(not 0 <= i < -(-size // part_bytes) for i in done):
        return None
    try:
        if partial.stat().st_size != size:
            return None
    except FileNotFoundError:
        return None
    return _merge([(i * part_bytes, min(size, (i + 1) * part_bytes)) for i in done])


def covered_parts(ranges: list[tuple[int, int]], size: int, part_bytes: int) -> set[int]:
    """Indices of the parts (of ``part_bytes``) lying wholly inside merged ``ranges``."""
    done: set[int] = set()
    for start, end in ranges:
        first = -(-start // part_bytes)
        for index in range(first, -(-size // part_bytes)):
            if min(size, (index + 1) * part_bytes) > end:
                break
            done.add(index)
    return done


class PartedObject:
    """One object fetched as ranged parts; ``future`` resolves to :class:`Fetched`, or raises
    what ``fetch_object`` raises.

    Thread-safe: parts settle from any worker; the lock guards the done set, the count of parts
    still out, the first failure, and the sidecar writes (so the newest state always wins).
    """

    def __init__(
        self,
        getter: Getter,
        bucket: str,
        key: str,
        size: int,
        etag: str,
        target: Path,
        options: TransferOptions,
        counter: ByteCounter,
        cancel: threading.Event,
        submit: Submit,
    ) -> None:
        self.getter, self.bucket, self.key = getter, bucket, key
        self.size, self.etag, self.target = size, etag, target
        self.options, self.counter, self.cancel, self._submit = options, counter, cancel, submit
        self.part_bytes = max(1, options.part_bytes)
        self.count = -(-size // self.part_bytes)
        self.partial = partial_path(target, etag)
        self.sidecar = sidecar_path(self.partial)
        self.future: Future[Fetched] = Future()
        self._lock = threading.Lock()
        self._done: set[int] = set()
        self._out = 0  # parts queued or running in this round
        self._ready = False  # sidecar written and partial preallocated in this round
        self._failure: TransferFailed | None = None
        self._stop = threading.Event()  # object-level cancel: siblings stop after a failure
        self._round = 0  # whole-object tries (a checksum mismatch starts the object over)
        self._etag_is_md5 = True  # until a part's response says SSE-KMS or SSE-C

    # --- starting -------------------------------------------------------------------------

    def start(self, stale: Sequence[Path] = ()) -> Future[Fetched]:
        """Drop stale partials, read what a previous run left, queue the missing parts."""
        try:
            for old in stale:  # partials and sidecars of other versions of this object
                if old not in (self.partial, self.sidecar):
                    old.unlink(missing_ok=True)
            ranges = done_ranges(self.partial, self.size, self.etag)
            if ranges is None:
                self._discard()
                ranges = []
            self._done = covered_parts(ranges, self.size, self.part_bytes)
        except OSError as error:
            self.future.set_exception(error)
            return self.future
        self._queue([i for i in range(self.count) if i not in self._done])
        return self.future

    def _discard(self) -> None:
        """Remove partial, then sidecar (never a holed partial without its sidecar)."""
        self.partial.unlink(missing_ok=True)
        self.sidecar.unlink(missing_ok=True)

    def _queue(self, indices: list[int | None]) -> None:
        if not indices:
            indices = [None]  # every part is in already: one task only verifies and renames
        self._out = len(indices)
        for n, index in enumerate(indices):
            try:
                self._submit(self._run, index)
            except RuntimeError:  # the pool is shutting down (interrupt): never ran
                for left in indices[n:]:
                    self._settle(left, TransferCancelled(self.key))
                return

    def _ensure_ready(self) -> None:
        """Once per round, before the first byte: the sidecar (durably), then the full size."""
        with self._lock:
            if self._ready:
                return
            atomic_write_json(self.sidecar, self._sidecar_data(), indent=0)
            fd = os.open(self.partial, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                if os.fstat(fd).st_size != self.size:
                    os.ftruncate(fd, self.size)  # sparse where the filesystem allows
            finally:
                os.close(fd)
            self._ready = True

    def _sidecar_data(self) -> dict[str, Any]:
        return {
            "version": SIDECAR_VERSION,
            "size": self.size,
            "etag": self.etag,
            "part_bytes": self.part_bytes,
            "done": sorted(self._done),
        }

    # --- one part -------------------------------------------------------------------------

    def _run(self, index: int | None) -> None:
        """A pool task: fetch one part (with its retries), then settle it. Never raises."""
        try:
            error: Exception | None = None
            if index is not None:
                try:
                    self._fetch_part(index)
                except Exception as caught:  # TransferFailed / TransferCancelled
                    error = caught
            self._settle(index, error)
        except BaseException as error:  # a bug or a local error in settling: never hang sync
            self._stop.set()
            self._resolve(error)

    def _stopped(self) -> bool:
        return self.cancel.is_set() or self._stop.is_set()

    def _sleep(self, seconds: float) -> bool:
        """Back off; True when the sync or this object was cancelled meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.cancel.wait(min(left, 0.05)) or self._stop.is_set():
                return True
        return self._stopped()

    def _fetch_part(self, index: int) -> None:
        """One part, under the same retry policy as a single stream (:func:`retrying`)."""
        start = index * self.part_bytes
        end = min(self.size, start + self.part_bytes)
        retrying(
            lambda: self._fetch_range(start, end),
            self.options,
            self.key,
            stopped=self._stopped,
            wait=self._sleep,
            what=f"part {index} (bytes {start}-{end - 1}): ",
        )

    def _fetch_range(self, start: int, end: int) -> None:
        """One GET of ``[start, end)`` written in place; short or long bodies are retryable."""
        self._ensure_ready()
        fd = os.open(self.partial, os.O_RDWR)
        body = None
        complete = False
        try:
            body = self.getter.get(self.bucket, self.key, self.etag, start, end - 1)
            if body.status != 206 and (start, end) != (0, self.size):
                raise TransferFailed(f"the server ignored the Range header (HTTP {body.status})")
            if not body.etag_is_md5:
                self._etag_is_md5 = False
            offset = start
            while chunk := body.read(self.options.chunk_bytes):
                if self._stopped():
                    raise TransferCancelled(self.key)
                if offset + len(chunk) > end:
                    raise _Retryable(f"body longer than the requested {end - start} bytes")
                view = memoryview(chunk)
                while view.nbytes:
                    written = os.pwrite(fd, view, offset)
                    view = view[written:]
                    offset += written
                self.counter.add(len(chunk))
            if offset < end:
                raise _Retryable(f"short body: {offset - start} of {end - start} bytes")
            complete = True
        except botocore.exceptions.FlexibleChecksumError as error:
            raise _Retryable(f"checksum mismatch: {error}") from error
        finally:
            os.close(fd)
            if body is not None:
                body.finish(complete)

    # --- settling -------------------------------------------------------------------------

    def _settle(self, index: int | None, error: Exception | None) -> None:
        with self._lock:
            if error is None and index is not None:
                self._done.add(index)
                atomic_write_bytes(self.sidecar, json.dumps(self._sidecar_data()).encode())
            elif isinstance(error, TransferFailed):
                if self._failure is None:
                    self._failure = error
                self._stop.set()
            elif error is not None and not isinstance(error, TransferCancelled):
                raise error
            self._out -= 1
            last = self._out == 0
        if last:
            self._finish()

    def _finish(self) -> None:
        """The last part is in: fail, stay for the next run, or verify and rename."""
        if self._failure is not None:
            self._resolve(self._failure)
            return
        if self.cancel.is_set() or len(self._done) < self.count:
            self._resolve(TransferCancelled(self.key))
            return
        try:
            self._resolve(self._verify_and_rename())
        except Exception as error:
            failure = classify(error)
            if failure is None:  # a bug: fail the sync, not just this file
                self._resolve(error)
                return
            retryable, reason = failure
            if isinstance(error, _Retryable):
                self._discard()  # a bad part somewhere: no way to tell which, start over
            self._round += 1
            if not retryable or self._round >= self.options.attempts:
                self._resolve(TransferFailed(reason))
                return
            delay = self.options.backoff_s(self._round - 1)
            log.info("%s: %s; retry %d in %.2f s", self.key, reason, self._round, delay)
            if self.cancel.wait(delay):
                self._resolve(TransferCancelled(self.key))
                return
            with self._lock:
                self._done.clear()
                self._ready = False
            self._queue(list(range(self.count)))

    def _verify_and_rename(self) -> Fetched:
        got = self.partial.stat().st_size
        if got != self.size:
            raise _Retryable(f"partial file has {got} of {self.size} bytes")
        checker = ETagHasher(self.etag if self._etag_is_md5 else "", self.size)
        if checker.can_verify:
            with open(self.partial, "rb") as handle:
                while chunk := handle.read(max(self.options.chunk_bytes, _MIB)):
                    checker.update(chunk)
        checked_by = verify_partial(
            self.getter,
            self.bucket,
            self.key,
            self.etag,
            self.partial,
            self.size,
            self.options,
            checker,
        )
        if checked_by != "etag":  # no digest of every byte: make the parts durable first, or a
            # crash could leave a full-size file with holes that passes its checks next time
            with open(self.partial, "rb+") as handle:
                os.fsync(handle.fileno())
        self.sidecar.unlink(missing_ok=True)  # checked: the partial is whole either way
        os.replace(self.partial, self.target)
        return Fetched(self.target.stat().st_mtime_ns, checked_by)

    def _resolve(self, outcome: Fetched | BaseException) -> None:
        """The object's mtime, or the error it failed with."""
        with self._lock:
            if self.future.done():
                return
            if isinstance(outcome, BaseException):
                self.future.set_exception(outcome)
            else:
                self.future.set_result(outcome)
