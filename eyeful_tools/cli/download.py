"""``eyeful download``: mirror EyefulTower captures from S3, then convert them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from eyeful_tools import catalog
from eyeful_tools.cli._app import app, console, summary
from eyeful_tools.errors import DownloadError

if TYPE_CHECKING:
    from eyeful_tools.download import DownloadPlan, DownloadReport
    from eyeful_tools.s3sync import SyncReport

MAX_LISTED = 20  # failed files listed one per line; the rest are counted
#: eyeful_tools.download.DEFAULT_JOBS; repeated so that other commands never import botocore
DEFAULT_JOBS = 16


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


class RichProgress:
    """Files, bytes, rate and ETA on stderr (the sync calls this from one thread)."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("[bold]download"),
            BarColumn(),
            TextColumn("{task.fields[files]}"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None
        self._files = 0

    def start(self, files: int, total_bytes: int) -> None:
        self._files = files
        if files:
            self._progress.start()
            self._task = self._progress.add_task(
                "download", total=total_bytes, files=f"0/{files} files"
            )

    def update(self, files_done: int, bytes_done: int) -> None:
        if self._task is not None:
            self._progress.update(
                self._task, completed=bytes_done, files=f"{files_done}/{self._files} files"
            )

    def finish(self) -> None:
        if self._task is not None:
            self._progress.stop()


@app.command("download")
def download_command(
    capture: list[str] = typer.Option(
        [catalog.DEFAULT_CAPTURE], "--capture", "-c", help="Capture name (repeat), or all."
    ),
    resolution: list[str] = typer.Option(
        [catalog.DEFAULT_RESOLUTION],
        "--resolution",
        "-r",
        help=f"{', '.join(catalog.RESOLUTIONS)} (repeat), or all.",
    ),
    dest: Path = typer.Option(Path(catalog.DEFAULT_DEST), "--dest", help="Local root folder."),
    endpoint_url: str | None = typer.Option(None, help="S3 endpoint (a mirror, moto, MinIO)."),
    bucket: str = typer.Option(catalog.PUBLIC_BUCKET, help="Bucket name."),
    prefix: str = typer.Option(catalog.PUBLIC_PREFIX, help="Key prefix holding the captures."),
    jobs: int = typer.Option(DEFAULT_JOBS, "--jobs", "-j", help="Concurrent transfers."),
    include: list[str] = typer.Option(
        [], "--include", help=f"Opt-in extras: {', '.join(catalog.EXTRAS)} (repeat), or all."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Plan and print, transfer nothing."),
    no_convert: bool = typer.Option(False, "--no-convert", help="Skip eyeful convert."),
    profile: str | None = typer.Option(
        None, help="AWS profile for signed access (default: anonymous)."
    ),
) -> None:
    """Download EyefulTower captures: calibration files plus the chosen resolution folders.

    Incremental (a manifest records size and ETag), resumable (ranged GETs on partial files),
    parallel, verified (size and MD5), anonymous unless --profile. Converts each downloaded
    resolution to transforms.json afterwards unless --no-convert.

    Example: eyeful download --capture riverview --resolution jpeg_1k --include colmap
    """
    from eyeful_tools.download import DownloadRequest, plan_download, run_download

    request = DownloadRequest(
        captures=capture,
        resolutions=resolution,
        dest=dest,
        endpoint_url=endpoint_url,
        bucket=bucket,
        prefix=prefix,
        jobs=jobs,
        include=include,
        profile=profile,
    )
    plan = plan_download(request)
    line = _plan_line(plan)
    if dry_run:
        for key, reason in plan.refused:
            console.print(f"refused: {key}: {reason}", soft_wrap=True, markup=False)
        summary(f"dry run, {line.removeprefix('plan: ')} in {', '.join(plan.captures)}")
        return
    console.print(line, soft_wrap=True, markup=False)
    report = run_download(plan, convert=not no_convert, progress=RichProgress())
    message = _report_line(report, dest)
    if report.sync.failures:
        _fail(report.sync, message)
    summary(message)


def _plan_line(plan: DownloadPlan) -> str:
    """One line saying what the plan will fetch, what is already there and what it leaves out,
    printed before the transfer starts (and as the dry-run summary)."""
    from eyeful_tools.s3sync import human_bytes

    skipped_folders = plan.skipped_folders
    (fetch, fetch_bytes), (present, present_bytes), (skipped, skipped_bytes) = (
        plan.tally(kind) for kind in ("fetch", "present", "skipped")
    )
    return (
        f"plan: {fetch} files ({human_bytes(fetch_bytes)}) to fetch, "
        f"{present} ({human_bytes(present_bytes)}) already present, "
        f"{skipped} ({human_bytes(skipped_bytes)}) skipped"
        + (f" plus {_count(len(skipped_folders), 'folder')} not listed" if skipped_folders else "")
        + (f", {len(plan.refused)} refused" if plan.refused else "")
    )


def _report_line(report: DownloadReport, dest: Path) -> str:
    """The one-line summary of a finished download: counts, bytes, rate, what was checked only
    by ranges (so weaker verification is never silent) and what was converted."""
    from eyeful_tools.s3sync import human_bytes

    sync = report.sync
    rate = sync.bytes_transferred / sync.elapsed_s if sync.elapsed_s > 0 else 0.0
    converted = sum(len(r) for _, r in report.converted)
    return (
        f"downloaded {sync.files_fetched} files ({human_bytes(sync.bytes_transferred)}) "
        f"in {sync.elapsed_s:.1f} s ({human_bytes(rate)}/s) to {dest}; "
        f"{sync.files_present + sync.files_verified} already present, "
        f"{sync.files_skipped} skipped"
        + (f", {len(sync.failures)} failed" if sync.failures else "")
        + (
            f"; {_count(len(sync.checked_by_ranges), 'file')} checked by size and re-read ranges"
            " only (no checksum, and an ETag that is no MD5: SSE-KMS or SSE-C)"
            if sync.checked_by_ranges
            else ""
        )
        + (f"; converted {converted} resolution folders" if converted else "")
    )


def _fail(sync: SyncReport, message: str) -> NoReturn:
    """List the failed files (up to MAX_LISTED) and the summary, then end with the one-line
    error the CLI maps to exit 1; a rerun resumes where this one stopped."""
    for url, reason in sync.failures[:MAX_LISTED]:
        console.print(f"failed: {url}: {reason}", soft_wrap=True, markup=False)
    if len(sync.failures) > MAX_LISTED:
        console.print(f"... and {len(sync.failures) - MAX_LISTED} more failed", markup=False)
    console.print(message, soft_wrap=True, markup=False)
    url, reason = sync.failures[0]
    more = len(sync.failures) - 1
    raise DownloadError(
        url, reason + (f" (and {more} more failed)" if more else "") + "; rerun to resume"
    )
