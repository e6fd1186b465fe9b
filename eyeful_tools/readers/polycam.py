"""Polycam "Raw Data" exports (a folder or its zip) as a canonical scene.

Layout (``shared/reference/ios.md`` section 2): ``keyframes/{images, cameras, corrected_images,
corrected_cameras, depth, confidence}/<timestamp>.*``, at the archive root or under one top-level
folder (the layout changed around app 3.4.7). The corrected (loop-closed, undistorted) pair is
used when both folders exist, unless ``use_raw``; otherwise the raw ARKit pair.

Camera JSON: ``fx fy cx cy`` (pixels), ``width height`` (dropped by recent app versions: then taken
from ``cameras/<ts>.json`` or the image itself), ``t_00 .. t_23`` = row-major 3x4 camera-to-world
with **OpenGL-style camera axes** (ARKit) in ARKit's gravity-aligned y-up world, converted to our
OpenCV axes with :func:`eyeful_tools.cameras.opencv_from_opengl_pose`; the writer's y-up -> z-up
rotation then equals nerfstudio's Polycam row permutation. ``blur_score`` (lower = blurrier) is
kept as the app's sharpness score. Depth: 16-bit PNG millimetres at LiDAR resolution;
confidence 0/127/255, low-confidence (0) pixels are dropped. ``depth/`` is optional.
"""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath
from typing import Any, TypeGuard

import numpy as np

from eyeful_tools import cameras
from eyeful_tools.archive import ArchiveLimits
from eyeful_tools.errors import InputFormatError, MissingFileError
from eyeful_tools.imageio import PHOTO_SUFFIXES
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
    skipped_note,
)

#: Polycam confidence: 0 low, 127 medium, 255 high; the README advises dropping low
MIN_CONFIDENCE = 127
POSE_KEYS = tuple(f"t_{row}{col}" for row in range(3) for col in range(4))


def world_from_cam_from_camera_json(values: dict[str, Any]) -> np.ndarray:
    """``t_00 .. t_23`` (row-major 3x4 c2w, OpenGL camera axes) -> 4x4 ``world_from_cam``, OpenCV."""
    rows = np.array([float(values[k]) for k in POSE_KEYS]).reshape(3, 4)
    return cameras.opencv_from_opengl_pose(rows)


def find_keyframes(source: Source) -> str | None:
    """The prefix of ``keyframes/`` (``""`` or ``"<top folder>/"``), or None."""
    for name in source.names():
        parts = PurePosixPath(name).parts
        for depth in (0, 1):
            if len(parts) > depth + 2 and parts[depth] == "keyframes":
                return "".join(f"{p}/" for p in parts[:depth])
    return None


def read_polycam(
    path: str | Path, *, use_raw: bool = False, limits: ArchiveLimits = ArchiveLimits()
) -> PhoneExport:
    """Parse a Polycam raw-data export (folder or zip) without writing anything."""
    return read_capture(path, lambda source: _read(source, use_raw), limits)


def _files(source: Source, folder: str) -> dict[str, str]:
    """``stem -> member`` of the files directly in ``folder``."""
    found = {}
    for name in source.names():
        if name.startswith(folder) and "/" not in name[len(folder) :]:
            found[PurePosixPath(name).stem] = name
    return found


def _read(source: Source, use_raw: bool) -> PhoneExport:
    prefix = find_keyframes(source)
    if prefix is None:
        raise MissingFileError(source.path, "not a Polycam raw-data export (no keyframes/ folder)")
    base = f"{prefix}keyframes/"
    notes: list[str] = []
    corrected = _files(source, f"{base}corrected_cameras/") and _files(
        source, f"{base}corrected_images/"
    )
    kind = "corrected_" if corrected and not use_raw else ""
    if not corrected and not use_raw:
        notes.append("no corrected_cameras/corrected_images: used raw ARKit poses")
    camera_files = _files(source, f"{base}{kind}cameras/")
    image_files = {
        stem: name
        for stem, name in _files(source, f"{base}{kind}images/").items()
        if PurePosixPath(name).suffix.lower() in PHOTO_SUFFIXES
    }
    raw_cameras = _files(source, f"{base}cameras/")
    depth_files = _files(source, f"{base}depth/")
    confidence_files = _files(source, f"{base}confidence/")
    if not camera_files:
        raise MissingFileError(source.display(f"{base}{kind}cameras/"), "no camera files")
    without_image = sorted(set(camera_files) - set(image_files))
    without_camera = sorted(set(image_files) - set(camera_files))
    if without_image:
        notes.append(skipped_note("cameras without an image", without_image))
    if without_camera:
        notes.append(skipped_note("images without a camera", without_camera))
    stems = sorted(set(camera_files) & set(image_files), key=lambda s: (len(s), s))
    if not stems:
        raise MissingFileError(
            source.display(f"{base}{kind}images/"), "no image matches a camera file by name"
        )
    frames = []
    for stem in stems:
        values = _load_camera(source, camera_files[stem])
        size = _size(values)
        if size is None and stem in raw_cameras and kind:
            size = _size(_load_camera(source, raw_cameras[stem]))
        score = values.get("blur_score")
        frame = phone_frame(
            source,
            name=stem,
            image=image_files[stem],
            intrinsics=(
                float(values["fx"]),
                float(values["fy"]),
                float(values["cx"]),
                float(values["cy"]),
            ),
            size_px=size,
            world_from_cam=world_from_cam_from_camera_json(values),
            depth=depth_files.get(stem),
            depth_kind=DEPTH_PNG_MM,
            confidence=confidence_files.get(stem),
            confidence_kind=CONF_PNG_U8,
            app_score=float(score) if _is_number(score) else None,
        )
        frames.append((image_files[stem], frame))
    if not depth_files:
        notes.append("no depth/ folder: imported without depth")
    return phone_export("polycam", source, frames, notes, MIN_CONFIDENCE)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _load_camera(source: Source, name: str) -> dict[str, Any]:
    where = source.display(name)
    values = source.read_json_object(name)
    missing = [k for k in ("fx", "fy", "cx", "cy", *POSE_KEYS) if k not in values]
    if missing:
        raise InputFormatError(where, f"missing {', '.join(missing)}")
    bad = [k for k in ("fx", "fy", "cx", "cy", *POSE_KEYS) if not _is_number(values[k])]
    if bad:
        raise InputFormatError(where, f"not a finite number: {', '.join(bad)}")
    if values["fx"] <= 0 or values["fy"] <= 0:
        raise InputFormatError(where, "focal lengths must be positive")
    if not cameras.is_rotation(world_from_cam_from_camera_json(values), atol=1e-4):
        raise InputFormatError(where, "t_00..t_22 is not a rotation")
    return values


def _size(values: dict[str, Any]) -> tuple[int, int] | None:
    width, height = values.get("width"), values.get("height")
    if _is_number(width) and _is_number(height) and width > 0 and height > 0:
        return int(width), int(height)
    return None


def import_polycam(
    path: str | Path,
    out_dir: str | Path,
    options: ImportOptions = ImportOptions(),
    progress: Progress | None = None,
    *,
    use_raw: bool = False,
) -> ImportReport:
    """Read a Polycam raw-data export and write a nerfstudio dataset into ``out_dir``."""
    capture = read_polycam(path, use_raw=use_raw, limits=options.archive_limits)
    return import_capture(capture, out_dir, options, progress)
