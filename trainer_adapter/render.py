"""``eyeful render``: frames along a nerfstudio camera path, or an orbit, as a video or PNGs.

Camera-path JSON is what nerfstudio's viewer and Blender add-on export: ``render_width``,
``render_height``, ``fps``, ``camera_type`` and ``camera_path`` entries with ``camera_to_world``
(16 numbers, row-major, OpenGL camera axes, in the normalised world of
``dataparser_transforms.json``) and ``fov`` (vertical, degrees; panoramas ignore it). Camera
types, their intrinsics and the stereo layouts are nerfstudio's (``eyeful_tools.cameras``,
:func:`~eyeful_tools.cameras.render_eyes`); the stereo eyes' IPD is given in metres and scaled
into the normalised world here.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from eyeful_tools.cameras import (
    CAMERA_PATH_TYPES,
    DEFAULT_STEREO_LAYOUT,
    Camera,
    CameraModel,
    RenderCameraType,
    StereoLayout,
    camera_from_vertical_fov,
    opencv_from_opengl_pose,
    render_eyes,
    stack_eyes,
)
from eyeful_tools.errors import InputFormatError, UsageError
from eyeful_tools.fsio import atomic_dir, atomic_path, read_json, refuse_overlap
from eyeful_tools.imageio import write_image
from eyeful_tools.spherical_mp4 import insert_spherical_metadata
from trainer_adapter.evaluate import LoadedRun, load_run, render_image, to_uint8

log = logging.getLogger(__name__)

#: nerfstudio's default interpupillary distance, metres
DEFAULT_IPD_M = 0.064
#: frame size of an orbit per camera type (per eye for stereo), width x height
ORBIT_SIZE_PX: dict[RenderCameraType, tuple[int, int]] = {
    RenderCameraType.PERSPECTIVE: (320, 240),
    RenderCameraType.FISHEYE: (320, 240),
    RenderCameraType.EQUIRECTANGULAR: (512, 256),
    RenderCameraType.ODS: (512, 256),
    RenderCameraType.VR180: (256, 256),
}
VIDEO_SUFFIXES = (".mp4", ".avi")
_NAMES = ", ".join(CAMERA_PATH_TYPES)


@dataclass(frozen=True)
class CameraPath:
    """Frames to render: one pose (``[N, 4, 4]``, OpenCV axes, normalised world) and vertical
    field of view per frame, one camera type and size (per eye) for all."""

    kind: RenderCameraType
    width: int
    height: int
    poses: np.ndarray
    fovs_deg: list[float]
    fps: float


def camera_type(name: str, where: str | Path) -> RenderCameraType:
    """A ``camera_type`` string (nerfstudio's names, any case), refused when unknown."""
    kind = CAMERA_PATH_TYPES.get(name.strip().lower()) if isinstance(name, str) else None
    if kind is None:
        raise InputFormatError(where, f"camera_type {name!r} is not one of {_NAMES}")
    return kind


def read_camera_path(path: str | Path) -> CameraPath:
    """A nerfstudio camera path file; ``camera_type`` defaults to perspective, as in nerfstudio."""
    path = Path(path)
    data = read_json(path, "camera path file")
    try:
        width, height = int(data["render_width"]), int(data["render_height"])
        fps = float(data.get("fps", 24))
        entries = data["camera_path"]
        kind = camera_type(data.get("camera_type", "perspective"), path)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise InputFormatError(path, f"not a nerfstudio camera path ({error})") from None
    if not isinstance(entries, list) or not entries:
        raise InputFormatError(path, "camera_path is empty")
    if width < 1 or height < 1:
        raise InputFormatError(path, "render_width and render_height must be positive")
    panorama = kind not in (RenderCameraType.PERSPECTIVE, RenderCameraType.FISHEYE)
    fovs, poses = [], []
    for i, entry in enumerate(entries):
        try:
            matrix = np.asarray(entry["camera_to_world"], dtype=np.float64).reshape(4, 4)
            fov_deg = 90.0 if panorama else float(entry["fov"])  # panoramas ignore fov
        except (KeyError, TypeError, ValueError):
            raise InputFormatError(
                path, f"camera_path[{i}] needs camera_to_world (16 numbers) and fov"
            ) from None
        if not np.isfinite(matrix).all() or not 0 < fov_deg < 180:
            raise InputFormatError(path, f"camera_path[{i}] has a non-finite pose or bad fov")
        fovs.append(fov_deg)
        poses.append(opencv_from_opengl_pose(matrix))
    return CameraPath(kind, width, height, np.stack(poses), fovs, fps)


def pinhole(width: int, height: int, fov_deg: float) -> Camera:
    """A pinhole of vertical field of view ``fov_deg``, centred (nerfstudio's viewer camera)."""
    return camera_from_vertical_fov(CameraModel.PINHOLE, width, height, fov_deg)


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


def orbit_poses(world_from_cam: np.ndarray, frames: int = 60) -> np.ndarray:
    """[frames, 4, 4]: a circle around the scene centre (the normalised world's origin, z up)
    at the cameras' mean distance and height, looking at the centre (level: panoramas stay
    upright)."""
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
    return np.stack(poses)


@contextlib.contextmanager
def frame_sink(
    output: Path, fps: float, size: tuple[int, int], spherical: str | None = None
) -> Iterator[Callable]:
    """Yield ``write(frame)`` for uint8 RGB frames of ``size`` (w, h): an mp4/avi video, or
    ``00000.png``... in a folder (nerfstudio's ``--output-format images``), both written beside
    the output and renamed into place only when every frame is there. ``spherical`` (``mono``
    or a stereo mode) adds 360-degree video metadata to an mp4."""
    if output.suffix.lower() not in VIDEO_SUFFIXES:
        with atomic_dir(output) as build:
            count = itertools.count()
            yield lambda frame: write_image(build / f"{next(count):05d}.png", frame)
        return
    fourcc = cv2.VideoWriter.fourcc(*("mp4v" if output.suffix.lower() == ".mp4" else "MJPG"))
    with atomic_path(output) as tmp:
        writer = cv2.VideoWriter(str(tmp), fourcc, fps, size)
        if not writer.isOpened():
            raise UsageError(output, "OpenCV cannot write this video format here")
        written = 0

        def write(frame: np.ndarray) -> None:
            nonlocal written
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            written += 1

        try:
            yield write
        finally:
            writer.release()
        check_video_frames(tmp, written, output)
        if spherical is not None and output.suffix.lower() == ".mp4":
            try:
                insert_spherical_metadata(tmp, None if spherical == "mono" else spherical)
            except InputFormatError as error:  # the frames are good: keep them, say what is not
                log.warning("%s: no 360 metadata added (%s)", output, error.reason)


def check_video_frames(video: Path, expected: int, output: Path) -> None:
    """Refuse a video that does not hold the ``expected`` frames: OpenCV's writer reports no
    error (a full disk leaves a cut file), so the file is read back before it is renamed."""
    capture = cv2.VideoCapture(str(video))
    try:
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else -1
    finally:
        capture.release()
    if frames != expected:
        raise OSError(
            errno.EIO, f"the video holds {max(frames, 0)} of {expected} frames (disk full?)",
            str(output),
        )  # fmt: skip


def render_frame(
    run: LoadedRun, eyes: list[Camera], pose: np.ndarray, layout: StereoLayout
) -> np.ndarray:
    """One uint8 frame: each eye rendered through the float32 ray path, stacked."""
    from trainer_adapter.data.images import camera_ray_chunks

    images = []
    for camera in eyes:
        chunk_rows = max(1, run.chunk_rays // camera.width_px)
        chunks = camera_ray_chunks(camera, pose, chunk_rows=chunk_rows, device=run.device)
        images.append(to_uint8(render_image(run, chunks, camera.height_px, camera.width_px)))
    return stack_eyes(images, layout)


def spherical_mode(kind: RenderCameraType, layout: StereoLayout) -> str | None:
    """The 360-degree metadata of an mp4 (Spherical Video V1 ``StereoMode``, or ``mono``):
    ns-render's for equirectangular, and the eyes' layout for ODS (ns-render's ffmpeg stacking
    drops it); None for VR180 (it needs V2 metadata, not written) and flat cameras."""
    if kind is RenderCameraType.EQUIRECTANGULAR:
        return "mono"
    if kind is RenderCameraType.ODS:
        return "top-bottom" if layout is StereoLayout.TOP_BOTTOM else "left-right"
    return None


def _check_output(output: Path, inputs: list[Path], overwrite: bool) -> None:
    if output.suffix and output.suffix.lower() not in VIDEO_SUFFIXES:
        raise UsageError(output, "the output must be a .mp4 or .avi video, or a folder (no suffix)")
    refuse_overlap(output, inputs)
    if (output.exists() or output.is_symlink()) and not overwrite:
        raise UsageError(output, "already exists (pass --overwrite to replace it)")


def render_video(
    run_dir: str | Path,
    output: str | Path,
    *,
    camera_path: str | Path | None = None,
    camera_type: RenderCameraType | str | None = None,
    ipd_m: float = DEFAULT_IPD_M,
    stereo_layout: StereoLayout | str | None = None,
    overwrite: bool = False,
    device: str = "auto",
    frames: int = 60,
    fps: float = 24.0,
    orbit_size_px: tuple[int, int] | None = None,
    chunk_bytes: int | None = None,
) -> tuple[Path, int]:
    """Render the path (or an orbit) to a video or a folder of PNGs; returns (path, frames).

    ``camera_type`` overrides the path's; ``ipd_m`` is in metres of the capture (transforms.json
    world), scaled by the run's dataparser scale into the normalised world. Frames are rendered
    one eye at a time, ``chunk_rays`` rays at once (a ``chunk_bytes`` budget)."""
    output, run_dir = Path(output), Path(run_dir)
    inputs = [run_dir / "config.json", run_dir / "nerfstudio_models"]
    _check_output(output, inputs + ([Path(camera_path)] if camera_path else []), overwrite)
    if not (math.isfinite(ipd_m) and ipd_m >= 0):
        raise UsageError("--ipd", f"must be a distance >= 0 in metres, got {ipd_m}")
    kind = None if camera_type is None else RenderCameraType(camera_type)
    path = None if camera_path is None else read_camera_path(camera_path)
    flat = (RenderCameraType.PERSPECTIVE, RenderCameraType.FISHEYE)
    if path is not None and kind in flat and path.kind not in flat:  # its fov is not read
        raise UsageError(
            "--camera-type",
            f"{camera_type} needs a path with fov; {camera_path} is {path.kind.value}",
        )
    run = load_run(run_dir, device, chunk_bytes=chunk_bytes)
    if path is None:
        kind = kind or RenderCameraType.PERSPECTIVE
        width, height = orbit_size_px or ORBIT_SIZE_PX[kind]
        if width < 1 or height < 1 or frames < 1:
            raise UsageError(output, "orbit frames, width and height must be positive")
        poses = orbit_poses(run.dataset.world_from_cam, frames)
        path = CameraPath(kind, width, height, poses, [60.0] * frames, fps)
    kind = kind or path.kind
    layout = StereoLayout(stereo_layout or DEFAULT_STEREO_LAYOUT.get(kind, StereoLayout.TOP_BOTTOM))
    ipd = ipd_m * run.dataset.dataparser_scale
    eyes = render_eyes(kind, path.width, path.height, path.fovs_deg[0], ipd)
    size = stack_eyes([np.zeros((path.height, path.width, 1))] * len(eyes), layout).shape[1::-1]
    spherical = spherical_mode(kind, layout)
    with frame_sink(output, path.fps, (int(size[0]), int(size[1])), spherical) as write:
        for pose, fov in zip(path.poses, path.fovs_deg, strict=True):
            eyes = render_eyes(kind, path.width, path.height, fov, ipd)
            write(render_frame(run, eyes, pose, layout))
    return output, len(path.poses)
