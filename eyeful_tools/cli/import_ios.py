"""``eyeful import record3d|polycam|stray|nerfcapture``: iPhone/iPad captures into a nerfstudio
dataset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from eyeful_tools.archive import MIB, ArchiveLimits
from eyeful_tools.blur import parse_blur_filter
from eyeful_tools.cli._app import import_app, sfm_progress, stage_progress, summary
from eyeful_tools.ios_import import ImportOptions, ImportReport
from eyeful_tools.readers.nerfcapture import import_nerfcapture
from eyeful_tools.readers.polycam import import_polycam
from eyeful_tools.readers.record3d import import_record3d
from eyeful_tools.readers.stray import MIN_CONFIDENCE, import_stray

_OUT = typer.Option(
    ..., "--out", help="Dataset folder to create (images/, depth/, transforms.json)."
)
_MAX_FRAMES = typer.Option(
    None, "--max-frames", min=1, help="Keep at most N frames, evenly spread."
)
_BLUR = typer.Option(
    "none",
    "--blur-filter",
    help="Drop blurry frames: 'percentile:P' drops the blurriest P%, 'threshold:T' drops frames "
    "scoring below T (variance of the Laplacian, or Polycam's blur_score), 'none'.",
)
_LINK = typer.Option(False, "--link", help="Hard-link images from a source folder, not copy.")
_DEPTH = typer.Option(True, "--depth/--no-depth", help="Write depth/ as 16-bit PNG millimetres.")
_OVERWRITE = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder.")
_ROTATE = typer.Option(
    "auto",
    "--rotate",
    help="Turn images upright, with their intrinsics and poses: auto (the turn that puts "
    "gravity up, so nerfstudio's orientation step keeps it at +z), none, cw, ccw or 180.",
)

_MAX_MEMBER_MB = typer.Option(
    ArchiveLimits().max_member_bytes // MIB,
    "--max-member-mb",
    min=1,
    help="Refuse a zip member that unpacks to more than this many MiB.",
)
_MAX_RATIO = typer.Option(
    ArchiveLimits().max_ratio,
    "--max-ratio",
    min=1.0,
    help="Refuse a zip member over 1 MiB that unpacks to more than this many times its packed "
    "size (a zip bomb).",
)


def _limits(max_member_mb: int, max_ratio: float) -> ArchiveLimits:
    return ArchiveLimits(max_member_bytes=max_member_mb * MIB, max_ratio=max_ratio)


def _options(
    max_frames: int | None,
    blur_filter: str,
    link: bool,
    depth: bool,
    overwrite: bool,
    rotate: str,
    limits: ArchiveLimits,
    crop: int = 0,
) -> ImportOptions:
    return ImportOptions(
        archive_limits=limits,
        crop_border_px=crop,
        max_frames=max_frames,
        blur_filter=parse_blur_filter(blur_filter),
        link=link,
        depth=depth,
        overwrite=overwrite,
        rotate=rotate,
    )


def _run(importer: Callable[..., ImportReport], *args: Any, label: str = "", **kwargs: Any) -> None:
    """Run one importer under the shared progress bars and print its one-line summary."""
    with stage_progress() as progress:
        report = importer(*args, progress=progress, **kwargs)
    summary(f"{label}{report.one_line()}")


@import_app.command("record3d")
def record3d(
    source: Path = typer.Argument(..., help="EXR+JPG export folder, or an .r3d file."),
    out: Path = _OUT,
    max_frames: int | None = _MAX_FRAMES,
    blur_filter: str = _BLUR,
    link: bool = _LINK,
    depth: bool = _DEPTH,
    overwrite: bool = _OVERWRITE,
    rotate: str = _ROTATE,
    max_member_mb: int = _MAX_MEMBER_MB,
    max_ratio: float = _MAX_RATIO,
) -> None:
    """Import a Record3D export ("EXR + JPG" folder or ".r3d") with poses, intrinsics and depth.

    Example: eyeful import record3d scan.r3d --out data/scan --max-frames 300 --blur-filter percentile:10
    """
    limits = _limits(max_member_mb, max_ratio)
    options = _options(max_frames, blur_filter, link, depth, overwrite, rotate, limits)
    _run(import_record3d, source, out, options)


@import_app.command("polycam")
def polycam(
    source: Path = typer.Argument(..., help="Polycam raw-data export folder or its .zip."),
    out: Path = _OUT,
    max_frames: int | None = _MAX_FRAMES,
    blur_filter: str = _BLUR,
    link: bool = _LINK,
    depth: bool = _DEPTH,
    overwrite: bool = _OVERWRITE,
    rotate: str = _ROTATE,
    max_member_mb: int = _MAX_MEMBER_MB,
    max_ratio: float = _MAX_RATIO,
    raw: bool = typer.Option(
        False, "--raw", help="Use the raw ARKit cameras/images even when corrected ones exist."
    ),
    crop_border: int = typer.Option(
        0,
        "--crop-border",
        min=0,
        help="Cut PX pixels from every side (the black undistortion border; nerfstudio uses 15).",
    ),
) -> None:
    """Import a Polycam raw-data export (corrected cameras preferred), with depth when present.

    Example: eyeful import polycam polycam_export.zip --out data/room --blur-filter threshold:25
    """
    limits = _limits(max_member_mb, max_ratio)
    options = _options(max_frames, blur_filter, link, depth, overwrite, rotate, limits, crop_border)
    _run(import_polycam, source, out, options, use_raw=raw)


@import_app.command("stray")
def stray(
    source: Path = typer.Argument(
        ..., help="Stray Scanner export folder (rgb.mp4, odometry.csv, ...) or its .zip."
    ),
    out: Path = _OUT,
    max_frames: int | None = _MAX_FRAMES,
    blur_filter: str = _BLUR,
    depth: bool = _DEPTH,
    overwrite: bool = _OVERWRITE,
    rotate: str = _ROTATE,
    max_member_mb: int = _MAX_MEMBER_MB,
    max_ratio: float = _MAX_RATIO,
    min_confidence: int = typer.Option(
        MIN_CONFIDENCE,
        "--min-confidence",
        min=0,
        max=2,
        help="Keep depth where the LiDAR confidence is at least this (0 low, 1 medium, 2 high).",
    ),
) -> None:
    """Import a Stray Scanner export: frames from rgb.mp4, poses from odometry.csv, LiDAR depth.

    Example: eyeful import stray stray_scan/ --out data/desk --max-frames 300 --blur-filter percentile:10
    """
    limits = _limits(max_member_mb, max_ratio)
    options = _options(max_frames, blur_filter, False, depth, overwrite, rotate, limits)
    _run(import_stray, source, out, options, min_confidence=min_confidence)


@import_app.command("nerfcapture")
def nerfcapture(
    source: Path = typer.Argument(
        ...,
        help="NeRFCapture offline export (.zip or folder), or nerfcapture2nerf.py --save_path output.",
    ),
    out: Path = _OUT,
    max_frames: int | None = _MAX_FRAMES,
    blur_filter: str = _BLUR,
    link: bool = _LINK,
    depth: bool = _DEPTH,
    overwrite: bool = _OVERWRITE,
    rotate: str = _ROTATE,
    max_member_mb: int = _MAX_MEMBER_MB,
    max_ratio: float = _MAX_RATIO,
) -> None:
    """Import a NeRFCapture export (transforms.json with ARKit poses), with 16-bit depth when present.

    Example: eyeful import nerfcapture 240101120000.zip --out data/mug --rotate auto
    """
    limits = _limits(max_member_mb, max_ratio)
    options = _options(max_frames, blur_filter, link, depth, overwrite, rotate, limits)
    _run(import_nerfcapture, source, out, options)


@import_app.command("auto")
def auto(
    source: Path = typer.Argument(
        ..., help="A phone export (folder, .zip or .r3d), a video file, or a folder of photos."
    ),
    out: Path = _OUT,
    max_frames: int | None = _MAX_FRAMES,
    blur_filter: str = _BLUR,
    overwrite: bool = _OVERWRITE,
    rotate: str = _ROTATE,
    max_member_mb: int = _MAX_MEMBER_MB,
    max_ratio: float = _MAX_RATIO,
) -> None:
    """Detect what made SOURCE (Record3D, Polycam, Stray Scanner, NeRFCapture, a video or
    photos) and import it with that importer's defaults.

    Example: eyeful import auto ~/Downloads/scan.zip --out data/scan
    """
    from eyeful_tools.errors import UsageError
    from eyeful_tools.import_detect import ImportFormat, detect_format

    found = detect_format(source)
    if found is ImportFormat.NERFSTUDIO:
        raise UsageError(
            source, "already a nerfstudio dataset (transforms.json): train it as it is"
        )
    if found is ImportFormat.COLMAP:
        raise UsageError(
            source, "a COLMAP model: use 'eyeful import colmap MODEL --images IMAGE_DIR --out DIR'"
        )
    if found in (ImportFormat.VIDEO, ImportFormat.IMAGES):
        from eyeful_tools import sfm

        video = found is ImportFormat.VIDEO
        run: Callable[..., sfm.SfmReport] = sfm.import_video if video else sfm.import_images
        frames = max_frames or (sfm.DEFAULT_VIDEO_FRAMES if video else None)
        with sfm_progress() as progress:
            report = run(
                source,
                out,
                max_frames=frames,
                blur_filter=parse_blur_filter(blur_filter),
                progress=progress,
                overwrite=overwrite,
            )
        summary(f"import auto ({found.value}): {report.one_line()}")
        return
    limits = _limits(max_member_mb, max_ratio)
    options = _options(max_frames, blur_filter, False, True, overwrite, rotate, limits)
    importer = {
        ImportFormat.RECORD3D: import_record3d,
        ImportFormat.POLYCAM: import_polycam,
        ImportFormat.STRAY: import_stray,
        ImportFormat.NERFCAPTURE: import_nerfcapture,
    }[found]
    _run(importer, source, out, options, label=f"import auto ({found.value}): ")
