"""Stray Scanner exports (a folder or its zip) as a canonical scene.

Layout (strayrobots/scanner ``docs/format.md``; ``shared/reference/ios.md`` section 3):
``rgb.mp4`` (the ARKit frames, landscape as the sensor delivers them), ``camera_matrix.csv``
(row-major 3x3 ``K`` for the video resolution), ``odometry.csv`` (header
``timestamp, frame, x, y, z, qx, qy, qz, qw``), ``depth/<frame:06d>.png`` (uint16 millimetres,
256x192), ``confidence/<frame:06d>.png`` (0 low, 1 medium, 2 high), ``imu.csv`` (unused).

Pose convention, verified in the app's source (strayrobots/scanner
``StrayScanner/Helpers/OdometryEncoder.swift``): each row is ARKit's ``camera.transform``
(camera-to-world, ARKit's gravity-aligned y-up world) with its rotation right-multiplied by
``q_AC`` = 180 degrees about x, i.e. the OpenGL-style ARKit camera turned into an **OpenCV**
camera (+y down, looking down +z); ``x, y, z`` is the camera centre. The quaternion is written
from simd's ``vector``, so the order is ``qx, qy, qz, qw`` (scalar last). A maintained consumer
agrees: kekeblom/StrayVisualizer ``stray_visualize.py`` builds ``T_WC`` from these columns and
hands ``inv(T_WC)`` as the extrinsic to Open3D's TSDF integration, whose pinhole model uses
OpenCV axes. So the pose is already our canonical ``world_from_cam``: no axis change here; the
writer's y-up -> z-up world change is the only one. ``camera_matrix.csv`` is written from
``camera.intrinsics.transpose.columns`` (``DatasetEncoder.swift``), i.e. rows of ``K``.

Frames come from the video: odometry row ``frame = k`` is video frame ``k`` (the app appends one
video frame per saved row), decoded in order with ``cv2.VideoCapture`` without applying any
rotation tag, so pixels stay in the frame ``K`` and the pose describe. Depth is kept where the
confidence is at least ``min_confidence`` (default 1: medium and high, as StrayVisualizer does).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from eyeful_tools.archive import ArchiveLimits
from eyeful_tools.cameras import rotation_from_quaternion_xyzw
from eyeful_tools.errors import InputFormatError, MissingFileError, UsageError
from eyeful_tools.imageio import open_video, video_frame_count
from eyeful_tools.ios_depth import CONF_PNG_U8, DEPTH_PNG_MM
from eyeful_tools.ios_import import (
    ImportOptions,
    ImportReport,
    PhoneExport,
    Progress,
    Source,
    import_capture,
    phone_export,
    phone_frame,
    read_capture,
)

#: ARKit confidence 0 low, 1 medium, 2 high; StrayVisualizer's default keeps >= 1
MIN_CONFIDENCE = 1
ODOMETRY_COLUMNS = ("frame", "x", "y", "z", "qx", "qy", "qz", "qw")
#: optional per-frame intrinsics columns some exports carry; they win over camera_matrix.csv
INTRINSICS_COLUMNS = ("fx", "fy", "cx", "cy")
JPEG_QUALITY = 95


@dataclass(frozen=True)
class OdometryRow:
    frame: int
    world_from_cam: np.ndarray  # [4, 4] OpenCV axes, ARKit y-up world
    intrinsics: tuple[float, float, float, float] | None  # per-frame (fx, fy, cx, cy) if given


def world_from_cam_from_odometry(values: list[float] | np.ndarray) -> np.ndarray:
    """``x, y, z, qx, qy, qz, qw`` -> 4x4 ``world_from_cam`` (already OpenCV camera axes)."""
    values = np.asarray(values, dtype=np.float64)
    world_from_cam = np.eye(4)
    world_from_cam[:3, :3] = rotation_from_quaternion_xyzw(values[3:7])
    world_from_cam[:3, 3] = values[:3]
    return world_from_cam


def find_prefix(source: Source) -> str | None:
    """``""`` or ``"<top folder>/"`` holding ``odometry.csv`` (a zipped folder), or None."""
    return source.top_prefix("odometry.csv")


# ---------------------------------------------------------------------------------------------
# The video, frame by frame.


class VideoFrames:
    """Frames of a video by index, decoded in order and re-opened for an earlier one (the
    import reads in increasing order, so each pass over the capture decodes the video once)."""

    def __init__(self, path: Path, where: str) -> None:
        self.path = path
        self.where = where
        self._capture: cv2.VideoCapture | None = None
        self._next = 0
        self._last: tuple[int, bytes] | None = None

    def _open(self) -> cv2.VideoCapture:
        # pixels as stored: K and the poses describe the sensor frame, not a display rotation
        return open_video(self.path, self.where, rotate=False)

    def count(self) -> int:
        """Frames in the video (the container's count, else counted by decoding)."""
        return video_frame_count(self.path, self.where)

    def frame(self, index: int) -> np.ndarray | None:
        """BGR [H, W, 3] uint8 of frame ``index``, or None when it cannot be decoded."""
        if self._capture is None or index < self._next:
            self.close()
            self._capture = self._open()
            self._next = 0
        while self._next < index:
            if not self._capture.grab():
                return None
            self._next += 1
        ok, pixels = self._capture.read()
        self._next += 1
        return pixels if ok else None

    def jpeg(self, index: int) -> bytes:
        """Frame ``index`` as JPEG bytes (quality 95); empty when it cannot be decoded, which
        the import reports as a corrupt image."""
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        pixels = self.frame(index)
        data = b""
        if pixels is not None:
            ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            data = encoded.tobytes() if ok else b""
        self._last = (index, data)
        return data

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


# ---------------------------------------------------------------------------------------------
# Reading.


def read_stray(
    path: str | Path,
    *,
    min_confidence: int = MIN_CONFIDENCE,
    limits: ArchiveLimits = ArchiveLimits(),
) -> PhoneExport:
    """Parse a Stray Scanner export (folder or zip) without writing anything."""
    if min_confidence not in (0, 1, 2):
        raise UsageError("--min-confidence", f"expected 0, 1 or 2, got {min_confidence}")
    return read_capture(path, lambda source: _read(source, min_confidence), limits)


def _read(source: Source, min_confidence: int) -> PhoneExport:
    prefix = find_prefix(source)
    if prefix is None:
        raise MissingFileError(
            source.display("odometry.csv"), "not a Stray Scanner export (no odometry.csv)"
        )
    for required in ("rgb.mp4", "camera_matrix.csv"):
        if not source.exists(prefix + required):
            raise MissingFileError(source.display(prefix + required), "file not found")
    k = read_camera_matrix(source, prefix + "camera_matrix.csv")
    rows = read_odometry(source, prefix + "odometry.csv")
    video_name = prefix + "rgb.mp4"
    video = _open_video(source, video_name)
    total = video.count()
    last = rows[-1].frame
    if total <= last:
        raise InputFormatError(
            source.display(video_name),
            f"has {total} frames but odometry.csv refers to frame {last} (frame count mismatch)",
        )
    first = video.frame(rows[0].frame)
    if first is None:
        raise InputFormatError(source.display(video_name), "cannot decode the video's frames")
    height, width = first.shape[:2]
    if not (0 < k[0, 2] < width and 0 < k[1, 2] < height):
        raise InputFormatError(
            source.display(prefix + "camera_matrix.csv"),
            f"principal point ({k[0, 2]:g}, {k[1, 2]:g}) lies outside the {width}x{height} video",
        )
    notes = []
    if total > len(rows):
        notes.append(f"{total - len(rows)} video frames without a pose ignored")
    frames = []
    depth_count = 0
    for row in rows:
        image = f"{video_name}/{row.frame:06d}.jpg"
        source.add_virtual(
            image,
            functools.partial(video.jpeg, row.frame),
            f"{source.display(video_name)} (frame {row.frame})",
        )
        depth = f"{prefix}depth/{row.frame:06d}.png"
        confidence = f"{prefix}confidence/{row.frame:06d}.png"
        has_depth = source.exists(depth)
        depth_count += has_depth
        intrinsics = row.intrinsics or (
            float(k[0, 0]),
            float(k[1, 1]),
            float(k[0, 2]),
            float(k[1, 2]),
        )
        frame = phone_frame(
            source,
            name=f"frame_{row.frame:06d}",
            image=image,
            intrinsics=intrinsics,
            size_px=(width, height),  # the video's own size: K is for the video resolution
            world_from_cam=row.world_from_cam,
            depth=depth if has_depth else None,
            depth_kind=DEPTH_PNG_MM,
            confidence=confidence if has_depth and source.exists(confidence) else None,
            confidence_kind=CONF_PNG_U8,
        )
        frames.append((image, frame))
    if depth_count and min_confidence > 0:
        notes.append(f"depth kept where confidence >= {min_confidence} (of 0/1/2)")
    if not depth_count:
        old = any(n.startswith(f"{prefix}depth/") and n.endswith(".npy") for n in source.names())
        notes.append(
            "depth skipped: depth/*.npy of older app versions is not read"
            if old
            else "no depth/ PNGs: imported without depth"
        )
    return phone_export("stray", source, frames, notes, min_confidence)


def _open_video(source: Source, name: str) -> VideoFrames:
    """The video on disk (copied out of a zip into a temporary file, removed on close)."""
    local = source.local_path(name)
    if local is None:
        handle, temp = tempfile.mkstemp(suffix=".mp4", prefix="eyeful-stray-")
        local = Path(temp)

        def remove() -> None:
            with contextlib.suppress(FileNotFoundError):
                local.unlink()

        source.call_on_close(remove)  # before the copy: a failed or interrupted copy is removed too
        with os.fdopen(handle, "wb") as out:
            source.copy_to(name, out)
    video = VideoFrames(local, source.display(name))
    source.call_on_close(video.close)
    return video


def _csv_rows(source: Source, name: str) -> list[tuple[int, list[str]]]:
    """(line number, stripped cells) of the non-blank lines of a CSV member."""
    try:
        text = source.read_bytes(name).decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputFormatError(source.display(name), f"not a text CSV ({error})") from error
    rows = []
    try:  # newline="": csv itself reads \r, \n and \r\n line ends (a bare \r raised)
        for number, cells in enumerate(csv.reader(io.StringIO(text, newline="")), 1):
            cells = [c.strip() for c in cells]
            if any(cells):
                rows.append((number, cells))
    except csv.Error as error:
        raise InputFormatError(source.display(name), f"not a valid CSV ({error})") from error
    return rows


def read_camera_matrix(source: Source, name: str) -> np.ndarray:
    """``camera_matrix.csv``: three rows of three numbers, row-major ``K``."""
    where = source.display(name)
    rows = _csv_rows(source, name)
    try:
        k = np.array([[float(v) for v in cells if v] for _, cells in rows], dtype=np.float64)
    except ValueError as error:
        raise InputFormatError(where, f"expected 3 rows of 3 numbers ({error})") from error
    if k.shape != (3, 3) or not np.all(np.isfinite(k)):
        raise InputFormatError(where, "expected 3 rows of 3 finite numbers (a 3x3 K)")
    if k[0, 0] <= 0 or k[1, 1] <= 0 or not np.allclose(k[2], [0, 0, 1], atol=1e-6):
        raise InputFormatError(
            where, "not an intrinsic matrix (positive fx, fy and a last row 0, 0, 1)"
        )
    return k


def read_odometry(source: Source, name: str) -> list[OdometryRow]:
    """``odometry.csv`` rows sorted by frame; a bad row is an error naming its line."""
    where = source.display(name)
    rows = _csv_rows(source, name)
    if not rows:
        raise InputFormatError(where, "empty (expected a header and one row per frame)")
    _, header = rows[0]
    columns = {c.lower(): i for i, c in enumerate(header)}
    missing = [c for c in ODOMETRY_COLUMNS if c not in columns]
    if missing:
        raise InputFormatError(
            where,
            f"header lacks {', '.join(missing)} (expected timestamp, frame, x, y, z, qx, qy, qz, qw)",
        )
    with_intrinsics = all(c in columns for c in INTRINSICS_COLUMNS)
    parsed: list[OdometryRow] = []
    seen: set[int] = set()
    for number, cells in rows[1:]:
        parsed.append(_odometry_row(cells, columns, with_intrinsics, where, f"line {number}"))
        if parsed[-1].frame in seen:
            raise InputFormatError(where, f"line {number}: frame {parsed[-1].frame} repeats")
        seen.add(parsed[-1].frame)
    if not parsed:
        raise InputFormatError(where, "no rows after the header")
    return sorted(parsed, key=lambda r: r.frame)


def _odometry_row(
    cells: list[str], columns: dict[str, int], with_intrinsics: bool, path: str, line: str
) -> OdometryRow:
    def number(column: str) -> float:
        index = columns[column]
        try:
            value = float(cells[index])
        except (IndexError, ValueError) as error:
            got = cells[index] if index < len(cells) else "nothing"
            raise InputFormatError(path, f"{line}: {column} is not a number ({got!r})") from error
        if not math.isfinite(value):
            raise InputFormatError(path, f"{line}: {column} is not finite")
        return value

    frame = number("frame")
    if frame < 0 or frame != int(frame):
        raise InputFormatError(path, f"{line}: frame must be a whole number >= 0, got {frame:g}")
    values = [number(c) for c in ODOMETRY_COLUMNS[1:]]
    if np.linalg.norm(values[3:]) < 1e-9:
        raise InputFormatError(path, f"{line}: zero quaternion")
    intrinsics = None
    if with_intrinsics and all(
        columns[c] < len(cells) and cells[columns[c]] for c in INTRINSICS_COLUMNS
    ):
        fx, fy, cx, cy = (number(c) for c in INTRINSICS_COLUMNS)
        if fx <= 0 or fy <= 0:
            raise InputFormatError(path, f"{line}: focal lengths must be positive")
        intrinsics = (fx, fy, cx, cy)
    return OdometryRow(int(frame), world_from_cam_from_odometry(values), intrinsics)


def import_stray(
    path: str | Path,
    out_dir: str | Path,
    options: ImportOptions = ImportOptions(),
    progress: Progress | None = None,
    *,
    min_confidence: int = MIN_CONFIDENCE,
) -> ImportReport:
    """Read a Stray Scanner export and write a nerfstudio dataset into ``out_dir``."""
    capture = read_stray(path, min_confidence=min_confidence, limits=options.archive_limits)
    return import_capture(capture, out_dir, options, progress)
