"""EyefulTower ``cameras.json`` ("KRT" format) -> canonical :class:`~eyeful_tools.cameras.Scene`.

Facts (``shared/reference/eyeful.md`` §5): one entry per image with ``cameraId`` (the image path
relative to a resolution folder, without extension), full-resolution ``width``/``height``, ``K``
(3x3, column-major, pixels, corner-origin: cx = W/2 + Metashape offset), ``T`` (4x4, column-major,
**world-to-camera**, OpenCV camera axes, y-up metric world), ``distortionModel`` and
``distortion``, ``frameId`` (rig position) and ``sensorId``.

Distortion orders, as Meta's ``metashape_to_krt.py`` writes them (p1/p2 already swapped into
OpenCV order there):

* ``RadialAndTangential``: ``[k1, k2, p1, p2, k3]`` -> OPENCV.
* ``Fisheye``: ``[k1, k2, k3, k4, t1, t2, p1, p2]`` -> OPENCV_FISHEYE (equidistant). We keep k4
  (nerfstudio's converter drops it); t1/t2 have no slot in any OpenCV model and are reported.

The frames come back full-resolution, in the capture's y-up world, with ``image_path`` set to the
``cameraId`` (no extension); :mod:`eyeful_tools.convert` matches them to files and rescales.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from eyeful_tools import catalog
from eyeful_tools.cameras import (
    Camera,
    CameraModel,
    Frame,
    Scene,
    WorldUp,
    default_fisheye_crop_radius_px,
    is_rotation,
    matrix_from_column_major,
)
from eyeful_tools.errors import InputFormatError
from eyeful_tools.fsio import read_json

log = logging.getLogger(__name__)


DISTORTION_MODELS = {
    "RadialAndTangential": CameraModel.OPENCV,
    "Fisheye": CameraModel.OPENCV_FISHEYE,
}


def catalog_capture(scene: Scene) -> catalog.Capture | None:
    """The EyefulTower capture a ``cameras.json`` is, recognised by what it holds (its cameras,
    rig positions and images against the catalog entry), never by its folder's name; None for
    any other capture (synthetic ones included), which the catalog's rules do not apply to."""
    camera_ids = {f.camera_id for f in scene.frames if f.camera_id is not None}
    positions = {f.rig_position_id for f in scene.frames if f.rig_position_id is not None}
    return catalog.recognise(camera_ids, len(positions), len(scene.frames))


def camera_folder(camera_id: str) -> str | None:
    """The camera (image folder) of an EyefulTower ``cameraId`` like ``"10/10_DSC0001"``."""
    return camera_id.split("/")[0] if "/" in camera_id else None


def read_krt(path: str | Path, crop_fraction: float | None = None) -> Scene:
    """Parse ``cameras.json``; full-resolution cameras, ``world_from_cam`` in the y-up world.

    The fisheye crop radius is ``crop_fraction`` of half the image size (nerfstudio's
    per-capture value, :attr:`catalog.Capture.fisheye_crop_fraction` of the capture
    :func:`catalog_capture` recognises), else the lens's own image circle from the calibration
    (:func:`~eyeful_tools.cameras.fisheye_image_circle_px`), not nerfstudio's blanket 0.45,
    which would throw away most of a full-circle fisheye. The scene is named after the catalog
    capture it is, if any. Errors name the file and the entry.
    """
    path = Path(path)
    data = read_json(path, "cameras.json")
    entries = data.get("KRT") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InputFormatError(path, 'expected {"KRT": [...]} with at least one camera')
    fraction = crop_fraction

    models = {str(e.get("distortionModel")) for e in entries if isinstance(e, dict)}
    if len(models) > 1:
        raise InputFormatError(
            path, f"mixed distortion models in one file ({', '.join(sorted(models))})"
        )
    frames: list[Frame] = []
    seen: set[str] = set()
    dropped_terms = 0
    for index, entry in enumerate(entries):
        frame, dropped = _frame(path, index, entry, fraction)
        if frame.image_path in seen:
            raise InputFormatError(path, f"entry {index}: duplicate cameraId {frame.image_path!r}")
        seen.add(frame.image_path)
        dropped_terms += dropped
        frames.append(frame)
    if dropped_terms:
        log.warning(
            "%s: %d fisheye entries have non-zero t1/t2 terms, which no OpenCV model holds "
            "(dropped)",
            path,
            dropped_terms,
        )
    scene = Scene(frames=tuple(frames), world_up=WorldUp.Y_UP)
    known = catalog_capture(scene)
    return scene if known is None else replace(scene, name=known.name)


def _frame(path: Path, index: int, entry: Any, fraction: float | None) -> tuple[Frame, int]:
    if not isinstance(entry, dict):
        raise InputFormatError(path, f"entry {index}: expected an object")
    camera_id = entry.get("cameraId")
    where = f"entry {index} ({camera_id})" if camera_id else f"entry {index}"

    def fail(reason: str) -> InputFormatError:
        return InputFormatError(path, f"{where}: {reason}")

    if not isinstance(camera_id, str) or not camera_id:
        raise fail("missing cameraId")
    for key in ("width", "height", "K", "T", "distortionModel"):
        if key not in entry:
            raise fail(f"missing {key}")
    try:
        width, height = int(entry["width"]), int(entry["height"])
        intrinsics = matrix_from_column_major(entry["K"], 3)
        cam_from_world = matrix_from_column_major(entry["T"], 4)
        distortion = [float(v) for v in entry.get("distortion") or []]
    except (TypeError, ValueError, OverflowError) as error:
        raise fail(f"bad number ({error})") from error
    if width <= 0 or height <= 0:
        raise fail(f"bad size {width}x{height}")
    if not (np.all(np.isfinite(intrinsics)) and np.all(np.isfinite(cam_from_world))):
        raise fail("K or T has a non-finite value")
    if not all(math.isfinite(v) for v in distortion):
        raise fail("distortion has a non-finite value")
    if not is_rotation(cam_from_world, atol=1e-5) or not np.allclose(
        cam_from_world[3], [0.0, 0.0, 0.0, 1.0]
    ):
        raise fail("T is not a rigid transform")
    if abs(intrinsics[0, 1]) > 1e-9 * abs(intrinsics[0, 0]):
        log.warning("%s: %s: skew K[0,1]=%g ignored", path, where, intrinsics[0, 1])

    model_name = str(entry["distortionModel"])
    model = DISTORTION_MODELS.get(model_name)
    if model is None:
        raise fail(
            f"unknown distortionModel {model_name!r} (supported: {', '.join(DISTORTION_MODELS)})"
        )
    coefficients, dropped = _distortion(model, distortion, fail)
    camera = Camera(
        model=model,
        width_px=width,
        height_px=height,
        fx=float(intrinsics[0, 0]),
        fy=float(intrinsics[1, 1]),
        cx=float(intrinsics[0, 2]),
        cy=float(intrinsics[1, 2]),
        distortion=coefficients,
    )
    if model is CameraModel.OPENCV_FISHEYE:
        camera = replace(
            camera, fisheye_crop_radius_px=default_fisheye_crop_radius_px(camera, fraction)
        )
    frame_id = _optional_whole_number(entry.get("frameId"), "frameId", fail)
    sensor_id = entry.get("sensorId")
    return (
        Frame(
            image_path=camera_id,
            camera=camera,
            # nerfstudio inverts with np.linalg.inv; so do we, to match it bit for bit
            world_from_cam=np.linalg.inv(cam_from_world),
            camera_id=camera_folder(camera_id) or (None if sensor_id is None else str(sensor_id)),
            rig_position_id=frame_id,
            sensor_id=None if sensor_id is None else str(sensor_id),
        ),
        dropped,
    )


def _distortion(
    model: CameraModel, values: list[float], fail: Callable[[str], InputFormatError]
) -> tuple[tuple[float, ...], int]:
    """KRT coefficient list -> ``(k1, k2, k3, k4, p1, p2)``; also 1 if terms were dropped."""
    if model is CameraModel.OPENCV:
        if len(values) not in (0, 4, 5):
            raise fail(f"RadialAndTangential needs 5 values [k1,k2,p1,p2,k3], got {len(values)}")
        k1, k2, p1, p2, k3 = (values + [0.0] * 5)[:5]
        return (k1, k2, k3, 0.0, p1, p2), 0
    if len(values) not in (0, 4, 8):
        raise fail(f"Fisheye needs 8 values [k1,k2,k3,k4,t1,t2,p1,p2], got {len(values)}")
    k1, k2, k3, k4, t1, t2, p1, p2 = (values + [0.0] * 8)[:8]
    return (k1, k2, k3, k4, p1, p2), int(t1 != 0.0 or t2 != 0.0)


def _optional_whole_number(
    value: Any, key: str, fail: Callable[[str], InputFormatError]
) -> int | None:
    """``frameId``-like ids: absent, an integer, or a string of digits (never a float cut
    short, a bool or a list, which used to end in a traceback or a wrong rig position)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = value.strip() if isinstance(value, str) else ""
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    raise fail(f"{key} must be a whole number, got {value!r}"[:200])
