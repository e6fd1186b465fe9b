"""NeRFCapture exports (a folder or its zip) as a canonical scene.

Two producers write the same instant-ngp-style layout (``shared/reference/ios.md`` section 3):

* the app's **offline** mode (jc211/NeRFCapture ``NeRFCapture/DatasetWriter.swift``): a zip of
  ``<project>/transforms.json`` + ``images/<n>.png``; ``file_path`` has **no extension**
  (``images/0``); top-level ``w h fl_x fl_y cx cy depth_integer_scale depth_source`` and per
  frame ``file_path depth_path transform_matrix timestamp fl_x fl_y cx cy w h``
  (Swift ``convertToSnakeCase``). Its ``<n>.depth.png`` goes through ``UIImage`` and comes out
  8-bit RGBA, not depth (NeRFCapture issue 17): such depth is detected and skipped with a note.
* instant-ngp ``scripts/nerfcapture2nerf.py --save_path`` (the DDS stream saved to disk): same
  layout, ``integer_depth_scale`` (metres per unit, ``depth_scale / 65535``) and
  ``images/<n>.depth.png`` as 16-bit depth already at the image size.

``transform_matrix`` is ARKit's ``camera.transform`` written **row by row**: the app's
``arrayFromTransform`` (``Utils.swift``) puts ``columns.j[i]`` at ``[i][j]`` of the simd
column-major matrix, and the instant-ngp script transposes the column-major DDS array the same
way. It is camera-to-world with **OpenGL-style camera axes** in ARKit's gravity-aligned y-up
world, turned into our OpenCV axes with :func:`eyeful_tools.cameras.opencv_from_opengl_pose`.
Intrinsics: per-frame values win (the top level holds the first frame's), the top level fills
what a frame lacks; ``fl_x/fl_y/cx/cy`` come from simd ``intrinsics[0,0], [1,1], [2,0], [2,1]``
(column-major, so ``cx`` is ``[2][0]``), for the stored landscape image. Real 16-bit depth is
``value * scale`` metres with ``scale`` = ``integer_depth_scale`` or ``depth_integer_scale``
(instant-ngp's meaning), converted to millimetres.
"""

from __future__ import annotations

import math
import posixpath
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from eyeful_tools import cameras
from eyeful_tools.archive import ArchiveLimits, DamagedMemberError
from eyeful_tools.cameras import Frame
from eyeful_tools.errors import InputFormatError, MissingFileError
from eyeful_tools.imageio import JPEG_SUFFIXES
from eyeful_tools.ios_depth import DEPTH_PNG_SCALED
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

#: what an extension-less ``file_path`` may be (instant-ngp tries more; the app writes png)
_GUESSED = (".png", *JPEG_SUFFIXES)
_TRIED_SUFFIXES = (*_GUESSED, *(suffix.upper() for suffix in _GUESSED))
DEPTH_SCALE_KEYS = ("integer_depth_scale", "depth_integer_scale")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPES = {0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}


def find_prefix(source: Source) -> str | None:
    """``""`` or ``"<project folder>/"`` holding ``transforms.json`` (the app zips the folder)."""
    return source.top_prefix("transforms.json")


def world_from_cam_from_transform(matrix: np.ndarray) -> np.ndarray:
    """Row-major ARKit c2w (OpenGL camera axes) -> 4x4 ``world_from_cam``, OpenCV axes."""
    return cameras.opencv_from_opengl_pose(np.asarray(matrix, dtype=np.float64)[:3, :4])


def png_format(data: bytes) -> tuple[int, str] | None:
    """(bit depth, colour type name) from a PNG header, or None when it is not a PNG."""
    if len(data) < 26 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    return data[24], _PNG_COLOUR_TYPES.get(data[25], f"colour type {data[25]}")


def read_nerfcapture(path: str | Path, limits: ArchiveLimits = ArchiveLimits()) -> PhoneExport:
    """Parse a NeRFCapture (or ``nerfcapture2nerf.py``) export without writing anything."""
    return read_capture(path, _read, limits)


def _read(source: Source) -> PhoneExport:
    prefix = find_prefix(source)
    if prefix is None:
        raise MissingFileError(
            source.display("transforms.json"), "not a NeRFCapture export (no transforms.json)"
        )
    manifest_name = prefix + "transforms.json"
    where = source.display(manifest_name)
    manifest = source.read_json_object(manifest_name)
    items = manifest.get("frames")
    if not isinstance(items, list) or not items:
        raise InputFormatError(where, "'frames' must be a non-empty list")
    scale = _depth_scale(manifest, where)
    frames: list[tuple[str, Frame | None]] = []
    depth_members: list[str | None] = []
    for index, item in enumerate(items):
        what = f"frames[{index}]"
        if not isinstance(item, dict):
            raise InputFormatError(where, f"{what}: expected an object")
        image = _resolve_image(source, prefix, item.get("file_path"), where, what)
        depth = item.get("depth_path")
        depth_members.append(_member(prefix, depth) if isinstance(depth, str) and depth else None)
        frame = phone_frame(
            source,
            name=f"frame_{index:05d}",
            image=image,
            intrinsics=_intrinsics(item, manifest, where, what),
            size_px=_size(item, manifest, where, what),
            world_from_cam=_pose(item.get("transform_matrix"), where, what),
        )
        frames.append((image, frame))
    notes: list[str] = []
    depth_ok = _check_depth(source, prefix, depth_members, scale, notes)
    if depth_ok and scale is not None:  # _check_depth says why not in the notes
        frames = [
            (image, _with_depth(source, frame, member, scale) if member and frame else frame)
            for (image, frame), member in zip(frames, depth_members, strict=True)
        ]
    return phone_export("nerfcapture", source, frames, notes)


def _member(prefix: str, file_path: str) -> str:
    """A ``file_path`` (maybe ``./``-prefixed) as a member name of the source."""
    return prefix + posixpath.normpath(file_path.replace("\\", "/")).lstrip("/")


def _resolve_image(source: Source, prefix: str, file_path: Any, where: str, what: str) -> str:
    """The image member for ``file_path``; NeRFCapture leaves the extension off."""
    if not isinstance(file_path, str) or not file_path:
        raise InputFormatError(where, f"{what}: missing file_path")
    member = _member(prefix, file_path)
    if PurePosixPath(member).suffix in _TRIED_SUFFIXES and source.exists(member):
        return member
    for suffix in _TRIED_SUFFIXES:
        if source.exists(member + suffix):
            return member + suffix
    raise MissingFileError(
        source.display(member), f"{what}: no image {file_path!r} (tried .png, .jpg, .jpeg)"
    )


def _number(value: Any, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputFormatError(where, f"{what}: expected a finite number, got {value!r}")
    return float(value)


def _intrinsics(
    item: dict[str, Any], manifest: dict[str, Any], where: str, what: str
) -> tuple[float, float, float, float]:
    values = []
    for key in ("fl_x", "fl_y", "cx", "cy"):
        value = item.get(key, manifest.get(key))
        if value is None:
            raise InputFormatError(where, f"{what}: no {key} (per frame or at the top level)")
        values.append(_number(value, where, f"{what}.{key}"))
    if values[0] <= 0 or values[1] <= 0:
        raise InputFormatError(where, f"{what}: focal lengths must be positive")
    return values[0], values[1], values[2], values[3]


def _size(
    item: dict[str, Any], manifest: dict[str, Any], where: str, what: str
) -> tuple[int, int] | None:
    """``(w, h)`` the intrinsics belong to, or None (0 or absent) to take the image's."""
    width, height = item.get("w", manifest.get("w")), item.get("h", manifest.get("h"))
    if width is None or height is None:
        return None
    width, height = _number(width, where, f"{what}.w"), _number(height, where, f"{what}.h")
    return (int(width), int(height)) if width > 0 and height > 0 else None


def _pose(value: Any, where: str, what: str) -> np.ndarray:
    try:
        matrix = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputFormatError(where, f"{what}: transform_matrix is not numbers") from error
    if matrix.shape not in ((4, 4), (3, 4)) or not np.all(np.isfinite(matrix)):
        raise InputFormatError(
            where, f"{what}: transform_matrix must be 4x4 finite numbers (rows), got {value!r}"
        )
    if matrix.shape == (4, 4) and not np.allclose(matrix[3], [0, 0, 0, 1], atol=1e-6):
        raise InputFormatError(
            where, f"{what}: transform_matrix's last row is not 0 0 0 1 (written column-major?)"
        )
    world_from_cam = world_from_cam_from_transform(matrix)
    if not cameras.is_rotation(world_from_cam, atol=1e-4):
        raise InputFormatError(where, f"{what}: transform_matrix is not a rotation + translation")
    return world_from_cam


def _depth_scale(manifest: dict[str, Any], where: str) -> float | None:
    """Metres per depth unit: instant-ngp's ``integer_depth_scale``, else the app's key."""
    for key in DEPTH_SCALE_KEYS:
        if manifest.get(key) is not None:
            scale = _number(manifest[key], where, key)
            if scale <= 0:
                raise InputFormatError(where, f"{key} must be positive, got {scale:g}")
            return scale
    return None


def _check_depth(
    source: Source, prefix: str, members: list[str | None], scale: float | None, notes: list[str]
) -> bool:
    """Whether the listed depth is real 16-bit depth; says why not in ``notes``."""
    listed = [m for m in members if m]
    present = [m for m in listed if source.exists(m)]
    if not listed:
        return False
    if not present:
        notes.append(f"depth skipped: none of the {len(listed)} depth files is in the export")
        return False
    if len(present) < len(listed):
        notes.append(f"{len(listed) - len(present)} depth files missing")
    first = _first_readable(source, present)
    if first is None:
        notes.append("depth skipped: every depth file is a damaged archive member")
        return False
    name, header = first[0].removeprefix(prefix), png_format(first[1][:26])
    if header is None:
        notes.append(f"depth skipped: {name} is not a PNG")
        return False
    bits, colour = header
    if (bits, colour) != (16, "grey"):
        notes.append(
            f"depth skipped: {name} is {bits}-bit {colour}, not 16-bit depth"
            " (NeRFCapture's offline export, NeRFCapture #17)"
        )
        return False
    if scale is None:
        notes.append(f"depth skipped: no {' or '.join(DEPTH_SCALE_KEYS)} to give its units")
        return False
    return True


def _first_readable(source: Source, members: list[str]) -> tuple[str, bytes] | None:
    """The first member (and its bytes) that is not a damaged archive member; a damaged one
    loses only its own frame's depth, later, as in a folder."""
    for member in members:
        try:
            return member, source.read_bytes(member)
        except DamagedMemberError:
            continue
    return None


def _with_depth(source: Source, frame: Frame, member: str, scale: float) -> Frame:
    """``frame`` with its 16-bit depth map, ``scale`` metres a unit (converted when read)."""
    if not source.exists(member):
        return frame
    extras = {**frame.extras, "depth_kind": DEPTH_PNG_SCALED, "depth_scale_m": scale}
    return frame.with_(depth_path=member, extras=extras)


def import_nerfcapture(
    path: str | Path,
    out_dir: str | Path,
    options: ImportOptions = ImportOptions(),
    progress: Progress | None = None,
) -> ImportReport:
    """Read a NeRFCapture export and write a nerfstudio dataset into ``out_dir``."""
    capture = read_nerfcapture(path, options.archive_limits)
    return import_capture(capture, out_dir, options, progress)
