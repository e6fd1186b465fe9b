"""``eyeful download``: choose captures, resolutions and extras from the catalog, sync them.

Everything about S3 (listing, resuming, verifying) lives in :mod:`eyeful_tools.s3sync`; this
module only knows the EyefulTower layout (``reference/eyeful.md`` section 3): which keys below
``<prefix><capture>/`` a request wants, where they land (``<dest>/<capture>/<same path>``), and
that a finished sync is followed by ``convert_capture`` for each resolution.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from eyeful_tools import catalog
from eyeful_tools.errors import DownloadError, MissingFileError, UsageError
from eyeful_tools.s3sync import (
    Manifest,
    Plan,
    SyncProgress,
    SyncReport,
    SyncTarget,
    TransferOptions,
    check_free_space,
    execute,
    list_level,
    list_targets,
    make_client,
    plan_target,
    s3_url,
)

log = logging.getLogger(__name__)
DEFAULT_JOBS = 16
_CAPTURE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class DownloadRequest:
    """What the user asked for; defaults are the CLI's (riverview, jpeg_2k, public bucket)."""

    captures: list[str] = field(default_factory=lambda: [catalog.DEFAULT_CAPTURE])
    resolutions: list[str] = field(default_factory=lambda: [catalog.DEFAULT_RESOLUTION])
    dest: Path = Path(catalog.DEFAULT_DEST)
    endpoint_url: str | None = None
    bucket: str = catalog.PUBLIC_BUCKET
    prefix: str = catalog.PUBLIC_PREFIX
    jobs: int = DEFAULT_JOBS
    include: list[str] = field(default_factory=list)  # names of catalog.EXTRAS
    profile: str | None = None

    @property
    def is_public_catalog(self) -> bool:
        """True when reading the real EyefulTower bucket, whose captures the catalog lists."""
        return (
            self.endpoint_url is None
            and self.bucket == catalog.PUBLIC_BUCKET
            and self.prefix.rstrip("/") + "/" == catalog.PUBLIC_PREFIX
        )


@dataclass
class DownloadPlan:
    request: DownloadRequest
    client: Any
    captures: list[str]
    resolutions: list[str]
    include: list[str]
    plans: list[Plan]

    def tally(self, kind: Literal["fetch", "present", "skipped"]) -> tuple[int, int]:
        """(files, bytes) over all plans: to ``fetch``, already ``present``, or ``skipped``."""
        files = sum(len(getattr(p, kind)) for p in self.plans)
        return files, sum(getattr(p, f"{kind}_bytes") for p in self.plans)

    @property
    def skipped_folders(self) -> list[str]:
        return [f"{p.target.label}/{d}" for p in self.plans for d in p.skipped_dirs]

    @property
    def refused(self) -> list[tuple[str, str]]:
        return [r for p in self.plans for r in p.refused]


@dataclass
class DownloadReport:
    plan: DownloadPlan
    sync: SyncReport
    free_bytes: int
    converted: list[tuple[str, list[str]]] = field(default_factory=list)  # (capture, resolutions)


def capture_selector(
    resolutions: list[str], include: list[str]
) -> tuple[Callable[[str], bool], tuple[str, ...]]:
    """(select(rel_key), folders to list) for one capture's keys.

    Selected: the calibration files at the capture root, the chosen resolution folders, and the
    opt-in extras. Per-camera mp4s sit inside ``images-jpeg-2k/`` but are the ``video`` extra.
    """
    folders = tuple(catalog.RESOLUTIONS[r].folder + "/" for r in resolutions)
    patterns = [p for name in include for p in catalog.EXTRAS[name]]
    prefixes = tuple(p for p in patterns if p.endswith("/"))
    suffixes = tuple(p for p in patterns if p.startswith((".", "-")) and not p.endswith("/"))
    exact = {p for p in patterns if p not in prefixes and p not in suffixes}
    video = "video" in include
    dirs = tuple(dict.fromkeys([*folders, *prefixes, *(["images-jpeg-2k/"] if video else [])]))

    def select(rel: str) -> bool:
        if rel.endswith(".mp4"):
            return video
        if rel in catalog.CALIBRATION_FILES or rel in exact:
            return True
        if rel.startswith(folders) or rel.startswith(prefixes):
            return True
        return "/" not in rel and bool(suffixes) and rel.endswith(suffixes)

    return select, dirs


def _resolve_captures(request: DownloadRequest, client: Any, prefix: str) -> list[str]:
    if request.is_public_catalog:
        return catalog.expand(request.captures, catalog.CAPTURES, "capture")
    names: list[str] = []
    for name in request.captures:
        if name == "all":  # a mirror or local endpoint: discover what it holds
            _, folders = list_level(client, request.bucket, prefix)
            found = [f[len(prefix) :].rstrip("/") for f in folders]
            names.extend(n for n in found if _CAPTURE_NAME.match(n) and n not in names)
        elif not _CAPTURE_NAME.match(name):
            raise UsageError(None, f"invalid capture name {name!r}")
        elif name not in names:
            names.append(name)
    if not names:
        raise MissingFileError(s3_url(request.bucket, prefix), "no captures found")
    return names


def plan_download(request: DownloadRequest, client: Any = None) -> DownloadPlan:
    """List the chosen captures and compare with ``request.dest``; transfers nothing."""
    resolutions = catalog.expand(request.resolutions, catalog.RESOLUTIONS, "resolution")
    include = catalog.expand(request.include, catalog.EXTRAS, "extra")
    if request.jobs < 1:
        raise UsageError(None, f"--jobs must be at least 1, got {request.jobs}")
    prefix = request.prefix
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    client = client or make_client(request.endpoint_url, request.profile, request.jobs)
    captures = _resolve_captures(request, client, prefix)
    select, dirs = capture_selector(resolutions, include)
    targets = [
        SyncTarget(
            bucket=request.bucket,
            prefix=f"{prefix}{name}/",
            dest=Path(request.dest) / name,
            select=select,
            dirs=dirs,
            label=name,
        )
        for name in captures
    ]
    for target in targets:
        if target.dest.exists() and not target.dest.is_dir():
            raise DownloadError(target.dest, "exists and is not a folder")
    manifests = [Manifest.load(t.dest, t.bucket, t.prefix) for t in targets]
    with ThreadPoolExecutor(max_workers=max(4, min(request.jobs, 32))) as pool:
        listings = list_targets(client, targets, pool, manifests)
    plans = []
    for target, manifest, (objects, not_listed) in zip(targets, manifests, listings, strict=True):
        if not objects and not not_listed:
            raise MissingFileError(s3_url(target.bucket, target.prefix), "no such capture")
        plan = plan_target(objects, target, manifest)
        plan.skipped_dirs = not_listed
        plans.append(plan)
    return DownloadPlan(request, client, captures, resolutions, include, plans)


def run_download(
    plan: DownloadPlan,
    convert: bool = True,
    progress: SyncProgress | None = None,
    disk_usage: Callable[[Path], Any] = shutil.disk_usage,
    options: TransferOptions | None = None,
) -> DownloadReport:
    """Check free space, transfer, then convert each capture's resolutions (if all went well).

    Per-file failures do not raise: they are in ``report.sync.failures`` for the caller.
    """
    dest = Path(plan.request.dest)
    free = check_free_space(dest, plan.tally("fetch")[1], disk_usage=disk_usage)
    sync = execute(plan.client, plan.plans, plan.request.jobs, options, progress)
    report = DownloadReport(plan, sync, free)
    if convert and sync.ok:
        for name in plan.captures:
            converted = convert_downloaded(dest / name, plan.resolutions)
            report.converted.append((name, converted))
    return report


def convert_downloaded(capture_dir: Path, resolutions: list[str]) -> list[str]:
    """Run the converter on the resolutions that were downloaded; return those converted."""
    from eyeful_tools.convert import convert_capture  # cv2, lxml: only once there is work

    present = [r for r in resolutions if (capture_dir / catalog.RESOLUTIONS[r].folder).is_dir()]
    if present:
        convert_capture(capture_dir, resolutions=present, source="krt", rig=True)
    return present
