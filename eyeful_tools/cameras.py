"""The canonical camera model, and the only module that knows axis conventions.

Internal conventions (every reader produces these, every writer consumes them):

* **Camera axes: OpenCV** (+x right, +y down, +z forward). ``Frame.world_from_cam`` is a 4x4
  float64 rigid transform mapping points in camera coordinates to world coordinates.
* **World**: whatever the source uses, tagged by ``Scene.world_up``; writers convert to the output
  world (z-up, metres) through :func:`output_world_from_source`.
* **Pixels**: continuous image coordinates with the origin at the top-left *corner* of the
  top-left pixel, so the centre of pixel (row i, column j) is (j + 0.5, i + 0.5). This is
  nerfstudio's convention and the one EyefulTower's ``K`` (cx = W/2 + offset) uses, which is why
  intrinsics rescale by plain multiplication.
* **Matrices** are row-major numpy arrays; :func:`matrix_from_column_major` reads the
  column-major ones (EyefulTower ``K`` and ``T``).

Distortion follows nerfstudio's ``[k1, k2, k3, k4, p1, p2]`` order for both models. For a
2D point ``q`` in the undistorted plane (pinhole: ``(X/Z, Y/Z)``; fisheye:
``theta * (X, Y)/|(X, Y)|``
with ``theta`` the angle from the optical axis, i.e. equidistant), the distorted point is
``q * (1 + k1 r2 + k2 r2^2 + k3 r2^3 + k4 r2^4) + tangential(p1, p2)`` with ``r2 = |q|^2``;
pixels are ``(fx * qd_x + cx, fy * qd_y + cy)``. With p1 = p2 = 0 the fisheye case is exactly
OpenCV's ``cv2.fisheye`` model; with k4 = 0 the pinhole case is OpenCV's Brown model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

# ---------------------------------------------------------------------------------------------
# Camera models: one table, every lookup derived from it.


class CameraModel(str, Enum):
    """Projection + distortion model; the value is nerfstudio's ``camera_model`` string."""

    PINHOLE = "PINHOLE"
    OPENCV = "OPENCV"
    OPENCV_FISHEYE = "OPENCV_FISHEYE"
    #: nerfstudio's: longitude ``pi (u - cx) / fx``, polar angle from up ``pi/2 + pi (v - cy) / fy``
    #: (``fx = W / 2``, ``fy = H`` for the full sphere); rendering only, training refuses it
    EQUIRECTANGULAR = "EQUIRECTANGULAR"


@dataclass(frozen=True)
class CameraModelSpec:
    """What a camera model is. (COLMAP's model names depend on which coefficients are non-zero,
    so that mapping lives with the COLMAP interop, :mod:`eyeful_tools.colmap_io.models`.)"""

    model: CameraModel
    is_fisheye: bool
    #: whether the model has distortion (a PINHOLE camera has none: :func:`model_for`)
    is_distorted: bool


CAMERA_MODELS: dict[CameraModel, CameraModelSpec] = {
    spec.model: spec
    for spec in (
        CameraModelSpec(CameraModel.PINHOLE, is_fisheye=False, is_distorted=False),
        CameraModelSpec(CameraModel.OPENCV, is_fisheye=False, is_distorted=True),
        CameraModelSpec(CameraModel.OPENCV_FISHEYE, is_fisheye=True, is_distorted=True),
        CameraModelSpec(CameraModel.EQUIRECTANGULAR, is_fisheye=False, is_distorted=False),
    )
}

DISTORTION_NAMES: tuple[str, ...] = ("k1", "k2", "k3", "k4", "p1", "p2")
NO_DISTORTION: tuple[float, ...] = (0.0,) * 6


class StereoRig(str, Enum):
    """How a stereo panorama's eyes sit (nerfstudio 1.1.5's ``VR180_L/R`` and
    ``OMNIDIRECTIONALSTEREO_L/R``)."""

    #: both eyes at a fixed +-IPD/2 along the camera's x axis
    VR180 = "vr180"
    #: omnidirectional stereo: each column's eye on a circle of radius IPD/2, perpendicular to
    #: that column's horizontal direction, so every viewing direction has its own baseline
    ODS = "ods"


@dataclass(frozen=True)
class StereoEye:
    """One eye of a stereo rig. ``side``: -1 left, +1 right; ``ipd`` in world units."""

    rig: StereoRig
    side: int
    ipd: float

    def __post_init__(self) -> None:
        if self.side not in (-1, 1) or not (math.isfinite(self.ipd) and self.ipd >= 0):
            raise ValueError(f"a stereo eye needs side -1 or +1 and ipd >= 0, got {self}")


@dataclass(frozen=True, kw_only=True)
class Camera:
    """Intrinsics of one image, at the size of the image on disk.

    ``distortion`` is ``(k1, k2, k3, k4, p1, p2)`` (nerfstudio's order). ``fisheye_crop_radius_px``
    is the radius of the valid image circle around the principal point (fisheye only).
    """

    model: CameraModel
    width_px: int
    height_px: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion: tuple[float, ...] = NO_DISTORTION
    fisheye_crop_radius_px: float | None = None
    #: one eye of a stereo panorama (VR180, ODS): ray origins leave the pose's centre
    eye: StereoEye | None = None

    def __post_init__(self) -> None:
        if len(self.distortion) != 6:
            raise ValueError(
                f"distortion needs 6 values (k1 k2 k3 k4 p1 p2), got {self.distortion}"
            )
        distortion = tuple(float(v) for v in self.distortion)
        object.__setattr__(self, "model", model_for(CameraModel(self.model), distortion))
        object.__setattr__(self, "distortion", distortion)

    @property
    def spec(self) -> CameraModelSpec:
        return CAMERA_MODELS[self.model]

    @property
    def is_fisheye(self) -> bool:
        return self.spec.is_fisheye

    def distortion_dict(self) -> dict[str, float]:
        return dict(zip(DISTORTION_NAMES, self.distortion, strict=True))

    def intrinsic_matrix(self) -> np.ndarray:
        """3x3 K, row-major, corner-origin pixel coordinates."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


def model_for(model: CameraModel, distortion: Sequence[float]) -> CameraModel:
    """PINHOLE carries no distortion: a pinhole with non-zero coefficients is an OPENCV camera.

    nerfstudio applies ``k1..p2`` whatever ``camera_model`` says, so a PINHOLE written with its
    distortion and read back would move its pixels; as OPENCV it projects the same everywhere.
    """
    if model is CameraModel.PINHOLE and any(distortion):
        return CameraModel.OPENCV
    return model


def common_camera_model(models: Iterable[CameraModel]) -> CameraModel | None:
    """The one ``camera_model`` a set of cameras can be written under (transforms.json has a
    single one): a pinhole is an OPENCV camera with no distortion; None for a mix that has
    none (fisheye with pinhole)."""
    found = set(models)
    if found == {CameraModel.PINHOLE, CameraModel.OPENCV}:
        return CameraModel.OPENCV
    return found.pop() if len(found) == 1 else None


def rotation_angle_rad(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (radians) of the rotation between the 3x3 blocks of ``a`` and ``b``, [..., 3+, 3+]
    -> [...]. atan2 of the sine (skew part) and cosine (trace) stays accurate for tiny angles,
    where acos of the trace alone bottoms out near 1e-8."""
    a = np.asarray(a, dtype=np.float64)[..., :3, :3]
    b = np.asarray(b, dtype=np.float64)[..., :3, :3]
    relative = np.swapaxes(a, -1, -2) @ b
    skew = np.stack(
        [
            relative[..., 2, 1] - relative[..., 1, 2],
            relative[..., 0, 2] - relative[..., 2, 0],
            relative[..., 1, 0] - relative[..., 0, 1],
        ],
        axis=-1,
    )
    cosine = (np.trace(relative, axis1=-2, axis2=-1) - 1.0) / 2.0
    angle: np.ndarray = np.arctan2(0.5 * np.linalg.norm(skew, axis=-1), cosine)
    return angle


def rotation_from_quaternion_xyzw(quaternion: np.ndarray) -> np.ndarray:
    """3x3 rotation from a scalar-last quaternion ``[x, y, z, w]`` (normalised first): the
    order ARKit apps (Record3D, Stray Scanner) write."""
    x, y, z, w = np.asarray(quaternion, dtype=np.float64) / np.linalg.norm(quaternion)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def pose_from_quaternion_wxyz(
    wxyz: Sequence[float] | np.ndarray, position: np.ndarray
) -> np.ndarray:
    """4x4 ``world_from_cam`` from a scalar-first quaternion and a position (viser's camera,
    whose axes are OpenCV's: the browser camera is used as is, no axis flip)."""
    w, x, y, z = np.asarray(wxyz, dtype=np.float64)
    pose = np.eye(4)
    pose[:3, :3] = rotation_from_quaternion_xyzw(np.array([x, y, z, w]))
    pose[:3, 3] = np.asarray(position, dtype=np.float64)
    return pose


def natural_key(text: str) -> tuple[int, int, str]:
    """Sort key for camera and rig-position ids: numbers by value ("9" < "10"), then text."""
    return (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text)


def distortion_from_dict(values: Mapping[str, float | None]) -> tuple[float, ...]:
    """``(k1, k2, k3, k4, p1, p2)`` from named values; missing or ``None`` ones are zero."""
    return tuple(float(values.get(name) or 0.0) for name in DISTORTION_NAMES)


@dataclass(frozen=True, kw_only=True, eq=False)
class Frame:
    """One image: where it is, how it projects, and where the camera was.

    ``world_from_cam`` is 4x4, OpenCV camera axes, in the source world of the scene it belongs to
    (see :class:`Scene`). ``camera_id`` names the physical camera (EyefulTower folder ``"10"``,
    Metashape sensor), ``rig_position_id`` the rig position (EyefulTower ``frameId``), so all
    images taken together share it.
    """

    image_path: str
    camera: Camera
    world_from_cam: np.ndarray  # [4, 4] float64
    camera_id: str | None = None
    rig_position_id: int | None = None
    sensor_id: str | None = None
    mask_path: str | None = None
    depth_path: str | None = None
    color_space: str | None = None  # "srgb" (display-referred JPEG) or "linear" (HDR EXR)
    exposure: float | None = None
    #: what a reader knows beyond the canonical frame, for the pipeline that reads it (a phone
    #: frame's depth encoding and confidence map, the app's sharpness score); writers ignore it
    extras: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        matrix = np.array(self.world_from_cam, dtype=np.float64)
        if matrix.shape != (4, 4):
            raise ValueError(f"world_from_cam must be 4x4, got {matrix.shape}")
        matrix.setflags(write=False)
        object.__setattr__(self, "world_from_cam", matrix)

    def with_(self, **changes: Any) -> Frame:
        return replace(self, **changes)


class WorldUp(str, Enum):
    """The up axis of a source world; writers rotate it to the output z-up world."""

    Y_UP = "y_up"  # EyefulTower, Metashape chunks of EyefulTower, ARKit
    Z_UP = "z_up"  # already nerfstudio's convention
    COLMAP = "colmap"  # COLMAP's arbitrary world, mapped as nerfstudio's colmap converter does


@dataclass(frozen=True, kw_only=True, eq=False)
class Scene:
    """A set of frames in one source world, plus the split lists (file paths as written)."""

    frames: tuple[Frame, ...]
    world_up: WorldUp = WorldUp.Y_UP
    name: str | None = None
    splits: Mapping[str, Sequence[str]] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Named convention changes. Nothing outside this module flips or permutes axes.

#: OpenCV camera axes (x right, y down, z forward) <-> OpenGL (x right, y up, z back).
_FLIP_YZ = np.diag([1.0, -1.0, -1.0, 1.0])

#: EyefulTower / ARKit y-up world -> nerfstudio z-up world: new (x, y, z) = old (z, x, y).
#: The same row permutation ``[2, 0, 1]`` that nerfstudio's EyefulTower and Metashape converters
#: apply (a proper rotation, det +1).
_ZUP_FROM_YUP = np.array(
    [[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)

#: COLMAP world -> nerfstudio world, as nerfstudio's ``colmap_to_json`` (1.1.5) applies it:
#: rows ``[0, 2, 1]``, then row 2 negated (its ``applied_transform``). The dataparser's legacy
#: fallback for files without ``applied_transform`` is a different matrix; we always write ours.
_NS_FROM_COLMAP = np.array(
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)


#: what nerfstudio's dataparser (1.1.5) takes as ``applied_transform`` for a transforms.json
#: without one when ``<data>/colmap/sparse/0`` exists: the COLMAP conversion of ns-process-data
#: before the field was written
_NS_LEGACY_COLMAP_APPLIED = np.array(
    [[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)


def legacy_colmap_applied_transform() -> np.ndarray:
    """4x4 ``applied_transform`` nerfstudio assumes for old COLMAP-derived transforms.json."""
    return _NS_LEGACY_COLMAP_APPLIED.copy()


#: where ns-process-data (and ``eyeful import`` through SfM) keep the COLMAP model, relative to
#: the dataset folder that holds transforms.json
COLMAP_MODEL_IN_DATASET = Path("colmap") / "sparse" / "0"


def transforms_from_capture(
    applied_transform: Sequence[Sequence[float]] | np.ndarray | None, dataset_dir: Path
) -> np.ndarray:
    """4x4 capture world (COLMAP's, EyefulTower's, ...) -> transforms.json world, by nerfstudio
    1.1.5's dataparser rule: the file's ``applied_transform``; without one, the legacy COLMAP
    matrix when ``<dataset>/colmap/sparse/0`` exists; else the identity. The trainer passes
    ``--data`` as given, as nerfstudio does (so a transforms.json path never finds the folder,
    nerfstudio's quirk kept); the viewer passes the folder beside the file, where the points
    it draws from that model are."""
    out = np.eye(4)
    if applied_transform is not None:
        out[:3] = np.asarray(applied_transform, dtype=np.float64)[:3]
    elif (dataset_dir / COLMAP_MODEL_IN_DATASET).exists():
        out = legacy_colmap_applied_transform()
    return out


def _homogeneous(pose: np.ndarray) -> np.ndarray:
    """[..., 3, 4] or [..., 4, 4] -> [..., 4, 4] (the last row ``0 0 0 1`` added if missing)."""
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape[-2] == 4:
        return pose
    bottom = np.broadcast_to([0.0, 0.0, 0.0, 1.0], (*pose.shape[:-2], 1, 4))
    return np.concatenate([pose, bottom], axis=-2)


def opengl_from_opencv_pose(world_from_cam_opencv: np.ndarray) -> np.ndarray:
    """``world_from_cam`` with OpenCV camera axes -> the same pose with OpenGL axes.
    [..., 3 or 4, 4] -> [..., 4, 4]"""
    return _homogeneous(world_from_cam_opencv) @ _FLIP_YZ


def opencv_from_opengl_pose(world_from_cam_opengl: np.ndarray) -> np.ndarray:
    """Inverse of :func:`opengl_from_opencv_pose` (the flip is its own inverse): an app's
    camera-to-world (ARKit, nerfstudio), 3x4 or 4x4, to ours. [..., 3 or 4, 4] -> [..., 4, 4]"""
    return _homogeneous(world_from_cam_opengl) @ _FLIP_YZ


def zup_from_yup_world() -> np.ndarray:
    """4x4 rotation taking y-up world coordinates to z-up ones (nerfstudio's permutation)."""
    return _ZUP_FROM_YUP.copy()


def output_world_from_source(world_up: WorldUp) -> np.ndarray:
    """4x4 rotation from a source world to the output (z-up) world; recorded as
    ``applied_transform`` so users can map results back to the capture's own coordinates."""
    world_up = WorldUp(world_up)
    if world_up is WorldUp.Y_UP:
        return _ZUP_FROM_YUP.copy()
    if world_up is WorldUp.COLMAP:
        return _NS_FROM_COLMAP.copy()
    return np.eye(4)


def invert_rigid(a_from_b: np.ndarray) -> np.ndarray:
    """Exact inverse of a rigid (or similarity-free) 4x4 transform: ``b_from_a``. [..., 4, 4]"""
    a_from_b = np.asarray(a_from_b, dtype=np.float64)
    rotation = a_from_b[..., :3, :3]
    translation = a_from_b[..., :3, 3]
    inverse = np.zeros_like(a_from_b)
    rotation_t = np.swapaxes(rotation, -1, -2)
    inverse[..., :3, :3] = rotation_t
    inverse[..., :3, 3] = -np.einsum("...ij,...j->...i", rotation_t, translation)
    inverse[..., 3, 3] = 1.0
    return inverse


def pose_in_world(b_from_a: np.ndarray, a_from_cam: np.ndarray) -> np.ndarray:
    """A camera's pose in world ``a`` -> its pose in world ``b``, where ``b_from_a`` is a 4x4
    similarity (rotation times a uniform scale, then a translation, as the trainer's normalised
    world): the position is moved and scaled, the rotation stays orthonormal. [4, 4]"""
    b_from_a = np.asarray(b_from_a, dtype=np.float64)
    scale = float(np.cbrt(np.linalg.det(b_from_a[:3, :3])))
    pose = np.asarray(a_from_cam, dtype=np.float64)
    moved = np.eye(4)
    moved[:3, :3] = b_from_a[:3, :3] / scale @ pose[:3, :3]
    moved[:3, 3] = b_from_a[:3, :3] @ pose[:3, 3] + b_from_a[:3, 3]
    return moved


def cam_from_world(world_from_cam: np.ndarray) -> np.ndarray:
    """``cam_from_world`` (a world-to-camera "extrinsic") from ``world_from_cam``."""
    return invert_rigid(world_from_cam)


def world_from_cam(cam_from_world: np.ndarray) -> np.ndarray:
    """``world_from_cam`` (camera-to-world pose) from ``cam_from_world``."""
    return invert_rigid(cam_from_world)


def matrix_from_column_major(
    values: Sequence[Sequence[float]] | Sequence[float], n: int
) -> np.ndarray:
    """An n x n row-major matrix from column-major storage (nested lists or flat)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size != n * n:
        raise ValueError(f"expected {n * n} values, got {array.size}")
    return array.reshape(n, n).T.copy()


def column_major_from_matrix(matrix: np.ndarray) -> list[list[float]]:
    """Nested lists in column-major storage (the inverse of :func:`matrix_from_column_major`)."""
    rows: list[list[float]] = np.asarray(matrix, dtype=np.float64).T.tolist()
    return rows


def is_rotation(matrix: np.ndarray, atol: float = 1e-6) -> bool:
    """True for a proper rotation (orthonormal, det +1)."""
    r = np.asarray(matrix, dtype=np.float64)[:3, :3]
    return bool(np.allclose(r @ r.T, np.eye(3), atol=atol) and abs(np.linalg.det(r) - 1) < atol)


# ---------------------------------------------------------------------------------------------
# What a usable calibration is (every reader's output and every transforms.json is checked).

#: tolerance of the rigid-pose check, on ``|R R^T - I|`` and ``|det R - 1|`` (float32 phone
#: poses are off by ~1e-7; a scaled or sheared matrix by far more)
ROTATION_TOLERANCE = 1e-4
#: a camera farther from the world origin than this (in the file's units, metres) is a broken
#: pose, not a capture: float32 rays have no precision left there (ECEF's 6.4e6 m still pass)
MAX_POSITION = 1e7


def camera_problem(camera: Camera) -> str | None:
    """Why a camera cannot be right, or None: intrinsics that are not finite or not greater
    than zero, non-finite distortion, a crop radius that is not a positive number of pixels."""
    values = (
        ("focal length fx", camera.fx),
        ("focal length fy", camera.fy),
        ("principal point cx", camera.cx),
        ("principal point cy", camera.cy),
        ("width", camera.width_px),
        ("height", camera.height_px),
    )
    for name, value in values:
        if not (math.isfinite(value) and value > 0):
            return f"{name} is {value:g} (intrinsics must be finite and greater than zero)"
    for name, value in zip(DISTORTION_NAMES, camera.distortion, strict=True):
        if not math.isfinite(value):
            return f"distortion {name} is {value:g}"
    radius = camera.fisheye_crop_radius_px
    if radius is not None and not (math.isfinite(radius) and radius > 0):
        return f"fisheye_crop_radius is {radius:g} (must be a positive number of pixels)"
    return None


def is_fraction_radius(radius_px: float | None) -> bool:
    """A fisheye crop radius in (0, 1]: nerfstudio's (and ns-download-data's) fraction of the
    half-size, not pixels. A real pixel radius is tens of pixels at least; read as pixels, a
    fraction leaves about one pixel per image to train on."""
    return radius_px is not None and 0 < radius_px <= 1


def first_bad_pose(world_from_cam: np.ndarray) -> tuple[int, str] | None:
    """(index, why) of the first camera-to-world pose that is not a rigid transform, or None
    (``why`` reads after the pose's name: "rotation is not orthonormal ...").
    [N, 4, 4]; the rotation must be orthonormal with det +1 to :data:`ROTATION_TOLERANCE`, the
    bottom row ``0 0 0 1``, every value finite and the position within :data:`MAX_POSITION`."""
    poses = np.asarray(world_from_cam, dtype=np.float64).reshape(-1, 4, 4)
    with np.errstate(all="ignore"):
        finite = np.all(np.isfinite(poses), axis=(1, 2), keepdims=False).reshape(-1)  # [N]
        safe = np.where(finite[:, None, None], poses, 0.0)
        rotation = safe[:, :3, :3]
        gram = np.abs(rotation @ np.swapaxes(rotation, -1, -2) - np.eye(3)).max(axis=(1, 2))
        det = np.linalg.det(rotation)
        bottom = np.abs(safe[:, 3] - np.array([0.0, 0.0, 0.0, 1.0])).max(axis=1)
        position = np.abs(safe[:, :3, 3]).max(axis=1)
    bad = (
        ~finite
        | (gram > ROTATION_TOLERANCE)
        | (np.abs(det - 1.0) > ROTATION_TOLERANCE)
        | (bottom > ROTATION_TOLERANCE)
        | (position > MAX_POSITION)
    )
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    if not finite[i]:
        why = "has values that are not finite"
    elif gram[i] > ROTATION_TOLERANCE:
        why = f"rotation is not orthonormal (|R R^T - I| = {gram[i]:.2g} > {ROTATION_TOLERANCE:g})"
    elif abs(det[i] - 1.0) > ROTATION_TOLERANCE:
        why = f"rotation has determinant {det[i]:.6g}, not +1 (a reflection)"
    elif bottom[i] > ROTATION_TOLERANCE:
        why = f"bottom row is {poses[i, 3].tolist()}, not [0, 0, 0, 1]"
    else:
        why = f"camera position {position[i]:.3g} is beyond {MAX_POSITION:g} (units of the file)"
    return i, why


# ---------------------------------------------------------------------------------------------
# Intrinsics.


#: the intrinsics :func:`rescale_intrinsics` scales, and the axis each scales with ("r": the
#: mean of the two, for the fisheye crop radius)
INTRINSIC_AXES: dict[str, str] = {
    "fx": "x",
    "cx": "x",
    "fy": "y",
    "cy": "y",
    "fisheye_crop_radius_px": "r",
}


def rescale_intrinsics(
    values: Mapping[str, float], size_px: tuple[int, int], new_size_px: tuple[int, int]
) -> dict[str, float]:
    """Intrinsics (any of :data:`INTRINSIC_AXES`) of an image of ``size_px`` (w, h), at
    ``new_size_px``: the one place intrinsics are rescaled.

    x and y scale separately: EyefulTower's downscaled sizes are not exact fractions of the full
    size (1368/5784 vs 2048/8660), so a single scale would be off by up to a pixel at the
    border. With corner-origin pixel coordinates the principal point scales like the focal
    length. The fisheye crop radius scales with the mean of the two factors.
    """
    scale_x = new_size_px[0] / size_px[0]
    scale_y = new_size_px[1] / size_px[1]

    def scaled(name: str, value: float) -> float:
        axis = INTRINSIC_AXES[name]
        if axis == "r":
            return value * (scale_x + scale_y) / 2
        return value * (scale_x if axis == "x" else scale_y)

    return {name: scaled(name, value) for name, value in values.items()}


def rescale_camera(camera: Camera, width_px: int, height_px: int) -> Camera:
    """The same camera at another image size (:func:`rescale_intrinsics`)."""
    values = {name: getattr(camera, name) for name in INTRINSIC_AXES}
    values = {name: value for name, value in values.items() if value is not None}
    scaled = rescale_intrinsics(values, (camera.width_px, camera.height_px), (width_px, height_px))
    return replace(
        camera,
        width_px=int(width_px),
        height_px=int(height_px),
        fx=scaled["fx"],
        fy=scaled["fy"],
        cx=scaled["cx"],
        cy=scaled["cy"],
        fisheye_crop_radius_px=scaled.get("fisheye_crop_radius_px"),
    )


#: ``cam_new_from_cam_old`` (OpenCV axes) for an image turned a quarter turn counter-clockwise
#: (``np.rot90(image, 1)``): new x = old y, new y = -old x, the optical axis unchanged.
_QUARTER_TURN_CCW = np.array(
    [[0.0, 1.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)


def rotate_image_quarter_turns(
    camera: Camera, world_from_cam: np.ndarray, turns_ccw: int
) -> tuple[Camera, np.ndarray]:
    """Camera and ``world_from_cam`` [4, 4] of the image turned ``turns_ccw`` quarter turns
    counter-clockwise (``np.rot90(image, turns_ccw)``; negative = clockwise).

    For one turn a pixel (u, v) (corner origin) moves to (v, W - u), so ``fx' = fy``,
    ``fy' = fx``, ``cx' = cy``, ``cy' = W - cx``, the size swaps, and the camera turns about its
    optical axis. Radial coefficients are unchanged; tangential ones turn: ``(p1, p2) ->
    (-p2, p1)``. Phones store landscape-held recordings sideways; this puts pixels, intrinsics
    and pose upright together.
    """
    pose = np.asarray(world_from_cam, dtype=np.float64)
    for _ in range(turns_ccw % 4):
        k1, k2, k3, k4, p1, p2 = camera.distortion
        camera = replace(
            camera,
            width_px=camera.height_px,
            height_px=camera.width_px,
            fx=camera.fy,
            fy=camera.fx,
            cx=camera.cy,
            cy=camera.width_px - camera.cx,
            distortion=(k1, k2, k3, k4, -p2, p1),
        )
        pose = pose @ invert_rigid(_QUARTER_TURN_CCW)
    return camera, pose


# ---------------------------------------------------------------------------------------------
# Distortion and projection (vectorised numpy, float64).


def _coefficients(camera: Camera) -> tuple[float, ...]:
    if camera.model is CameraModel.EQUIRECTANGULAR:
        raise NotImplementedError("EQUIRECTANGULAR cameras have no lens distortion model")
    return camera.distortion if camera.spec.is_distorted else NO_DISTORTION


def distort(points: np.ndarray, coefficients: Sequence[float]) -> np.ndarray:
    """Apply radial (k1..k4) + tangential (p1, p2) distortion to undistorted points. [..., 2]"""
    k1, k2, k3, k4, p1, p2 = coefficients
    x = points[..., 0]
    y = points[..., 1]
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * (k3 + r2 * k4)))
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return np.stack([xd, yd], axis=-1)


def undistort(
    points: np.ndarray,
    coefficients: Sequence[float],
    *,
    iterations: int = 50,
    tolerance: float = 1e-14,
) -> np.ndarray:
    """Invert :func:`distort` with Newton's method (analytic 2x2 Jacobian). [..., 2]

    Starts from the distorted point; converges quadratically wherever the distortion is
    monotonic, which is the whole valid image for real lenses. Points that stop converging keep
    their best estimate.
    """
    k1, k2, k3, k4, p1, p2 = coefficients
    target = np.asarray(points, dtype=np.float64)
    if not any(coefficients):
        return target.copy()
    estimate = target.copy()
    for _ in range(iterations):
        x = estimate[..., 0]
        y = estimate[..., 1]
        r2 = x * x + y * y
        radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * (k3 + r2 * k4)))
        d_radial = k1 + r2 * (2.0 * k2 + r2 * (3.0 * k3 + r2 * 4.0 * k4))  # d radial / d r2
        fx = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x) - target[..., 0]
        fy = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y - target[..., 1]
        dfx_dx = radial + 2.0 * x * x * d_radial + 2.0 * p1 * y + 6.0 * p2 * x
        dfx_dy = 2.0 * x * y * d_radial + 2.0 * p1 * x + 2.0 * p2 * y
        dfy_dx = 2.0 * x * y * d_radial + 2.0 * p1 * x + 2.0 * p2 * y
        dfy_dy = radial + 2.0 * y * y * d_radial + 6.0 * p1 * y + 2.0 * p2 * x
        det = dfx_dx * dfy_dy - dfx_dy * dfy_dx
        det = np.where(np.abs(det) < 1e-300, 1e-300, det)
        step_x = (fx * dfy_dy - fy * dfx_dy) / det
        step_y = (fy * dfx_dx - fx * dfy_dx) / det
        estimate = np.stack([x - step_x, y - step_y], axis=-1)
        if (
            np.max(np.abs(step_x), initial=0.0) < tolerance
            and np.max(np.abs(step_y), initial=0.0) < tolerance
        ):
            break
    return estimate


def project(camera: Camera, points_in_cam: np.ndarray) -> np.ndarray:
    """Pixels (corner origin) of 3D points in OpenCV camera coordinates. [..., 3] -> [..., 2]

    Pinhole models need Z > 0 (others give inf/nan); fisheye works up to 180 degrees. A stereo
    eye projects from its own origin (:func:`eye_origins`); ODS points must lie outside the
    eye circle.
    """
    points = np.asarray(points_in_cam, dtype=np.float64)
    if camera.model is CameraModel.EQUIRECTANGULAR:
        return _project_equirectangular(camera, points)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    if camera.is_fisheye:
        radius = np.hypot(x, y)
        theta = np.arctan2(radius, z)
        scale = np.where(
            radius > 0, theta / np.where(radius > 0, radius, 1.0), 1.0 / np.where(z != 0, z, 1.0)
        )
        plane = np.stack([x * scale, y * scale], axis=-1)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            plane = np.stack([x / z, y / z], axis=-1)
    distorted = distort(plane, _coefficients(camera))
    return np.stack(
        [camera.fx * distorted[..., 0] + camera.cx, camera.fy * distorted[..., 1] + camera.cy],
        axis=-1,
    )


def unproject(camera: Camera, pixels: np.ndarray) -> np.ndarray:
    """Unit ray directions (OpenCV camera axes) for pixels (corner origin). [..., 2] -> [..., 3]

    Rays start at :func:`eye_origins` (the camera centre unless the camera is a stereo eye)."""
    pixels = np.asarray(pixels, dtype=np.float64)
    distorted = np.stack(
        [(pixels[..., 0] - camera.cx) / camera.fx, (pixels[..., 1] - camera.cy) / camera.fy],
        axis=-1,
    )
    if camera.model is CameraModel.EQUIRECTANGULAR:
        return equirectangular_directions(distorted)
    plane = undistort(distorted, _coefficients(camera))
    if camera.is_fisheye:
        theta = np.linalg.norm(plane, axis=-1)
        sin_over_theta = np.where(
            theta > 1e-12, np.sin(theta) / np.where(theta > 1e-12, theta, 1.0), 1.0
        )
        directions = np.stack(
            [plane[..., 0] * sin_over_theta, plane[..., 1] * sin_over_theta, np.cos(theta)], axis=-1
        )
    else:
        directions = np.concatenate([plane, np.ones_like(plane[..., :1])], axis=-1)
    unit: np.ndarray = directions / np.linalg.norm(directions, axis=-1, keepdims=True)
    return unit


def pixel_centers(width_px: int, height_px: int) -> np.ndarray:
    """Centres of every pixel, corner-origin convention. -> [H, W, 2] as (u, v)."""
    u, v = np.meshgrid(np.arange(width_px) + 0.5, np.arange(height_px) + 0.5)
    return np.stack([u, v], axis=-1)


def default_fisheye_crop_radius_px(camera: Camera, fraction: float | None = None) -> float:
    """The radius (pixels, around the principal point) inside which fisheye pixels are valid.

    With ``fraction``: nerfstudio's old fraction-of-half-size semantics (<= 1.0.2; the per-capture
    EyefulTower values), converted to pixels as ``fraction * min(w, h) / 2`` because nerfstudio
    >= 1.0.3 reads pixels. Without: the lens's own image circle, i.e. where an equidistant lens
    reaches 90 degrees off-axis, clipped to the nearest image border.
    """
    if fraction is not None:
        return fraction * min(camera.width_px, camera.height_px) / 2.0
    return fisheye_image_circle_px(camera)


def fisheye_image_circle_px(camera: Camera, max_angle_deg: float = 90.0) -> float:
    """Radius in pixels of the circle where rays reach ``max_angle_deg`` off-axis, clipped to
    the largest circle around the principal point that stays inside the image."""
    k1, k2, k3, k4, _, _ = _coefficients(camera)
    # the distorted angle of an on-axis-x ray: the same polynomial project() applies
    theta_d = distort(np.array([math.radians(max_angle_deg), 0.0]), (k1, k2, k3, k4, 0.0, 0.0))[0]
    circle = theta_d * (camera.fx + camera.fy) / 2.0
    border = min(camera.cx, camera.cy, camera.width_px - camera.cx, camera.height_px - camera.cy)
    return float(min(circle, border))


# ---------------------------------------------------------------------------------------------
# Panoramas and stereo eyes (rendering), as nerfstudio 1.1.5 defines them (cameras.py,
# ``generate_rays``; camera_paths.py, ``get_path_from_json``; scripts/render.py).


def equirectangular_directions(plane: np.ndarray) -> np.ndarray:
    """Unit directions (OpenCV camera axes) of equirectangular normalised coordinates
    ``((u - cx) / fx, (v - cy) / fy)``: longitude ``pi x`` (0 straight ahead, positive to the
    right), polar angle ``pi (1/2 + y)`` from up, so the top row looks up. nerfstudio's formula,
    with its OpenGL axes flipped to OpenCV. [..., 2] -> [..., 3]"""
    longitude = np.pi * plane[..., 0]
    polar = np.pi * (0.5 + plane[..., 1])
    sin_polar = np.sin(polar)
    return np.stack(
        [np.sin(longitude) * sin_polar, -np.cos(polar), np.cos(longitude) * sin_polar], axis=-1
    )


def eye_origins(camera: Camera, pixels: np.ndarray) -> np.ndarray:
    """Ray origins (OpenCV camera axes) of pixels [..., 2] -> [..., 3]: the camera centre, or for
    a stereo eye with half-baseline ``h = side * ipd / 2``: VR180 ``(h, 0, 0)``; ODS
    ``h (cos L, 0, -sin L)`` with L the pixel's longitude, the point of the eye circle whose
    tangent is the column's viewing direction (right eye to the right of it)."""
    pixels = np.asarray(pixels, dtype=np.float64)
    origins = np.zeros((*pixels.shape[:-1], 3))
    eye = camera.eye
    if eye is None:
        return origins
    half = eye.side * eye.ipd / 2.0
    if eye.rig is StereoRig.VR180:
        origins[..., 0] = half
        return origins
    longitude = np.pi * (pixels[..., 0] - camera.cx) / camera.fx
    origins[..., 0] = half * np.cos(longitude)
    origins[..., 2] = -half * np.sin(longitude)
    return origins


def _project_equirectangular(camera: Camera, points: np.ndarray) -> np.ndarray:
    """:func:`project` for EQUIRECTANGULAR cameras, eyes included (ODS: the longitude whose
    tangent ray from the eye circle passes through the point; it must lie outside the circle)."""
    eye = camera.eye
    if eye is not None and eye.rig is StereoRig.VR180:
        points = points - eye_origins(camera, points[..., :2])  # a fixed eye
    longitude = np.arctan2(points[..., 0], points[..., 2])
    if eye is not None and eye.rig is StereoRig.ODS:
        radius = np.hypot(points[..., 0], points[..., 2])
        longitude = longitude - np.arcsin(eye.side * eye.ipd / 2.0 / radius)
        longitude = np.mod(longitude + np.pi, 2.0 * np.pi) - np.pi
        u = camera.cx + camera.fx * longitude / np.pi
        points = points - eye_origins(camera, np.stack([u, np.zeros_like(u)], axis=-1))
    polar = np.arctan2(np.hypot(points[..., 0], points[..., 2]), -points[..., 1])
    return np.stack(
        [camera.cx + camera.fx * longitude / np.pi, camera.cy + camera.fy * (polar / np.pi - 0.5)],
        axis=-1,
    )


class RenderCameraType(str, Enum):
    """``eyeful render --camera-type``: nerfstudio's render camera types."""

    PERSPECTIVE = "perspective"
    FISHEYE = "fisheye"
    EQUIRECTANGULAR = "equirectangular"
    VR180 = "vr180"
    ODS = "ods"


#: ``camera_type`` strings of nerfstudio camera paths (read case-insensitively): the viewer
#: writes perspective, fisheye, equirectangular; the Blender add-on perspective and
#: equirectangular; ns-render also reads omnidirectional (ODS) and vr180. A file without the
#: key is perspective.
CAMERA_PATH_TYPES: dict[str, RenderCameraType] = {
    "perspective": RenderCameraType.PERSPECTIVE,
    "fisheye": RenderCameraType.FISHEYE,
    "equirectangular": RenderCameraType.EQUIRECTANGULAR,
    "omnidirectional": RenderCameraType.ODS,
    "ods": RenderCameraType.ODS,
    "vr180": RenderCameraType.VR180,
}

_STEREO_RIGS = {RenderCameraType.VR180: StereoRig.VR180, RenderCameraType.ODS: StereoRig.ODS}


class StereoLayout(str, Enum):
    """How the two eyes of a stereo render share one frame (left eye first)."""

    TOP_BOTTOM = "top-bottom"  # left on top
    SIDE_BY_SIDE = "side-by-side"  # left on the left


#: the layouts ns-render writes: ODS stacked vertically (``vstack``, left on top), VR180 side
#: by side (``hstack``, left on the left)
DEFAULT_STEREO_LAYOUT: dict[RenderCameraType, StereoLayout] = {
    RenderCameraType.ODS: StereoLayout.TOP_BOTTOM,
    RenderCameraType.VR180: StereoLayout.SIDE_BY_SIDE,
}


def camera_from_vertical_fov(
    model: CameraModel, width_px: int, height_px: int, fov_deg: float
) -> Camera:
    """A camera with vertical field of view ``fov_deg`` and the principal point at the centre:
    ``focal = H / 2 / tan(fov / 2)`` (nerfstudio's ``three_js_perspective_camera_focal_length``,
    also for its equidistant fisheye)."""
    focal = height_px / 2.0 / math.tan(math.radians(fov_deg) / 2.0)
    return Camera(
        model=model,
        width_px=width_px,
        height_px=height_px,
        fx=focal,
        fy=focal,
        cx=width_px / 2.0,
        cy=height_px / 2.0,
    )


def render_eyes(
    kind: RenderCameraType, width_px: int, height_px: int, fov_deg: float, ipd: float = 0.0
) -> list[Camera]:
    """The camera of each eye of one render frame, ``width_px x height_px`` per eye: one for mono
    types, left then right for VR180 and ODS (``ipd`` in world units).

    Perspective and fisheye (equidistant) use ``fov_deg``; panoramas ignore it, as nerfstudio
    does: equirectangular and ODS span 360 x 180 degrees (``fx = W/2``, ``fy = H``), VR180
    180 x 180 (nerfstudio writes ``fx = W/2`` and halves the longitude in its formula; the
    same camera here has ``fx = W``).
    """
    kind = RenderCameraType(kind)
    if kind in (RenderCameraType.PERSPECTIVE, RenderCameraType.FISHEYE):
        model = (
            CameraModel.PINHOLE
            if kind is RenderCameraType.PERSPECTIVE
            else CameraModel.OPENCV_FISHEYE
        )
        return [camera_from_vertical_fov(model, width_px, height_px, fov_deg)]
    panorama = Camera(
        model=CameraModel.EQUIRECTANGULAR,
        width_px=width_px,
        height_px=height_px,
        fx=width_px if kind is RenderCameraType.VR180 else width_px / 2.0,
        fy=float(height_px),
        cx=width_px / 2.0,
        cy=height_px / 2.0,
    )
    rig = _STEREO_RIGS.get(kind)
    if rig is None:
        return [panorama]
    return [replace(panorama, eye=StereoEye(rig, side, ipd)) for side in (-1, 1)]


def stack_eyes(images: Sequence[np.ndarray], layout: StereoLayout) -> np.ndarray:
    """One frame from the eyes' images [H, W, C] (left first): top/bottom or side by side."""
    axis = 0 if StereoLayout(layout) is StereoLayout.TOP_BOTTOM else 1
    return np.concatenate(list(images), axis=axis)


# ---------------------------------------------------------------------------------------------
# Layouts and rules nerfstudio's dataparser fixes (every module asks here).

#: the folders of per-image files; each has factor-N copies in ``<folder>_N/``
PER_IMAGE_FOLDERS = ("images", "masks", "depths")
_DOWNSCALED_FOLDER = re.compile(rf"^(?:{'|'.join(PER_IMAGE_FOLDERS)})_(\d+)$")
#: nerfstudio's ``eval_interval``: with no other rule, every 8th image is held out
EVAL_INTERVAL = 8


def downscaled_folder(folder: str, factor: int) -> str:
    """``images`` -> ``images_N``: where nerfstudio looks for factor-N copies, beside
    ``transforms.json``."""
    return f"{folder}_{int(factor)}"


def downscaled_file(file_path: str, factor: int, folder: str = "images") -> str:
    """nerfstudio's ``_get_fname``: ``<folder>_N/<basename>`` (sub-folders dropped) for factor
    N > 1, the path itself for 1."""
    if factor <= 1:
        return file_path
    return f"{downscaled_folder(folder, factor)}/{PurePosixPath(file_path).name}"


def is_downscaled_folder(name: str) -> bool:
    """Whether a folder name is one of nerfstudio's ``images_N``/``masks_N``/``depths_N``."""
    return _DOWNSCALED_FOLDER.match(name) is not None


def held_out_every(count: int, interval: int = EVAL_INTERVAL) -> np.ndarray:
    """[count] bool: nerfstudio's eval-interval rule, image ``i`` (in the order given) held out
    when ``i % interval == 0``; the rule for data with no split of its own."""
    held: np.ndarray = np.arange(count) % int(interval) == 0
    return held
