"""Small helpers shared by several test modules (``from helpers import ...``; tests/ is on
sys.path under pytest's default rootdir import mode)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from eyeful_tools import cameras
from eyeful_tools.cameras import Camera, CameraModel


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A proper 3x3 rotation (det +1) from the QR decomposition of a Gaussian matrix."""
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def random_pose(seed: int, translation_scale: float = 1.0) -> np.ndarray:
    """A random rigid 4x4 ``world_from_cam``: rotation as above, Gaussian translation."""
    rng = np.random.default_rng(seed)
    pose = np.eye(4)
    pose[:3, :3] = random_rotation(rng)
    pose[:3, 3] = rng.normal(size=3) * translation_scale
    return pose


def look_at(eye: np.ndarray, target: np.ndarray, roll_deg: float = 0.0) -> np.ndarray:
    """``world_from_cam`` (OpenCV axes, the synth's y-up world) at ``eye`` looking at
    ``target``, rolled ``roll_deg`` about the optical axis."""
    from eyeful_tools.synth.rig import look_rotation

    forward = np.asarray(target, dtype=np.float64) - eye
    c, s = math.cos(math.radians(roll_deg)), math.sin(math.radians(roll_deg))
    roll = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    pose = np.eye(4)
    pose[:3, :3] = look_rotation(forward / np.linalg.norm(forward)) @ roll
    pose[:3, 3] = eye
    return pose


def ground_truth(capture: Path) -> dict:
    """The synthetic capture's ``ground_truth.json`` (poses, intrinsics, rig; see docs/synth.md)."""
    return json.loads((capture / "ground_truth.json").read_text())


def gt_camera(data: dict) -> Camera:
    """A camera entry of the synth's ``ground_truth.json`` (``synth.writers.camera_dict``)."""
    return Camera(
        model=CameraModel(data["model"]),
        width_px=data["width"],
        height_px=data["height"],
        fx=data["fx"],
        fy=data["fy"],
        cx=data["cx"],
        cy=data["cy"],
        distortion=cameras.distortion_from_dict(data["distortion"]),
        fisheye_crop_radius_px=data["fisheye_crop_radius_px"],
    )


def traced_points(
    camera: Camera, world_from_cam: np.ndarray, pixels: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the synth's rays through ``pixels`` [N, 2] (corner origin) first hit its scene.

    Returns (points [N, 3] in the y-up capture world, radiance [N, 3], valid [N] bool: inside
    the fisheye image circle)."""
    from eyeful_tools.synth import pixel_rays, trace

    origins, directions, valid = pixel_rays(camera, world_from_cam, pixels)
    radiance, distance = trace(origins, directions, seed=seed)
    return origins + distance[:, None] * directions, radiance, valid


def spherical_payload(path: Path) -> bytes | None:
    """The XML of the Spherical Video V1 ``uuid`` box in ``moov/trak``, or None (a plain walk
    of 32-bit mp4 box headers, independent of the writer)."""
    data = path.read_bytes()

    def children(start: int, end: int) -> dict[bytes, tuple[int, int]]:
        found: dict[bytes, tuple[int, int]] = {}
        offset = start
        while offset + 8 <= end:
            size, kind = (
                int.from_bytes(data[offset : offset + 4], "big"),
                data[offset + 4 : offset + 8],
            )
            size = int.from_bytes(data[offset + 8 : offset + 16], "big") if size == 1 else size
            found.setdefault(kind, (offset, offset + size))
            offset += size
        assert offset == end, "boxes do not tile their parent"
        return found

    moov = children(0, len(data))[b"moov"]
    trak = children(moov[0] + 8, moov[1])[b"trak"]
    uuid = children(trak[0] + 8, trak[1]).get(b"uuid")
    if uuid is None or data[uuid[0] + 8 : uuid[0] + 24] != bytes.fromhex(
        "ffcc8263f8554a938814587a02521fdd"
    ):
        return None
    return data[uuid[0] + 24 : uuid[1]]
