"""Listing and planning: what is in the bucket, what is on disk, what to fetch.

A sync target is one prefix mirrored into one local folder with a ``select`` predicate over
prefix-relative keys. Listing is shallow at the top (``Delimiter='/'``) and deep only in the
folders the target names, so choosing one resolution of a capture never pages through the
others. Planning compares each listed object with the manifest and the local file; it touches
no network and writes nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import botocore.exceptions

from eyeful_tools.errors import DownloadError
from eyeful_tools.s3sync.keys import PARTIAL_SUFFIX, SIDECAR_SUFFIX, UnsafeKeyError, local_path
from eyeful_tools.s3sync.manifest import Manifest
from eyeful_tools.s3sync.parts import done_ranges
from eyeful_tools.s3sync.transfer import partial_of, partial_path, sidecar_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteObject:
    key: str  # full S3 key
    rel: str  # key below the target's prefix
    size: int  # bytes
    etag: str  # quotes stripped
    last_modified: str  # ISO 8601


@dataclass
class SyncTarget:
    """One prefix mirrored into one folder.

    ``select(rel)`` picks files by prefix-relative key. Only the top level and ``dirs``
    (prefix-relative folders ending in ``/`` that may hold selected files) are listed, all
    concurrently, so unwanted folders cost nothing.
    """

    bucket: str
    prefix: str  # ends with "/" (or is empty)
    dest: Path
    select: Callable[[str], bool]
    dirs: tuple[str, ...] = ()
    label: str = ""


@dataclass
class PlannedFile:
    obj: RemoteObject
    path: Path  # final local path
    reason: str  # "new", "changed", "repair", "verify" (hash the local file before fetching)
    partial_bytes: int = 0  # already in the resumable partial file (its done parts)
    stale: list[Path] = field(default_factory=list)  # partials (+ sidecars) of other versions


@dataclass
class Plan:
    target: SyncTarget
    manifest: Manifest
    fetch: list[PlannedFile] = field(default_factory=list)
    present: list[RemoteObject] = field(default_factory=list)
    skipped: list[RemoteObject] = field(default_factory=list)
    skipped_dirs: list[str] = field(default_factory=list)  # folders not listed at all
    refused: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)

    @property
    def fetch_bytes(self) -> int:
        """Bytes still to transfer (partials already on disk are not counted)."""
        return sum(f.obj.size - f.partial_bytes for f in self.fetch if f.reason != "verify")

    @property
    def present_bytes(self) -> int:
        return sum(o.size for o in self.present)

    @property
    def skipped_bytes(self) -> int:
        return sum(o.size for o in self.skipped)


def s3_url(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def _listing_error(bucket: str, prefix: str, error: Exception) -> DownloadError:
    if isinstance(error, botocore.exceptions.ClientError):
        err = error.response.get("Error", {})
        reason = f"{err.get('Code', 'error')}: {err.get('Message') or 'listing failed'}"
    else:
        reason = f"cannot list: {error}"
    return DownloadError(s3_url(bucket, prefix), reason)


def list_level(client: Any, bucket: str, prefix: str) -> tuple[list[dict], list[str]]:
    """One folder level: (objects, sub-prefixes), following pagination."""
    objects: list[dict] = []
    folders: list[str] = []
    try:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            objects.extend(page.get("Contents", []))
            folders.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        raise _listing_error(bucket, prefix, error) from error
    return objects, folders


def list_tree(client: Any, bucket: str, prefix: str) -> list[dict]:
    """Every object under a prefix, following pagination."""
    objects: list[dict] = []
    try:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            objects.extend(page.get("Contents", []))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        raise _listing_error(bucket, prefix, error) from error
    return objects


def _remote(raw: dict[str, Any], prefix: str) -> RemoteObject:
    modified = raw.get("LastModified")
    return RemoteObject(
        key=raw["Key"],
        rel=raw["Key"][len(prefix) :],
        size=int(raw.get("Size", 0)),
        etag=str(raw.get("ETag", "")).strip('"'),
        last_modified=modified.isoformat() if isinstance(modified, datetime) else str(modified),
    )


#: a folder the manifest knows to hold more keys than one listing page is listed per
#: sub-folder, side by side; smaller ones in one request (a request per tiny sub-folder costs
#: more than it saves)
FANOUT_MIN_KEYS = 1000


def _known_subfolders(target: SyncTarget, manifest: Manifest | None) -> dict[str, set[str]]:
    """Per wanted folder holding over a page of keys last time: its sub-folders then."""
    counts: dict[str, int] = {}
    subfolders: dict[str, set[str]] = {}
    if manifest is None:
        return {}
    for rel in manifest.entries:
        for folder in target.dirs:
            if rel.startswith(folder) and "/" in rel[len(folder) :]:
                counts[folder] = counts.get(folder, 0) + 1
                sub = folder + rel[len(folder) :].split("/", 1)[0] + "/"
                subfolders.setdefault(folder, set()).add(sub)
    return {f: subs for f, subs in subfolders.items() if counts[f] > FANOUT_MIN_KEYS}


def list_targets(
    client: Any,
    targets: list[SyncTarget],
    pool: ThreadPoolExecutor,
    manifests: list[Manifest] | None = None,
) -> list[tuple[list[RemoteObject], list[str]]]:
    """Per target: (objects worth planning, top-level folders not listed).

    All requests of a round go side by side: the top level (with a delimiter) and each wanted
    folder in full. Pages of one folder come one after another, so a folder the last sync
    saw holding more than a page is instead listed per sub-folder (a 2,000-image folder as its
    22 camera folders): a delimiter listing of the folder plus the known sub-folders in the
    same round, then any new sub-folder in a second.
    """
    first: dict[tuple[int, str, str], Future] = {}  # (target, folder, how) -> listing
    fanout: list[dict[str, set[str]]] = []
    for index, target in enumerate(targets):
        fanout.append(_known_subfolders(target, manifests[index] if manifests else None))
        jobs: list[tuple[str, str]] = [("", "level")]
        for folder in target.dirs:
            if folder in fanout[index]:
                jobs.append((folder, "level"))
                jobs.extend((sub, "tree") for sub in sorted(fanout[index][folder]))
            else:
                jobs.append((folder, "tree"))
        for folder, how in jobs:
            lister = list_level if how == "level" else list_tree
            prefix = target.prefix + folder
            first[(index, folder, how)] = pool.submit(lister, client, target.bucket, prefix)
    raw: list[list[dict]] = [[] for _ in targets]
    not_listed: list[list[str]] = [[] for _ in targets]
    second: list[tuple[int, Future]] = []
    for (index, folder, how), future in first.items():
        target = targets[index]
        if how == "tree":
            raw[index].extend(future.result())
            continue
        objects, folders = future.result()
        raw[index].extend(objects)
        if folder:  # a fanned-out folder: list sub-folders the manifest did not know
            known = {target.prefix + sub for sub in fanout[index][folder]}
            second.extend(
                (index, pool.submit(list_tree, client, target.bucket, sub))
                for sub in folders
                if sub not in known
            )
        else:
            wanted = {target.prefix + d for d in target.dirs}
            not_listed[index] = [f[len(target.prefix) :] for f in folders if f not in wanted]
    for index, future in second:
        raw[index].extend(future.result())
    return [
        ([_remote(r, t.prefix) for r in objs if not r["Key"].endswith("/")], skipped)
        for t, objs, skipped in zip(targets, raw, not_listed, strict=True)
    ]


def _local_partials(folders: Iterable[Path]) -> dict[Path, list[Path]]:
    """Partial files and their parts sidecars by the target path they belong to, one
    ``scandir`` per folder."""
    partials: dict[Path, list[Path]] = {}
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            name = entry.name
            if name.endswith((PARTIAL_SUFFIX, SIDECAR_SUFFIX)) and (owner := partial_of(name)):
                partials.setdefault(folder / owner, []).append(Path(entry.path))
    return partials


def plan_target(objects: list[RemoteObject], target: SyncTarget, manifest: Manifest) -> Plan:
    """Compare the listing with the manifest and the disk. Sizes in bytes."""
    plan = Plan(target=target, manifest=manifest)
    checked: set[Path] = set()
    chosen: list[tuple[RemoteObject, Path]] = []
    for obj in sorted(objects, key=lambda o: o.key):
        try:
            if not target.select(obj.rel):
                plan.skipped.append(obj)
                continue
            path = local_path(target.dest, obj.rel, checked)
        except UnsafeKeyError as error:
            if target.select(obj.rel):
                plan.refused.append((obj.key, f"unsafe key refused: {error}"))
            else:
                plan.skipped.append(obj)
            continue
        chosen.append((obj, path))
    partials = _local_partials({path.parent for _, path in chosen})
    for obj, path in chosen:
        try:
            stat = path.stat()
        except FileNotFoundError:
            stat = None
        except OSError as error:  # e.g. a folder in the way
            plan.refused.append((obj.key, f"local path unusable: {error}"))
            continue
        entry = manifest.entries.get(obj.rel)
        recorded = entry is not None and (entry.size, entry.etag) == (obj.size, obj.etag)
        if stat is not None and entry is not None and recorded:
            if stat.st_size == obj.size and stat.st_mtime_ns == entry.mtime_ns:
                plan.present.append(obj)
                continue
            reason = "verify" if stat.st_size == obj.size else "repair"
        elif stat is not None and stat.st_size == obj.size:
            reason = "verify"  # same size, no record (or another version recorded): hash it
        else:
            reason = "new" if stat is None else "changed"
        partial = partial_path(path, obj.etag)
        mine = (partial, sidecar_path(partial))
        partial_bytes = 0
        if any(p in mine for p in partials.get(path, [])):
            ranges = done_ranges(partial, obj.size, obj.etag) or []
            partial_bytes = sum(end - start for start, end in ranges)
        stale = [p for p in partials.get(path, []) if p not in mine]
        plan.fetch.append(PlannedFile(obj, path, reason, partial_bytes, stale))
    return plan


def check_free_space(
    dest: Path,
    needed_bytes: int,
    disk_usage: Callable[[Path], Any] = shutil.disk_usage,
    reserve_bytes: int = 64 << 20,
) -> int:
    """Refuse a plan that does not fit: raise DownloadError naming the folder and both sizes.

    Returns the free bytes. ``disk_usage`` is injectable so tests can pretend a full disk.
    """
    probe = dest.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = int(disk_usage(probe).free)
    if needed_bytes > 0 and needed_bytes + reserve_bytes > free:
        raise DownloadError(
            dest,
            f"not enough free space: the plan needs {human_bytes(needed_bytes)} "
            f"(+{human_bytes(reserve_bytes)} reserve) but only {human_bytes(free)} is free",
        )
    return free


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
