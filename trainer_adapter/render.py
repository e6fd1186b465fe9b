"""``eyeful render``: a video along a nerfstudio camera path, or an orbit.

Camera-path JSON is what nerfstudio's viewer and Blender add-on export: ``render_width``,
``render_height``, ``fps``, and ``camera_path`` entries with ``camera_to_world`` (16 numbers,
row-major, OpenGL camera axes, in the normalised world of ``dataparser_transforms.json``) and
``fov`` (vertical, degrees). ``focal = H / 2 / tan(fov / 2)``, principal point at the centre.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from eyeful_tools.cameras import Camera, CameraModel, opencv_from_opengl_pose
from eyeful_tools.errors import InputFormatError, UsageError
from eyeful_tools.fsio import atomic_path, read_json
from trainer_adapter.evaluate import load_run, render_image, to_uint8


def read_camera_path(path: str | Path) -> tuple[list[Camera], np.ndarray, float]:
    """Cameras, ``world_from_cam`` ``[N, 4, 4]`` (OpenCV axes, normalised world) and fps."""
    path = Path(path)
    data = read_json(path, "camera path file")
    try:
        width, height = int(data["render_width"]), int(data["render_height"])
        fps = float(data.get("fps", 24))
        entries = data["camera_path"]
    except (KeyError, TypeError, ValueError) as error:
        raise InputFormatError(path, f"not a nerfstudio camera path ({error})") from None
    if not isinstance(entries, list) or not entries:
        raise InputFormatError(path, "camera_path is empty")
    if width < 1 or height < 1:
        raise InputFormatError(path, "render_width and render_height must be positive")
    cameras, poses = [], []
    for i, entry in enumerate(entries):
        try:
            matrix = np.asarray(entry["camera_to_world"], dtype=np.float64).reshape(4, 4)
            fov_deg = float(entry["fov"])
        except (KeyError, TypeError, ValueError):
            raise InputFormatError(
                path, f"camera_path[{i}] needs camera_to_world (16 numbers) and fov"
            ) from None
        if not np.isfinite(matrix).all() or not 0 < fov_deg < 180:
            raise InputFormatError(path, f"camera_path[{i}] has a non-finite pose or bad fov")
        cameras.append(pinhole(width, height, fov_deg))
        poses.append(opencv_from_opengl_pose(matrix))
    return cameras, np.stack(poses), fps


def pinhole(width: int, height: int, fov_deg: float) -> Camera:
    focal = height / 2.0 / math.tan(math.radians(fov_deg) / 2.0)
    return Camera(
        model=CameraModel.PINHOLE,
        width_px=width,
        height_px=height,
        fx=focal,
        fy=focal,
        cx=width / 2.0,
        cy=height / 2.0,
    )


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """``world_from_cam`` (OpenCV axes: x right, y down, z forward) looking from eye to target."""
    forward = target - eye
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, up)
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, eye
    return pose


def orbit_path(
    world_from_cam: np.ndarray, frames: int = 60, width: int = 320, height: int = 240
) -> tuple[list[Camera], np.ndarray]:
    """A circle around the scene centre (the normalised world's origin, z up) at the cameras'
    mean distance and height, looking at the centre."""
    centers = world_from_cam[:, :3, 3]
    radius = float(np.linalg.norm(centers[:, :2], axis=1).mean()) or 0.5
    height_z = float(centers[:, 2].mean())
    up = np.array([0.0, 0.0, 1.0])
    target = np.array([0.0, 0.0, height_z])
    poses = []
    for k in range(frames):
        angle = 2 * math.pi * k / frames
        eye = np.array([radius * math.cos(angle), radius * math.sin(angle), height_z])
        if np.linalg.norm(eye - target) < 1e-6:
            eye = eye + np.array([0.5, 0.0, 0.0])
        poses.append(look_at(eye, target, up))
    return [pinhole(width, height, 60.0)] * frames, np.stack(poses)


def render_video(
    run_dir: str | Path,
    output: str | Path,
    *,
    camera_path: str | Path | None = None,
    device: str = "auto",
    frames: int = 60,
    fps: float = 24.0,
    orbit_size_px: tuple[int, int] = (320, 240),
    chunk_bytes: int | None = None,
) -> tuple[Path, int]:
    """Render the path (or an orbit) to an mp4 (written atomically); returns (path, frames).

    Frames are rendered one at a time, ``chunk_rays`` rays at once (a ``chunk_bytes`` budget,
    default 1 GiB, and at most a training batch)."""
    from trainer_adapter.data.images import camera_ray_chunks

    output = Path(output)
    if output.suffix.lower() not in (".mp4", ".avi"):
        raise UsageError(output, "the output must be a .mp4 (or .avi) file")
    run = load_run(run_dir, device, chunk_bytes=chunk_bytes)
    if camera_path is not None:
        cameras, poses, fps = read_camera_path(camera_path)
    else:
        width, height = orbit_size_px
        if width < 1 or height < 1 or frames < 1:
            raise UsageError(output, "orbit frames, width and height must be positive")
        cameras, poses = orbit_path(run.dataset.world_from_cam, frames, width, height)
    width, height = cameras[0].width_px, cameras[0].height_px
    chunk_rows = max(1, run.chunk_rays // width)
    fourcc = cv2.VideoWriter.fourcc(*("mp4v" if output.suffix.lower() == ".mp4" else "MJPG"))
    with atomic_path(output) as tmp:
        writer = cv2.VideoWriter(str(tmp), fourcc, fps, (width, height))
        if not writer.isOpened():
            raise UsageError(output, "OpenCV cannot write this video format here")
        try:
            for camera, pose in zip(cameras, poses, strict=True):
                if (camera.width_px, camera.height_px) != (width, height):
                    raise InputFormatError(output, "all frames must have the same size")
                chunks = camera_ray_chunks(camera, pose, chunk_rows=chunk_rows, device=run.device)
                frame = to_uint8(render_image(run, chunks, height, width))
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
    return output, len(cameras)
