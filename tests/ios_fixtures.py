"""Record3D and Polycam exports generated from the synthetic scene, with known ground truth.

A handheld phone walks the synthetic room (:mod:`eyeful_tools.synth`); every view is ray-traced
at a tiny size. The ground truth (``PhoneView.world_from_cam``: OpenCV axes, the scene's y-up
world, which is also ARKit's) is then written the way each app writes it: OpenGL-style camera
axes, Record3D's scalar-last quaternions and column-major ``K``, Polycam's row-major ``t_ij``.
Structure follows ``shared/reference/ios.md`` sections 1.1-1.2 and 2.1-2.2.
"""

from __future__ import annotations

import json
import math
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from helpers import look_at

from eyeful_tools import cameras
from eyeful_tools.cameras import Camera, CameraModel
from eyeful_tools.imageio import write_image
from eyeful_tools.synth import render
from eyeful_tools.synth.render import srgb_from_linear

try:  # optional: .r3d depth is LZFSE (``pip install lzfse``)
    import lzfse
except ImportError:  # pragma: no cover - depends on the environment
    lzfse = None

SEED = 0
#: Record3D stores portrait RGB; Polycam landscape (ios.md 1.2, 2.2)
RECORD3D_CAMERA = Camera(
    model=CameraModel.OPENCV, width_px=48, height_px=64, fx=44.0, fy=44.5, cx=23.2, cy=32.9
)
POLYCAM_CAMERA = Camera(
    model=CameraModel.OPENCV, width_px=64, height_px=48, fx=50.0, fy=50.2, cx=32.6, cy=23.4
)
DEPTH_SIZE_PX = (12, 16)  # LiDAR depth is about a quarter of the RGB size (192x256 vs 720x960)
POLYCAM_DEPTH_SIZE_PX = (16, 12)


@dataclass(frozen=True)
class PhoneView:
    world_from_cam: np.ndarray  # [4, 4] OpenCV axes, y-up world (ground truth)
    camera: Camera  # intrinsics as the app reports them for the stored image
    jpeg: bytes
    depth_m: np.ndarray  # [dh, dw] float32 metres (z-depth), the app's depth resolution


def phone_poses(count: int, roll_deg: float = 12.0) -> list[np.ndarray]:
    """``world_from_cam`` (OpenCV) of a phone walking an arc at 1.4 m, looking inward, tilted."""
    poses = []
    for index in range(count):
        angle = 0.4 + 1.2 * index / max(count - 1, 1)
        position = np.array([0.9 * math.cos(angle), 1.4, 1.2 * math.sin(angle)])
        target = np.array([0.0, 1.0 + 0.1 * index, 0.0])
        poses.append(look_at(position, target, roll_deg * (1 if index % 2 else -1)))
    return poses


def render_view(
    camera: Camera,
    world_from_cam: np.ndarray,
    depth_size_px: tuple[int, int],
    blurred: bool = False,
) -> PhoneView:
    radiance, _ = render(camera, world_from_cam, SEED, supersample=1)
    pixels = srgb_from_linear(radiance)
    if blurred:
        pixels = cv2.GaussianBlur(pixels, (0, 0), sigmaX=2.5)
    ok, encoded = cv2.imencode(".jpg", pixels[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    depth_camera = cameras.rescale_camera(camera, *depth_size_px)
    _, distance = render(depth_camera, world_from_cam, SEED, supersample=1)
    rays = cameras.unproject(
        depth_camera, cameras.pixel_centers(*depth_size_px).reshape(-1, 2)
    ).reshape(depth_size_px[1], depth_size_px[0], 3)
    depth_m = (distance * rays[..., 2]).astype(np.float32)
    return PhoneView(world_from_cam, camera, encoded.tobytes(), depth_m)


def make_views(
    camera: Camera, count: int, depth_size_px: tuple[int, int], blurred: tuple[int, ...] = ()
) -> list[PhoneView]:
    return [
        render_view(camera, pose, depth_size_px, blurred=i in blurred)
        for i, pose in enumerate(phone_poses(count))
    ]


def quaternion_xyzw_from_rotation(rotation: np.ndarray) -> np.ndarray:
    """Scalar-last unit quaternion of a 3x3 rotation (Shepperd's method)."""
    m = np.asarray(rotation, dtype=np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i] = s / 4
        q[j] = (m[j, i] + m[i, j]) / s
        q[k] = (m[k, i] + m[i, k]) / s
    return np.asarray(q) / np.linalg.norm(q)


# ---------------------------------------------------------------------------------------------
# Record3D


def record3d_metadata(views: list[PhoneView], per_frame: bool = False) -> dict:
    camera = views[0].camera
    poses = []
    for index, view in enumerate(views):
        world_from_cam_opengl = cameras.opengl_from_opencv_pose(view.world_from_cam)
        quaternion = quaternion_xyzw_from_rotation(world_from_cam_opengl[:3, :3])
        if index % 3 == 2:
            quaternion = -quaternion  # Record3D's sign flips between frames (ios.md 1.3)
        poses.append([*quaternion.tolist(), *world_from_cam_opengl[:3, 3].tolist()])
    meta = {
        "w": camera.width_px,
        "h": camera.height_px,
        "K": cameras.column_major_from_matrix(camera.intrinsic_matrix()),
        "poses": poses,
        "fps": 60,
        "dw": views[0].depth_m.shape[1],
        "dh": views[0].depth_m.shape[0],
        "initPose": [0, 0, 0, 1, 0, 0, 0],
        "frameTimestamps": [i / 60 for i in range(len(views))],
        "cameraType": 1,
    }
    meta["K"] = [v for column in meta["K"] for v in column]  # flat, column-major
    if per_frame:
        meta["perFrameIntrinsicCoeffs"] = [
            [v.camera.fx, v.camera.fy, v.camera.cx, v.camera.cy] for v in views
        ]
    return meta


def write_record3d_folder(folder: Path, views: list[PhoneView], per_frame: bool = False) -> Path:
    """The "EXR + JPG" export: metadata.json, rgb/<i>.jpg, depth/<i>.exr (float32 metres)."""
    (folder / "rgb").mkdir(parents=True)
    (folder / "depth").mkdir()
    (folder / "metadata.json").write_text(json.dumps(record3d_metadata(views, per_frame)))
    for index, view in enumerate(views):
        (folder / "rgb" / f"{index}.jpg").write_bytes(view.jpeg)
        write_image(folder / "depth" / f"{index}.exr", view.depth_m)
    return folder


def confidence_r3d(depth_m: np.ndarray) -> np.ndarray:
    """ARKit-style confidence 0/1/2; the top-left pixel is low confidence (0) on purpose."""
    confidence = np.full(depth_m.shape, 2, dtype=np.uint8)
    confidence[0, 0] = 0
    return confidence


def _lzfse(data: bytes) -> bytes:
    """LZFSE when the package is here; otherwise bytes no decoder accepts (a stand-in that lets
    the no-LZFSE path be tested anywhere)."""
    return lzfse.compress(data) if lzfse is not None else b"not lzfse"


def write_r3d(path: Path, views: list[PhoneView], per_frame: bool = True) -> Path:
    """The ``.r3d`` archive: metadata, rgbd/<i>.jpg, rgbd/<i>.depth and .conf (LZFSE)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata", json.dumps(record3d_metadata(views, per_frame)))
        for index, view in enumerate(views):
            archive.writestr(f"rgbd/{index}.jpg", view.jpeg)
            archive.writestr(f"rgbd/{index}.depth", _lzfse(view.depth_m.tobytes()))
            archive.writestr(f"rgbd/{index}.conf", _lzfse(confidence_r3d(view.depth_m).tobytes()))
        archive.writestr("icon", views[0].jpeg)
    return path


# ---------------------------------------------------------------------------------------------
# Polycam

FIRST_TIMESTAMP = 7324108294


def polycam_timestamps(count: int) -> list[int]:
    return [FIRST_TIMESTAMP + 33_333 * i for i in range(count)]


def polycam_camera_json(view: PhoneView, blur_score: float | None, sizes: bool = True) -> dict:
    world_from_cam_opengl = cameras.opengl_from_opencv_pose(view.world_from_cam)
    values = {
        "fx": view.camera.fx,
        "fy": view.camera.fy,
        "cx": view.camera.cx,
        "cy": view.camera.cy,
    }
    if sizes:
        values.update(width=view.camera.width_px, height=view.camera.height_px)
    for row in range(3):
        for col in range(4):
            values[f"t_{row}{col}"] = float(world_from_cam_opengl[row, col])
    if blur_score is not None:
        values["blur_score"] = blur_score
    values.update(manual_keyframe=False, neighbors=[])
    return values


def write_polycam_folder(
    folder: Path,
    views: list[PhoneView],
    *,
    corrected: bool = True,
    depth: bool = True,
    corrected_sizes: bool = True,
    raw_sizes: bool = True,
    blur_scores: list[float] | None = None,
) -> Path:
    """A raw-data export. Raw ``cameras/`` get a shifted pose (ARKit drift before loop closure),
    so a test can tell which pair was used."""
    keyframes = folder / "keyframes"
    for index, (stamp, view) in enumerate(zip(polycam_timestamps(len(views)), views, strict=True)):
        score = blur_scores[index] if blur_scores else None
        drifted = view.world_from_cam.copy()
        drifted[:3, 3] += [0.05, 0.0, -0.02]
        raw = PhoneView(drifted, view.camera, view.jpeg, view.depth_m)
        _write(keyframes / "images" / f"{stamp}.jpg", view.jpeg)
        _write(
            keyframes / "cameras" / f"{stamp}.json",
            json.dumps(polycam_camera_json(raw, score, raw_sizes)),
        )
        if corrected:
            _write(keyframes / "corrected_images" / f"{stamp}.jpg", view.jpeg)
            camera_json = polycam_camera_json(view, score, sizes=corrected_sizes)
            _write(keyframes / "corrected_cameras" / f"{stamp}.json", json.dumps(camera_json))
        if depth:
            millimetres = np.round(view.depth_m * 1000).astype(np.uint16)
            write_image(keyframes / "depth" / f"{stamp}.png", millimetres)
            confidence = np.full(millimetres.shape, 255, dtype=np.uint8)
            confidence[0, 0] = 0
            write_image(keyframes / "confidence" / f"{stamp}.png", confidence)
    alignment = {"alignmentTransform": np.eye(4).ravel().tolist()}
    (folder / "mesh_info.json").write_text(json.dumps(alignment))
    return folder


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)


def zip_folder(folder: Path, archive_path: Path, top_folder: str | None = None) -> Path:
    """Zip ``folder``'s contents, optionally under one top-level folder (both Polycam layouts)."""
    with zipfile.ZipFile(archive_path, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                name = path.relative_to(folder).as_posix()
                archive.write(path, f"{top_folder}/{name}" if top_folder else name)
    return archive_path


def member_data_start(data: bytes, info: zipfile.ZipInfo) -> int:
    """Where a member's packed bytes begin in the archive ``data`` (after its local header)."""
    header = info.header_offset
    name_len = int.from_bytes(data[header + 26 : header + 28], "little")
    extra_len = int.from_bytes(data[header + 28 : header + 30], "little")
    return header + 30 + name_len + extra_len


def damage_member(archive: Path, name: str) -> None:
    """Flip bytes in the middle of a member's packed data (its CRC, or its deflate stream)."""
    with zipfile.ZipFile(archive) as handle:
        info = handle.getinfo(name)
    data = bytearray(archive.read_bytes())
    middle = member_data_start(data, info) + info.compress_size // 2
    data[middle : middle + 4] = bytes(b ^ 0xA5 for b in data[middle : middle + 4])
    archive.write_bytes(bytes(data))


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


# ---------------------------------------------------------------------------------------------
# Stray Scanner (strayrobots/scanner: OdometryEncoder.swift, DatasetEncoder.swift)

#: ARKit delivers landscape frames; Stray stores them as they come (1920x1440 -> depth 256x192)
STRAY_CAMERA = Camera(
    model=CameraModel.OPENCV, width_px=64, height_px=48, fx=52.0, fy=52.4, cx=31.7, cy=24.6
)
STRAY_DEPTH_SIZE_PX = (16, 12)
STRAY_ODOMETRY_HEADER = "timestamp, frame, x, y, z, qx, qy, qz, qw"
#: the app's q_AC: 180 degrees about x, simd_quatf(ix: 1, iy: 0, iz: 0, r: 0), as x, y, z, w
STRAY_Q_AC = np.array([1.0, 0.0, 0.0, 0.0])


def quaternion_product_xyzw(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` of scalar-last quaternions (simd_quatf's ``*``)."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ]
    )


def stray_odometry_line(index: int, view: PhoneView) -> str:
    """One row the way the app writes it: ARKit's transform (OpenGL camera axes) with its
    quaternion right-multiplied by q_AC, the translation as is, frame number as %06d."""
    arkit = cameras.opengl_from_opencv_pose(view.world_from_cam)
    q = quaternion_product_xyzw(quaternion_xyzw_from_rotation(arkit[:3, :3]), STRAY_Q_AC)
    x, y, z = arkit[:3, 3]
    return f"{1000.0 + index / 60}, {index:06d}, {x}, {y}, {z}, {q[0]}, {q[1]}, {q[2]}, {q[3]}"


def stray_confidence(shape: tuple[int, ...]) -> np.ndarray:
    """0/1/2 confidence: pixel (0, 0) low, (0, 1) medium, the rest high."""
    confidence = np.full(shape, 2, dtype=np.uint8)
    confidence[0, 0] = 0
    confidence[0, 1] = 1
    return confidence


def write_stray_folder(
    folder: Path,
    views: list[PhoneView],
    *,
    extra_video_frames: int = 0,
    video: bool = True,
) -> Path:
    """rgb.mp4 (mp4v), camera_matrix.csv, odometry.csv, depth/ and confidence/ PNGs, imu.csv."""
    (folder / "depth").mkdir(parents=True)
    (folder / "confidence").mkdir()
    camera = views[0].camera
    if video:
        pixels = [cv2.imdecode(np.frombuffer(v.jpeg, np.uint8), cv2.IMREAD_COLOR) for v in views]
        size = (camera.width_px, camera.height_px)
        writer = cv2.VideoWriter(str(folder / "rgb.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 60, size)
        assert writer.isOpened()
        for frame in [*pixels, *pixels[:extra_video_frames]]:
            writer.write(frame)
        writer.release()
    k = camera.intrinsic_matrix()
    (folder / "camera_matrix.csv").write_text(
        "\n".join(", ".join(str(float(v)) for v in row) for row in k)
    )
    lines = [STRAY_ODOMETRY_HEADER] + [stray_odometry_line(i, v) for i, v in enumerate(views)]
    (folder / "odometry.csv").write_text("\n".join(lines) + "\n")
    (folder / "imu.csv").write_text("timestamp, a_x, a_y, a_z, alpha_x, alpha_y, alpha_z\n")
    for index, view in enumerate(views):
        millimetres = np.round(view.depth_m * 1000).astype(np.uint16)
        write_image(folder / "depth" / f"{index:06d}.png", millimetres)
        write_image(folder / "confidence" / f"{index:06d}.png", stray_confidence(millimetres.shape))
    return folder


# ---------------------------------------------------------------------------------------------
# NeRFCapture (jc211/NeRFCapture DatasetWriter.swift; instant-ngp scripts/nerfcapture2nerf.py)

NERFCAPTURE_CAMERA = Camera(
    model=CameraModel.OPENCV, width_px=64, height_px=48, fx=51.0, fy=51.3, cx=32.4, cy=23.8
)
NERFCAPTURE_DEPTH_SIZE_PX = (16, 12)
#: nerfcapture2nerf.py's default --depth_scale (metres at uint16 65535)
NGP_DEPTH_SCALE_M = 10.0


def nerfcapture_rows(view: PhoneView) -> list[list[float]]:
    """ARKit's camera.transform (OpenGL axes) row by row, as arrayFromTransform writes it."""
    return cameras.opengl_from_opencv_pose(view.world_from_cam).tolist()


def ngp_depth_units(view: PhoneView) -> np.ndarray:
    """nerfcapture2nerf.py: uint16 = metres * 65535 / depth_scale, resized nearest to the RGB."""
    units = (view.depth_m * 65535 / NGP_DEPTH_SCALE_M).astype(np.uint16)
    size = (view.camera.width_px, view.camera.height_px)
    return cv2.resize(units, size, interpolation=cv2.INTER_NEAREST)


def write_nerfcapture_folder(
    folder: Path,
    views: list[PhoneView],
    *,
    flavour: str = "app",
    per_frame_intrinsics: bool = True,
) -> Path:
    """``flavour="app"``: the offline export (RGBA PNGs, 8-bit RGBA ``.depth.png``,
    ``depth_integer_scale``); ``"ngp"``: nerfcapture2nerf.py --save_path (RGB PNGs, 16-bit
    depth at the image size, ``integer_depth_scale``). ``file_path`` has no extension."""
    (folder / "images").mkdir(parents=True)
    camera = views[0].camera
    top = {
        "w": camera.width_px,
        "h": camera.height_px,
        "fl_x": camera.fx,
        "fl_y": camera.fy,
        "cx": camera.cx,
        "cy": camera.cy,
    }
    if flavour == "app":
        top["depth_integer_scale"] = 1.0
    else:
        top["integer_depth_scale"] = NGP_DEPTH_SCALE_M / 65535.0
    frames = []
    for index, view in enumerate(views):
        rgb = cv2.imdecode(np.frombuffer(view.jpeg, np.uint8), cv2.IMREAD_COLOR)
        if flavour == "app":  # UIImage.pngData(): RGBA
            rgb = cv2.cvtColor(rgb, cv2.COLOR_BGR2BGRA)
        cv2.imwrite(str(folder / "images" / f"{index}.png"), rgb)
        frame = {
            "file_path": f"images/{index}",
            "depth_path": f"images/{index}.depth.png",
            "transform_matrix": nerfcapture_rows(view),
        }
        if flavour == "app":
            frame["timestamp"] = 1000.0 + index / 30
            shade = np.clip(view.depth_m * 60, 0, 255).astype(np.uint8)
            rgba = np.dstack([shade, shade, shade, np.full_like(shade, 255)])
            cv2.imwrite(str(folder / "images" / f"{index}.depth.png"), rgba)
        else:
            cv2.imwrite(str(folder / "images" / f"{index}.depth.png"), ngp_depth_units(view))
        if per_frame_intrinsics:
            frame.update(
                fl_x=view.camera.fx,
                fl_y=view.camera.fy,
                cx=view.camera.cx,
                cy=view.camera.cy,
                w=view.camera.width_px,
                h=view.camera.height_px,
            )
        frames.append(frame)
    (folder / "transforms.json").write_text(json.dumps({**top, "frames": frames}, indent=2))
    return folder
