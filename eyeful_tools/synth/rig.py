"""The synthetic rigs (v1 fisheye tower, v2 pinhole tower) and the path they move along.

Frames: the world is the capture's own (EyefulTower) world, **y-up, metres, y = 0 the floor**.
The rig frame has its origin on the floor under the tower's pole and the same axes as the world
at zero yaw; a rig position is a yaw about +y plus a floor translation (``world_from_rig``).
Cameras use OpenCV axes (x right, y down, z forward); ``rig_from_cam`` is fixed per camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from eyeful_tools import cameras, catalog
from eyeful_tools.cameras import Camera, CameraModel

#: nominal full resolution written to cameras.json / cameras.xml (portrait). Deliberately not a
#: 2:3 ratio like the default image folders, so readers must scale x and y separately (as for
#: the real 5784x8660 vs 1368x2048).
FULL_SIZE_PX = (780, 1164)

#: distance of every camera's optical centre from the pole axis, metres
POLE_RADIUS_M = 0.08


@dataclass(frozen=True)
class RigCamera:
    """One camera of the tower: where it sits on the pole and where it looks."""

    camera_id: str  # image folder name, e.g. "13"
    height_m: float  # optical centre above the floor
    mount_azimuth_deg: float  # where on the pole the camera sits (0 = rig +z), about +y
    look_azimuth_deg: float  # horizontal viewing direction (0 = rig +z), about +y
    pitch_deg: float  # positive looks up


@dataclass(frozen=True)
class RigDefinition:
    """A synthetic rig: cameras, the master, the held-out camera and the full-res lens."""

    name: str  # "v1" or "v2"
    cameras: tuple[RigCamera, ...]
    master_camera: str
    holdout_camera: str
    camera: Camera  # full-resolution intrinsics shared by every camera of the rig
    fisheye_fov_deg: float | None = None  # fisheye: full angle of the image circle

    @property
    def camera_ids(self) -> tuple[str, ...]:
        return tuple(c.camera_id for c in self.cameras)

    @property
    def fisheye_crop_radius_px(self) -> float | None:
        """Radius of the image circle at full resolution (fisheye only); black beyond it."""
        if self.fisheye_fov_deg is None:
            return None
        return cameras.fisheye_image_circle_px(self.camera, self.fisheye_fov_deg / 2.0)


def _pinhole_v2() -> Camera:
    width, height = FULL_SIZE_PX
    return Camera(
        model=CameraModel.OPENCV,
        width_px=width,
        height_px=height,
        fx=560.0,
        fy=560.0,
        cx=width / 2 + 3.25,
        cy=height / 2 - 4.5,
        # (k1, k2, k3, k4, p1, p2); KRT RadialAndTangential has no k4
        distortion=(-0.06, 0.012, -0.0015, 0.0, 0.0006, -0.0004),
    )


def _fisheye_v1() -> Camera:
    width, height = FULL_SIZE_PX
    return Camera(
        model=CameraModel.OPENCV_FISHEYE,
        width_px=width,
        height_px=height,
        fx=236.0,
        fy=236.0,
        cx=width / 2 - 2.5,
        cy=height / 2 + 3.75,
        distortion=(0.012, -0.0035, 0.0006, -0.00004, 0.00025, -0.00015),
    )


def _v2_cameras() -> tuple[RigCamera, ...]:
    """8 of the real 22: folders 10..17, so master "13" and held-out "17" both exist."""
    return (
        RigCamera("10", 0.50, 0.0, 0.0, -35.0),
        RigCamera("11", 0.50, 120.0, 120.0, -35.0),
        RigCamera("12", 0.50, 240.0, 240.0, -35.0),
        RigCamera("13", 1.20, 60.0, 60.0, 0.0),  # master
        RigCamera("14", 1.20, 60.0, 60.0, 40.0),  # same optical centre as the master
        RigCamera("15", 1.20, 180.0, 180.0, -5.0),
        RigCamera("16", 1.70, 300.0, 300.0, 10.0),
        RigCamera("17", 1.65, 150.0, 150.0, 5.0),  # held out
    )


def _v1_cameras() -> tuple[RigCamera, ...]:
    """7 of the real 9: folders 0..6, so held-out "5" and master "6" both exist."""
    return (
        RigCamera("0", 0.40, 0.0, 0.0, -50.0),
        RigCamera("1", 0.80, 90.0, 90.0, 0.0),
        RigCamera("2", 0.80, 270.0, 270.0, 0.0),
        RigCamera("3", 1.15, 0.0, 0.0, 10.0),
        RigCamera("4", 1.50, 180.0, 180.0, 60.0),  # same optical centre as the master
        RigCamera("5", 1.52, 30.0, 30.0, 10.0),  # held out
        RigCamera("6", 1.50, 180.0, 180.0, 10.0),  # master
    )


def rig_definition(name: str) -> RigDefinition:
    """The synthetic ``v1`` or ``v2`` rig; master and held-out cameras follow the catalog."""
    if name == "v2":
        return RigDefinition(
            "v2",
            _v2_cameras(),
            catalog.RIG_V2.master_sensor,
            catalog.RIG_V2.holdout_camera,
            _pinhole_v2(),
        )
    if name == "v1":
        return RigDefinition(
            "v1",
            _v1_cameras(),
            catalog.RIG_V1.master_sensor,
            catalog.RIG_V1.holdout_camera,
            _fisheye_v1(),
            fisheye_fov_deg=180.0,
        )
    raise ValueError(f"unknown rig {name!r}; choose v1 or v2")


def _yaw(angle_rad: float) -> np.ndarray:
    """3x3 rotation about +y (y-up world) by ``angle_rad``; maps +z towards +x."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def look_rotation(forward: np.ndarray) -> np.ndarray:
    """``rig_from_cam`` rotation (columns: OpenCV x right, y down, z forward) for a level camera
    looking along ``forward`` (unit, rig/world y-up frame)."""
    up = np.array([0.0, 1.0, 0.0])
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=1)


def rig_from_cam(camera: RigCamera) -> np.ndarray:
    """4x4 pose of one camera in the rig frame (OpenCV camera axes, metres)."""
    azimuth = math.radians(camera.look_azimuth_deg)
    pitch = math.radians(camera.pitch_deg)
    forward = np.array(
        [math.cos(pitch) * math.sin(azimuth), math.sin(pitch), math.cos(pitch) * math.cos(azimuth)]
    )
    mount = math.radians(camera.mount_azimuth_deg)
    pose = np.eye(4)
    pose[:3, :3] = look_rotation(forward)
    pose[:3, 3] = [
        POLE_RADIUS_M * math.sin(mount),
        camera.height_m,
        POLE_RADIUS_M * math.cos(mount),
    ]
    return pose


def rig_path(positions: int, seed: int) -> np.ndarray:
    """``world_from_rig`` for each position: an ellipse around the room centre, yawing.

    Deterministic in ``seed`` (start phase and yaw offsets). -> [positions, 4, 4]
    """
    rng = np.random.default_rng([seed, 7])
    phase = float(rng.uniform(0.0, 2.0 * math.pi))
    yaw_offsets = rng.uniform(-0.35, 0.35, size=max(positions, 1))
    poses = np.zeros((positions, 4, 4))
    for index in range(positions):
        angle = phase + 2.0 * math.pi * index / max(positions, 1)
        poses[index] = np.eye(4)
        # golden-angle yaw steps decorrelate where each camera looks from position to position
        poses[index, :3, :3] = _yaw(angle * 0.5 + index * 2.39996 + yaw_offsets[index])
        poses[index, :3, 3] = [1.05 * math.cos(angle), 0.0, 1.45 * math.sin(angle)]
    return poses
