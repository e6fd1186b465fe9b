"""Record3D exports: the "EXR + JPG" folder and the ``.r3d`` archive, as a canonical scene.

Layouts (``shared/reference/ios.md`` section 1):

* EXR + JPG: ``metadata.json``, ``rgb/<i>.jpg``, ``depth/<i>.exr`` (float32 metres).
* ``.r3d`` (a zip): ``metadata`` (JSON, no extension), ``rgbd/<i>.jpg``, ``rgbd/<i>.depth`` (LZFSE
  float32 metres, ``dw`` x ``dh``), ``rgbd/<i>.conf`` (LZFSE uint8 confidence 0/1/2).

Either may also be a folder of the unzipped archive, or a zip with one top-level folder.

Metadata: ``poses`` N x 7 ``[qx, qy, qz, qw, tx, ty, tz]`` (scalar-last quaternion), camera-to-world,
**OpenGL-style camera axes** (ARKit: +y up, looking down -z), converted to our OpenCV axes with
:func:`eyeful_tools.cameras.opencv_from_opengl_pose`. The world is ARKit's y-up one (Record3D zeroes
it at the first frame of the recording, so "up" is only as level as the phone was then). ``K`` is a
column-major 3x3 for the first frame; ``perFrameIntrinsicCoeffs`` (N x ``[fx, fy, cx, cy]``, newer
exports) wins where present; a ``K`` whose last row is not ``0 0 1`` (written row-major) is
refused. Poses, ``K`` and the stored JPEGs share the portrait image frame, so images are used as
stored and nothing is rotated; an image whose size is the transpose of the metadata's is refused
rather than guessed at. Pose ``i`` belongs to image ``<i>.jpg`` (``<i+1>.jpg`` in an export numbered from 1: no
image 0 and one numbered N for N poses), always by number: images whose
numbers skip (some were deleted) keep their own poses, and the frames that have both an image
and a pose are imported; the others are listed in the summary.
"""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from eyeful_tools import cameras
from eyeful_tools.archive import ArchiveLimits
from eyeful_tools.errors import InputFormatError, MissingFileError
from eyeful_tools.imageio import PHOTO_SUFFIXES
from eyeful_tools.ios_depth import CONF_LZFSE_U8, DEPTH_EXR_M, DEPTH_LZFSE_M, lzfse_available
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

#: Record3D's LiDAR depth size (portrait) for old files without ``dw``/``dh``
DEFAULT_DEPTH_SIZE_PX = (192, 256)
#: ARKit confidence: 0 low, 1 medium, 2 high; low-confidence depth is dropped
MIN_CONFIDENCE = 1


def world_from_cam_from_pose(pose: list[float] | np.ndarray) -> np.ndarray:
    """Record3D pose ``[qx, qy, qz, qw, tx, ty, tz]`` -> 4x4 ``world_from_cam``, OpenCV axes."""
    values = np.asarray(pose, dtype=np.float64)
    rotation = cameras.rotation_from_quaternion_xyzw(values[:4])
    return cameras.opencv_from_opengl_pose(np.column_stack([rotation, values[4:7]]))


def detect(source: Source) -> tuple[str, str] | None:
    """``("exr", prefix)`` or ``("r3d", prefix)`` when ``source`` looks like a Record3D export."""
    names = set(source.names())
    for name in sorted(names, key=lambda n: n.count("/")):
        path = PurePosixPath(name)
        if len(path.parts) > 2:
            break
        prefix = "" if len(path.parts) == 1 else f"{path.parts[0]}/"
        if path.name == "metadata.json" and any(n.startswith(f"{prefix}rgb/") for n in names):
            return "exr", prefix
        if path.name == "metadata" and any(n.startswith(f"{prefix}rgbd/") for n in names):
            return "r3d", prefix
    return None


def read_record3d(path: str | Path, limits: ArchiveLimits = ArchiveLimits()) -> PhoneExport:
    """Parse a Record3D export (folder, ``.r3d`` or zip) without writing anything."""
    return read_capture(path, _read, limits)


def _read(source: Source) -> PhoneExport:
    found = detect(source)
    if found is None:
        raise MissingFileError(
            source.path,
            "not a Record3D export (expected metadata.json + rgb/, or an .r3d with metadata + rgbd/)",
        )
    kind, prefix = found
    meta_name = f"{prefix}metadata.json" if kind == "exr" else f"{prefix}metadata"
    where = source.display(meta_name)
    meta = source.read_json_object(meta_name)
    image_dir = f"{prefix}rgb/" if kind == "exr" else f"{prefix}rgbd/"
    images, ignored = _numbered_images(source, image_dir)
    if not images:
        raise MissingFileError(source.display(image_dir), "no numbered images (0.jpg, 1.jpg, ...)")
    poses = _poses(meta, where)
    intrinsics = _intrinsics(meta, len(poses), where)
    size = _size(meta, where)
    notes = [f"ignored {len(ignored)} non-numbered images"] if ignored else []
    paired = _pair_with_poses(images, len(poses), where, image_dir.removeprefix(prefix), notes)
    depth_ok = True
    if kind == "r3d" and any(source.exists(f"{image_dir}{n}.depth") for n, _, _ in paired):
        depth_ok = lzfse_available()
        if not depth_ok:
            notes.append("depth skipped: install the optional 'lzfse' package to decode .r3d depth")
    no_depth_size = meta.get("dw") in (None, 0) or meta.get("dh") in (None, 0)  # old exports
    depth_size = DEFAULT_DEPTH_SIZE_PX if no_depth_size else _size(meta, where, ("dw", "dh"))
    frames = []
    for number, index, image in paired:
        if kind == "exr":
            depth = f"{prefix}depth/{number}.exr"
            depth_kind, confidence = DEPTH_EXR_M, None
        else:
            depth = f"{image_dir}{number}.depth"
            depth_kind, confidence = DEPTH_LZFSE_M, f"{image_dir}{number}.conf"
        frame = phone_frame(
            source,
            name=f"frame_{number:05d}",
            image=image,
            intrinsics=intrinsics[index],
            size_px=size,
            world_from_cam=world_from_cam_from_pose(poses[index]),
            depth=depth if depth_ok and source.exists(depth) else None,
            depth_kind=depth_kind,
            depth_size_px=depth_size if kind == "r3d" else None,
            confidence=confidence if confidence and source.exists(confidence) else None,
            confidence_kind=CONF_LZFSE_U8 if kind == "r3d" else None,
        )
        frames.append((image, frame))
    return phone_export("record3d", source, frames, notes, MIN_CONFIDENCE)


def _pair_with_poses(
    images: list[tuple[int, str]], count: int, where: str, image_dir: str, notes: list[str]
) -> list[tuple[int, int, str]]:
    """``(number, pose index, member)`` of the images that have a pose (pose ``i`` is image
    ``<i>.jpg``, or ``<i+1>.jpg`` in an export numbered from 1); the rest, and the poses
    without an image, are listed in ``notes``. Matching by order instead put every image after
    a gap on its neighbour's pose."""
    numbers = {number for number, _ in images}
    # numbered from 1: no image 0, and the last is numbered ``count`` (no pose in a 0-based one)
    first = 1 if 0 not in numbers and max(numbers) == count else 0
    if first:
        notes.append(f"images numbered from 1: image <i> has pose i-1 of {count}")
    paired = [(n, n - first, name) for n, name in images if first <= n < count + first]
    if not paired:
        raise InputFormatError(
            where, f"{count} poses but none of the images in {image_dir} is numbered below {count}"
        )
    unposed = [name.rsplit("/", 1)[-1] for n, name in images if not first <= n < count + first]
    if unposed:
        notes.append(skipped_note("images without a pose", unposed))
    posed = {index for _, index, _ in paired}
    without_image = [str(i + first) for i in range(count) if i not in posed]
    if without_image:
        notes.append(skipped_note("poses without an image", without_image))
    return paired


def _numbered_images(source: Source, image_dir: str) -> tuple[list[tuple[int, str]], list[str]]:
    """``(number, member)`` of ``<dir><int>.<jpg|png>``, sorted numerically; and what was ignored
    (Finder duplicates like ``3(1).jpg``, a second image of the same number)."""
    images, ignored = [], []
    seen: set[int] = set()
    for name in source.names():
        if not name.startswith(image_dir) or "/" in name[len(image_dir) :]:
            continue
        path = PurePosixPath(name)
        if path.suffix.lower() not in PHOTO_SUFFIXES:
            continue
        number = int(path.stem) if path.stem.isascii() and path.stem.isdigit() else None
        if number is not None and len(path.stem) <= 9 and number not in seen:
            images.append((number, name))
            seen.add(number)
        else:
            ignored.append(name)
    return sorted(images), ignored


def _numbers(value: Any, count: int, where: str, what: str) -> list[float]:
    if not isinstance(value, list) or len(value) != count:
        raise InputFormatError(where, f"{what}: expected {count} numbers")
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError) as error:
        raise InputFormatError(where, f"{what}: expected {count} numbers") from error
    if not all(math.isfinite(v) for v in numbers):
        raise InputFormatError(where, f"{what}: not finite")
    return numbers


def _poses(meta: dict[str, Any], where: str) -> list[list[float]]:
    if "poses" not in meta:
        raise InputFormatError(where, "missing 'poses' (the per-frame camera poses)")
    if not isinstance(meta["poses"], list):
        raise InputFormatError(where, "'poses' must be a list of [qx, qy, qz, qw, tx, ty, tz]")
    poses = []
    for i, pose in enumerate(meta["poses"]):
        values = _numbers(pose, 7, where, f"poses[{i}] ([qx, qy, qz, qw, tx, ty, tz])")
        if np.linalg.norm(values[:4]) < 1e-9:
            raise InputFormatError(where, f"poses[{i}]: zero quaternion")
        poses.append(values)
    return poses


def _intrinsics(
    meta: dict[str, Any], count: int, where: str
) -> list[tuple[float, float, float, float]]:
    """Per frame ``(fx, fy, cx, cy)``: ``perFrameIntrinsicCoeffs`` if present, else ``K``."""
    per_frame = meta.get("perFrameIntrinsicCoeffs")
    if per_frame is not None:
        if not isinstance(per_frame, list) or len(per_frame) != count:
            raise InputFormatError(
                where, f"perFrameIntrinsicCoeffs: expected {count} rows of [fx, fy, cx, cy]"
            )
        rows = [
            _numbers(r, 4, where, f"perFrameIntrinsicCoeffs[{i}]") for i, r in enumerate(per_frame)
        ]
        return [(r[0], r[1], r[2], r[3]) for r in rows]
    if "K" not in meta:
        raise InputFormatError(where, "missing 'K' (column-major 3x3 intrinsics)")
    k = cameras.matrix_from_column_major(_numbers(meta["K"], 9, where, "K"), 3)
    if not np.allclose(k[2], [0.0, 0.0, 1.0], atol=1e-9):
        raise InputFormatError(
            where,
            f"K: last row is {k[2, 0]:g} {k[2, 1]:g} {k[2, 2]:g}, not 0 0 1 (written row-major?"
            " Record3D writes it column-major)",
        )
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        raise InputFormatError(where, "K: focal lengths must be positive (is it column-major?)")
    return [(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]))] * count


def _size(
    meta: dict[str, Any], where: str, keys: tuple[str, str] = ("w", "h")
) -> tuple[int, int] | None:
    """``(w, h)`` of the stored RGB (or of the depth, ``keys=("dw", "dh")``), or None when the
    metadata does not say."""
    if meta.get(keys[0]) is None or meta.get(keys[1]) is None:
        return None
    try:
        width, height = int(meta[keys[0]]), int(meta[keys[1]])
    except (TypeError, ValueError, OverflowError) as error:
        raise InputFormatError(where, f"{keys[0]}/{keys[1]} must be integers") from error
    if width <= 0 or height <= 0:
        raise InputFormatError(where, f"bad {keys[0]}/{keys[1]} size {width}x{height}")
    return width, height


def import_record3d(
    path: str | Path,
    out_dir: str | Path,
    options: ImportOptions = ImportOptions(),
    progress: Progress | None = None,
) -> ImportReport:
    """Read a Record3D export and write a nerfstudio dataset into ``out_dir``."""
    capture = read_record3d(path, options.archive_limits)
    return import_capture(capture, out_dir, options, progress)
