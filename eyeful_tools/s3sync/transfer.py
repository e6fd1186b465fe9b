"""One object to one file: ranged resume, ETag verification, bounded retries with jitter.

botocore retries a request that fails before the body starts; it cannot help when a connection
drops mid-body, a proxy truncates a response, or the bytes do not match the ETag. This module
wraps each object transfer in its own retry loop and keeps what already arrived in a partial
file beside the target, ``<name>.<etag8>.incomplete``. The name depends only on the target and
the object version, so a later run finds it and continues with a ranged GET (``If-Match`` the
planned ETag, so bytes of two versions are never mixed). The target name only ever appears by
``os.replace`` of a partial that was verified: by S3's full-object checksum when the response
carries one we can check, else by the ETag where it is an MD5, else (SSE-KMS and SSE-C objects,
whose ETags are not MD5s; multipart ETags no part layout explains) by its size plus sampled
ranges read again from S3 and compared, which :class:`Fetched` records so the sync can say so.

One retry policy, :func:`retrying`, serves single streams and ranged parts alike: transient
failures are retried with backoff, permanent ones fail the object, and an exception that is no
transfer failure at all (a bug) propagates and fails the sync loudly.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import logging
import os
import random
import re
import socket
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import botocore.exceptions
import urllib3.exceptions

from eyeful_tools.s3sync.getters import Getter, ObjectBody, S3HTTPError
from eyeful_tools.s3sync.keys import PARTIAL_SUFFIX, SIDECAR_SUFFIX

log = logging.getLogger(__name__)
T = TypeVar("T")
#: how :class:`Fetched` says a file was checked when no checksum and no MD5 could vouch for it
CHECKED_BY_RANGES = "size and re-read ranges"

_MIB = 1 << 20
_SINGLE_PART = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART = re.compile(r"^([0-9a-f]{32})-(\d+)$")
_PARTIAL_NAME = re.compile(
    r"^(.+)\.[0-9A-Za-z]{8}(?:" + re.escape(PARTIAL_SUFFIX) + "|" + re.escape(SIDECAR_SUFFIX) + ")$"
)
_RETRY_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "ServiceUnavailable",
    "InternalError",
    "503",
    "500",
}
_NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    botocore.exceptions.ConnectionError,  # endpoint, timeouts, closed connections
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.IncompleteReadError,
    botocore.exceptions.ResponseStreamingError,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    ConnectionError,  # builtin: reset, aborted, refused
    socket.timeout,
    TimeoutError,
)


class TransferCancelled(Exception):
    """The sync was interrupted; the partial file stays for the next run."""


class TransferFailed(Exception):
    """An object could not be fetched, after retries where retrying made sense."""


class _Retryable(Exception):
    """Our own transient failures: short body, checksum mismatch, oversized body."""


@dataclass
class TransferOptions:
    """Retry policy and I/O sizes (tests shrink the backoff and the chunk size)."""

    attempts: int = 8  # total tries per object (per part, for objects fetched in parts)
    backoff_base_s: float = 0.2
    backoff_max_s: float = 20.0
    chunk_bytes: int = _MIB
    part_threshold_bytes: int = 16 * _MIB  # objects this big are fetched as ranged parts
    part_bytes: int = 8 * _MIB  # the size of one part (the last one may be shorter)
    #: where neither a checksum nor the ETag vouches for a file: ranges read again and compared
    verify_ranges: int = 4
    verify_range_bytes: int = 64 * 1024
    rng: random.Random = field(default_factory=random.Random)

    def backoff_s(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)


class ByteCounter:
    """Bytes received across worker threads, read by the progress display."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self, n: int) -> None:
        with self._lock:
            self.value += n


class ETagHasher:
    """Incremental check of received bytes against an S3 ETag.

    A single-part ETag is the MD5 of the object. A multipart ETag is the MD5 of the parts' MD5s
    plus ``-<parts>``; the part size is not published, so we try the sizes uploaders use (whole
    MiB) that give that many parts. ``verdict()`` is True (match), False (mismatch) or None
    (cannot tell: unknown ETag form or part size).
    """

    def __init__(self, etag: str, size: int, part_sizes: Sequence[int] | None = None) -> None:
        self.etag = etag
        self.single = bool(_SINGLE_PART.match(etag))
        self._md5 = hashlib.md5(usedforsecurity=False) if self.single else None
        self._part_hashers: list[_PartHasher] = []
        #: the multipart layout came from S3, so a mismatch is definite
        self.exact_parts = bool(part_sizes)
        match = _MULTIPART.match(etag)
        if match and part_sizes:  # every part's size, as S3 reported them: a definite check
            self._part_hashers = [_PartHasher(part_sizes)]
        elif match:
            parts = int(match.group(2))
            self._part_hashers = [
                _PartHasher(_uniform(size, p)) for p in _part_size_candidates(size, parts)
            ]

    def update(self, data: bytes | memoryview) -> None:
        if self._md5 is not None:
            self._md5.update(data)
        for part_hasher in self._part_hashers:
            part_hasher.update(data)

    @property
    def can_verify(self) -> bool:
        return self._md5 is not None or bool(self._part_hashers)

    def verdict(self) -> bool | None:
        if self._md5 is not None:
            return self._md5.hexdigest() == self.etag
        if any(h.etag() == self.etag for h in self._part_hashers):
            return True
        return False if self.exact_parts else None


def _uniform(size: int, part_bytes: int) -> list[int]:
    """Part sizes of ``size`` bytes cut every ``part_bytes`` (the last one shorter)."""
    return [min(part_bytes, size - start) for start in range(0, size, part_bytes)]


class _PartHasher:
    """MD5 of each part, for part sizes given in order (bytes past them make one more part)."""

    def __init__(self, part_sizes: Sequence[int]) -> None:
        self.part_sizes = [int(p) for p in part_sizes if p > 0]
        self.digests: list[bytes] = []
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._filled = 0

    def _limit(self) -> int:
        index = len(self.digests)
        return self.part_sizes[index] if index < len(self.part_sizes) else 1 << 62

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view.nbytes:
            limit = self._limit()
            take = min(view.nbytes, limit - self._filled)
            self._md5.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == limit:
                self.digests.append(self._md5.digest())
                self._md5 = hashlib.md5(usedforsecurity=False)
                self._filled = 0

    def etag(self) -> str:
        digests = self.digests + ([self._md5.digest()] if self._filled else [])
        combined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
        return f"{combined}-{len(digests)}"


def _part_size_candidates(size: int, parts: int) -> list[int]:
    """Part sizes (bytes) that split ``size`` into exactly ``parts`` parts."""
    if parts <= 0 or size <= 0:
        return []
    candidates = {5 * _MIB, 8 * _MIB, 16 * _MIB, 64 * _MIB}
    candidates.add(-(-size // (parts * _MIB)) * _MIB)  # ceil(size / parts) rounded up to MiB
    return sorted(p for p in candidates if -(-size // p) == parts)


class ChecksumChecker:
    """The bytes against S3's stored full-object checksum (``crc32``: base64 of the big-endian
    value; ``sha256``, ``sha1``: base64 of the digest)."""

    can_verify = True

    def __init__(self, algorithm: str, expected_b64: str) -> None:
        self.algorithm = algorithm
        self.expected = expected_b64
        self._crc = 0
        self._hash = None if algorithm == "crc32" else hashlib.new(algorithm)

    def update(self, data: bytes | memoryview) -> None:
        if self._hash is None:
            self._crc = zlib.crc32(data, self._crc)
        else:
            self._hash.update(data)

    def verdict(self) -> bool | None:
        digest = self._crc.to_bytes(4, "big") if self._hash is None else self._hash.digest()
        return base64.b64encode(digest).decode() == self.expected


@dataclass(frozen=True)
class Fetched:
    """A file in place under its final name, and what vouched for its bytes: a checksum's
    name, ``"etag"`` (the MD5 in it), or :data:`CHECKED_BY_RANGES`."""

    mtime_ns: int
    checked_by: str


def ranges_match(
    getter: Getter,
    bucket: str,
    key: str,
    etag: str,
    path: Path,
    size: int,
    options: TransferOptions,
) -> bool:
    """Read a few ranges of the object again (first, last, random ones) and compare them with
    ``path``: for objects no checksum or MD5 can vouch for, so that a file is never accepted on
    its size alone (damage outside the sampled ranges can still pass, hence the report)."""
    span = min(size, max(1, options.verify_range_bytes))
    if span == 0:
        return True
    last = size - span
    starts = {0, last} | {
        options.rng.randint(0, last) for _ in range(max(0, options.verify_ranges - 2))
    }
    with open(path, "rb") as handle:
        for start in sorted(starts):
            body = getter.get(bucket, key, etag, start, start + span - 1)
            if body.status != 206 and span != size:
                body.finish(False)
                raise TransferFailed(f"the server ignored the Range header (HTTP {body.status})")
            remote = _read_body(body, span + 1)
            handle.seek(start)
            if remote != handle.read(span):
                return False
    return True


def _read_body(body: ObjectBody, limit: int) -> bytes:
    """At most ``limit`` bytes of ``body``, then the connection handed back (or dropped)."""
    chunks: list[bytes] = []
    got = 0
    complete = False
    try:
        while got < limit and (chunk := body.read(limit - got)):
            chunks.append(chunk)
            got += len(chunk)
        complete = got < limit
    finally:
        body.finish(complete)
    return b"".join(chunks)


def hash_file_matches(
    path: Path,
    etag: str,
    size: int,
    chunk_bytes: int = _MIB,
    part_sizes: Sequence[int] | None = None,
) -> bool | None:
    """Re-hash a local file against an ETag (True, False or None: cannot tell).

    ``part_sizes`` are a multipart upload's part sizes when known (see :func:`check_file`)."""
    hasher = ETagHasher(etag, size, part_sizes)
    if not hasher.can_verify:
        return None
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            hasher.update(chunk)
    return hasher.verdict()


def check_file(
    getter: Getter, bucket: str, key: str, path: Path, etag: str, size: int, chunk_bytes: int = _MIB
) -> bool | None:
    """:func:`hash_file_matches` with the usual part-size guesses, then, for a multipart ETag
    none of them fits, :func:`check_with_s3_part_sizes`."""
    verdict = hash_file_matches(path, etag, size, chunk_bytes)
    if verdict is None:
        verdict = check_with_s3_part_sizes(getter, bucket, key, path, etag, size, chunk_bytes)
    return verdict


def check_with_s3_part_sizes(
    getter: Getter, bucket: str, key: str, path: Path, etag: str, size: int, chunk_bytes: int = _MIB
) -> bool | None:
    """A multipart ETag checked with the part sizes S3 reports (``HEAD ?partNumber=N``), so
    that damaged bytes are caught instead of passing on their size alone.

    Part 1's size is asked first and, if the parts are even, is enough; a mismatch then, or
    uneven parts, is settled by asking every part (a definite False needs the real layout: a
    wrong layout would call an intact file damaged, and it could then never be fetched).
    None whenever S3's answers do not add up to the object (e.g. a server that ignores
    ``partNumber`` and describes the whole object).
    """
    match = _MULTIPART.match(etag)
    if not match:
        return None
    count = int(match.group(2))
    first = getter.part_bytes(bucket, key, etag, 1)
    if not first or (count > 1 and first >= size):
        return None
    even = _uniform(size, first)
    if len(even) == count and hash_file_matches(path, etag, size, chunk_bytes, even):
        return True
    sizes = [first] + [getter.part_bytes(bucket, key, etag, n) or 0 for n in range(2, count + 1)]
    if 0 in sizes or sum(sizes) != size:
        return None
    if sizes == even:  # already hashed with exactly this layout
        return False
    return hash_file_matches(path, etag, size, chunk_bytes, sizes)


def partial_path(target: Path, etag: str) -> Path:
    """The deterministic partial file for one version of one object, beside the target."""
    tag = re.sub(r"[^0-9A-Za-z]", "", etag)[:8]
    if len(tag) < 8:
        tag = hashlib.md5(etag.encode(), usedforsecurity=False).hexdigest()[:8]
    return target.with_name(f"{target.name}.{tag}{PARTIAL_SUFFIX}")


def sidecar_path(partial: Path) -> Path:
    """The record of which ranged parts of ``partial`` are in (see ``parts``)."""
    return partial.with_name(partial.name + SIDECAR_SUFFIX[len(PARTIAL_SUFFIX) :])


def partial_of(name: str) -> str | None:
    """The target name a partial file (or its parts sidecar) belongs to, or None."""
    match = _PARTIAL_NAME.match(name)
    return match.group(1) if match else None


def classify(error: BaseException) -> tuple[bool, str] | None:
    """(retryable, one-line reason) for an exception raised by one transfer attempt; None for
    one that is no transfer failure (a bug), which must not be turned into a failed file."""
    if isinstance(error, botocore.exceptions.ClientError | S3HTTPError):
        if isinstance(error, S3HTTPError):
            code, status, message = error.code, error.status, error.message
        else:
            response: dict[str, Any] = error.response
            code = str(response.get("Error", {}).get("Code", ""))
            status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            message = response.get("Error", {}).get("Message", "")
        message = message or code or f"HTTP {status}"
        if code == "PreconditionFailed" or status == 412:
            return False, "object changed in the bucket during the sync; run again"
        if code in _RETRY_CODES or status >= 500 or status == 429:
            return True, f"{code or status}: {message}"
        return False, f"{code or status}: {message}"
    if isinstance(error, _Retryable):
        return True, str(error)
    if isinstance(error, _NETWORK_ERRORS):
        return True, f"{type(error).__name__}: {error}"
    if isinstance(error, OSError):
        return False, f"local file error: {error}"
    if isinstance(error, botocore.exceptions.BotoCoreError):  # credentials, configuration
        return False, f"{type(error).__name__}: {error}"
    return None


def retrying(
    attempt: Callable[[], T],
    options: TransferOptions,
    key: str,
    *,
    stopped: Callable[[], bool],
    wait: Callable[[float], bool],
    what: str = "",
) -> T:
    """The one retry policy: run ``attempt`` up to ``options.attempts`` times, backing off
    between transient failures (``wait(seconds)`` is True when cancelled meanwhile).

    Raises TransferFailed (``what`` + the last reason) on a permanent failure or when the tries
    run out, TransferCancelled when ``stopped()``, and anything :func:`classify` does not know
    as it is.
    """
    reason = "not attempted"
    for number in range(options.attempts):
        if stopped():
            raise TransferCancelled(key)
        try:
            return attempt()
        except (TransferCancelled, TransferFailed):
            raise
        except Exception as error:
            failure = classify(error)
            if failure is None:
                raise
            retryable, reason = failure
            if not retryable or number + 1 == options.attempts:
                break
            delay = options.backoff_s(number)
            log.info("%s: %s%s; retry %d in %.2f s", key, what, reason, number + 1, delay)
            if wait(delay):
                raise TransferCancelled(key) from None
    raise TransferFailed(what + reason)


def fetch_object(
    getter: Getter,
    bucket: str,
    key: str,
    size: int,
    etag: str,
    target: Path,
    options: TransferOptions,
    counter: ByteCounter,
    cancel: threading.Event,
    stale: Sequence[Path] = (),
) -> Fetched:
    """Download one object version to ``target`` (see :func:`retrying` for what it raises)."""
    partial = partial_path(target, etag)
    sidecar = sidecar_path(partial)
    for old in stale:  # partials of older versions of this object
        if old not in (partial, sidecar):
            old.unlink(missing_ok=True)
    if sidecar.exists():  # fetched in parts before: not a contiguous prefix, start over
        partial.unlink(missing_ok=True)
        sidecar.unlink()

    def attempt() -> Fetched:
        checked_by = _fetch_once(getter, bucket, key, size, etag, partial, options, counter, cancel)
        os.replace(partial, target)
        return Fetched(target.stat().st_mtime_ns, checked_by)

    return retrying(attempt, options, key, stopped=cancel.is_set, wait=cancel.wait)


def _checker(etag: str, size: int, body: ObjectBody | None) -> ETagHasher | ChecksumChecker:
    """S3's full-object checksum when this response carries one, else the ETag (whose MD5 is
    only there when the response does not say the object is SSE-KMS or SSE-C)."""
    if body is not None and body.checksum is not None:
        return ChecksumChecker(*body.checksum)
    return ETagHasher(etag if body is None or body.etag_is_md5 else "", size)


def _fetch_once(
    getter: Getter,
    bucket: str,
    key: str,
    size: int,
    etag: str,
    partial: Path,
    options: TransferOptions,
    counter: ByteCounter,
    cancel: threading.Event,
) -> str:
    """One attempt: continue the partial file (ranged GET) or start it, then verify it; returns
    what vouched for the bytes (see :class:`Fetched`)."""
    try:
        offset = partial.stat().st_size
    except FileNotFoundError:
        offset = 0
    if offset > size:
        partial.unlink()
        offset = 0
    body = getter.get(bucket, key, etag, offset) if offset < size or size == 0 else None
    if body is not None and offset and body.status != 206:
        offset = 0  # the server ignored the range: start over
    checker = _checker(etag, size, body if not offset else None)
    if offset and body is not None and not body.etag_is_md5:
        checker = ETagHasher("", size)  # a resumed SSE-KMS object: no MD5 to compare with
    complete = False
    try:
        if offset and checker.can_verify:
            with open(partial, "rb") as handle:
                while chunk := handle.read(options.chunk_bytes):
                    checker.update(chunk)
        if body is not None:
            received = offset
            with open(partial, "ab" if offset else "wb") as handle:
                while chunk := body.read(options.chunk_bytes):
                    if cancel.is_set():
                        raise TransferCancelled(key)
                    received += len(chunk)
                    if received > size:
                        raise _Retryable(f"body longer than the listed {size} bytes")
                    handle.write(chunk)
                    checker.update(chunk)
                    counter.add(len(chunk))
        complete = True
    except _Retryable:
        partial.unlink(missing_ok=True)
        raise
    except botocore.exceptions.FlexibleChecksumError as error:  # botocore's own CRC check
        partial.unlink(missing_ok=True)
        raise _Retryable(f"checksum mismatch: {error}") from error
    finally:
        if body is not None:
            body.finish(complete)
    got = partial.stat().st_size
    if got < size:
        raise _Retryable(f"short body: {got} of {size} bytes")
    return verify_partial(getter, bucket, key, etag, partial, size, options, checker)


def verify_partial(
    getter: Getter,
    bucket: str,
    key: str,
    etag: str,
    partial: Path,
    size: int,
    options: TransferOptions,
    checker: ETagHasher | ChecksumChecker,
) -> str:
    """The checker's verdict, else the multipart layout S3 reports, else sampled ranges read
    again; raises _Retryable (the partial removed) when the bytes are wrong."""
    verdict = checker.verdict() if checker.can_verify else None
    checked_by = checker.algorithm if isinstance(checker, ChecksumChecker) else "etag"
    if verdict is None and isinstance(checker, ETagHasher) and checker.etag:
        # a multipart ETag none of the usual part sizes fits
        verdict = check_with_s3_part_sizes(
            getter, bucket, key, partial, etag, size, options.chunk_bytes
        )
    if verdict is None:
        checked_by = CHECKED_BY_RANGES
        verdict = ranges_match(getter, bucket, key, etag, partial, size, options)
    if not verdict:
        partial.unlink(missing_ok=True)
        what = {"etag": "MD5 of the ETag", CHECKED_BY_RANGES: "ranges read again"}
        raise _Retryable(
            f"checksum mismatch: the bytes do not match the {what.get(checked_by, checked_by.upper())}"
        )
    return checked_by
