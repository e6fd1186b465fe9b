"""Panorama and stereo cameras (``eyeful render --camera-type``): nerfstudio's definitions,
checked on the synthetic room's analytic ray caster (no model is trained here), against the
numpy camera model, in float32, and against nerfstudio 1.1.5 itself."""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import spherical_payload
from peer import PEER_PY, needs_peer

from eyeful_tools import cameras
from eyeful_tools.cameras import (
    Camera,
    RenderCameraType,
    StereoLayout,
    render_eyes,
    stack_eyes,
)
from eyeful_tools.errors import InputFormatError
from eyeful_tools.spherical_mp4 import insert_spherical_metadata, spherical_xml
from eyeful_tools.synth import scene
from trainer_adapter.data.images import camera_ray_chunks
from trainer_adapter.data.rays import RAY_DTYPE, camera_rays, pack_cameras

#: the synthetic room's centre (its own y-up world, metres)
ROOM_CENTRE = (scene.ROOM_MIN + scene.ROOM_MAX) / 2.0
PANORAMAS = (RenderCameraType.EQUIRECTANGULAR, RenderCameraType.VR180, RenderCameraType.ODS)


def _pose(position: np.ndarray, forward: np.ndarray | list[float]) -> np.ndarray:
    """``world_from_cam`` (OpenCV axes) in the room's y-up world, level, looking along forward."""
    forward = np.asarray(forward, dtype=np.float64) / np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = (
        right,
        np.cross(forward, right),
        forward,
        position,
    )
    return pose


def _rays(camera: Camera, pose: np.ndarray, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World rays of continuous pixels through the training/render ray path, in float32."""
    selector = torch.zeros(len(uv), dtype=torch.int64)
    origins, directions = camera_rays(
        pack_cameras([camera], dtype=RAY_DTYPE)[selector],
        torch.as_tensor(pose, dtype=RAY_DTYPE).expand(len(uv), 4, 4),
        torch.as_tensor(uv, dtype=RAY_DTYPE),
    )
    assert origins.dtype == directions.dtype == torch.float32
    return origins.double().numpy(), directions.double().numpy()


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (rad) between directions [..., 3], accurate for tiny angles."""
    return np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), np.sum(a * b, axis=-1))


def _hit(origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(radiance [N, 3], hit point [N, 3]) from the synthetic scene's ray caster."""
    radiance, distance = scene.trace(origins, directions)
    unit = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    return radiance, origins + distance[:, None] * unit


def test_equirectangular_room_surfaces_in_known_directions() -> None:
    """From the room centre, facing -z turned 20 degrees to +x: the image centre sees the -z
    wall, 3/4 of the width the +x wall (camera right), 1/4 the -x wall, the edge the +z wall,
    the top edge the ceiling, 3/4 of the height (45 degrees down) the floor and the bottom edge
    the ball on the pedestal below the centre; each with the colour the room has there."""
    yaw = math.radians(20.0)
    forward = np.array([math.sin(yaw), 0.0, -math.cos(yaw)])
    pose = _pose(ROOM_CENTRE, forward)
    (camera,) = render_eyes(RenderCameraType.EQUIRECTANGULAR, 64, 32, 60.0)
    w, h = camera.width_px, camera.height_px
    right = pose[:3, 0]
    up = np.array([0.0, 1.0, 0.0])
    down45 = (forward - up) / math.sqrt(2.0)
    known = {  # pixel (u, v) -> (world direction, axis and coordinate of the surface hit)
        (w / 2, h / 2): (forward, (2, scene.ROOM_MIN[2])),  # -z wall
        (3 * w / 4, h / 2): (right, (0, scene.ROOM_MAX[0])),  # +x wall
        (w / 4, h / 2): (-right, (0, scene.ROOM_MIN[0])),  # -x wall
        (0.0, h / 2): (-forward, (2, scene.ROOM_MAX[2])),  # +z wall, behind
        (w / 2, 0.0): (up, (1, scene.ROOM_MAX[1])),  # ceiling
        (w / 2, 3 * h / 4): (down45, (1, scene.ROOM_MIN[1])),  # floor
    }
    uv = np.array(list(known))
    origins, directions = _rays(camera, pose, uv)
    radiance, points = _hit(origins, directions)
    expected_radiance, _ = _hit(origins, np.array([d for d, _ in known.values()]))
    for i, (direction, (axis, value)) in enumerate(known.values()):
        assert _angle(directions[i], direction) < 1e-6
        assert points[i, axis] == pytest.approx(value, abs=1e-4), uv[i]
    np.testing.assert_allclose(radiance, expected_radiance, rtol=1e-4, atol=1e-5)
    # the whole image through the render's chunked ray path: top row ceiling, bottom row ball
    chunks = list(camera_ray_chunks(camera, pose, chunk_rows=7))
    image_origins = torch.cat([o for o, _ in chunks]).double().numpy()
    image_directions = torch.cat([d for _, d in chunks]).double().numpy()
    _, image_points = _hit(image_origins, image_directions)
    image_points = image_points.reshape(h, w, 3)
    assert np.allclose(image_points[0, :, 1], scene.ROOM_MAX[1], atol=1e-4)
    ball_centre, ball_radius = scene.SPHERES[0]
    from_ball = np.linalg.norm(image_points[-1] - np.asarray(ball_centre), axis=-1)
    assert np.allclose(from_ball, ball_radius, atol=1e-4)


def _row_shift(left: np.ndarray, right: np.ndarray, max_shift: int, window: slice) -> float:
    """Sub-pixel shift s with ``left[u + s] ~ right[u]`` over ``window`` (SSD, parabola fit)."""
    costs = np.array(
        [
            np.mean((left[window.start + s : window.stop + s] - right[window]) ** 2)
            for s in range(-max_shift, max_shift + 1)
        ]
    )
    best = int(np.argmin(costs))
    a, b, c = costs[best - 1], costs[best], costs[best + 1]
    return best - max_shift + 0.5 * (a - c) / (a - 2 * b + c)


@pytest.mark.parametrize(
    ("kind", "width", "expected_angle"),
    [
        # ODS: rays tangent to the eye circle of radius ipd/2: 2 asin(ipd / 2 / depth)
        (RenderCameraType.ODS, 2048, lambda ipd, depth: 2 * math.asin(ipd / 2 / depth)),
        # VR180: eyes ipd apart along x, the point straight ahead: 2 atan(ipd / 2 / depth)
        (RenderCameraType.VR180, 1024, lambda ipd, depth: 2 * math.atan(ipd / 2 / depth)),
    ],
)
def test_stereo_disparity_of_a_near_wall_is_ipd_over_depth(
    kind: RenderCameraType, width: int, expected_angle: Callable[[float, float], float]
) -> None:
    """Both eyes look at the -x wall 1 m away (straight ahead for VR180, to the left for ODS).
    The equator rows of the two eyes, rendered by the ray caster, are shifted by the angle the
    IPD subtends at that depth (about ipd / depth), the left eye seeing the wall further right;
    with ipd 0 they are the same row."""
    depth, ipd = 1.0, 0.2
    position = np.array([scene.ROOM_MIN[0] + depth, 1.5, -0.5])
    facing_wall = kind is RenderCameraType.VR180
    pose = _pose(position, [-1.0, 0.0, 0.0] if facing_wall else [0.0, 0.0, -1.0])
    left, right = render_eyes(kind, width, width // 2, 60.0, ipd)
    assert (left.eye.side, right.eye.side) == (-1, 1)  # type: ignore[union-attr]
    u = np.arange(width) + 0.5
    uv = np.stack([u, np.full_like(u, width / 4)], axis=-1)  # the equator row
    rows = [_hit(*_rays(eye, pose, uv))[0].mean(axis=1) for eye in (left, right)]
    pixels_per_rad = left.fx / math.pi
    centre = width // 2 if facing_wall else width // 4  # where the wall is perpendicular
    half = int(0.1 * pixels_per_rad)
    expected_px = expected_angle(ipd, depth) * pixels_per_rad
    shift = _row_shift(rows[0], rows[1], int(expected_px * 2), slice(centre - half, centre + half))
    assert expected_px > 30 and shift == pytest.approx(expected_px, abs=1.0)
    origins = [_rays(eye, pose, uv)[0] for eye in (left, right)]
    np.testing.assert_allclose(np.linalg.norm(origins[1] - origins[0], axis=1), ipd, rtol=1e-5)
    mono = render_eyes(kind, width, width // 2, 60.0, 0.0)
    same = [_hit(*_rays(eye, pose, uv))[0] for eye in mono]
    np.testing.assert_array_equal(same[0], same[1])


@pytest.mark.parametrize("kind", PANORAMAS)
def test_panorama_rays_match_numpy_model_and_project_back(kind: RenderCameraType) -> None:
    """Torch rays (the render path) equal ``cameras.unproject``/``eye_origins``; ``project`` of a
    point on a ray gives the ray's pixel back, stereo eyes included."""
    for camera in render_eyes(kind, 40, 20, 60.0, 0.3):
        pixels = cameras.pixel_centers(camera.width_px, camera.height_px).reshape(-1, 2)
        pixels = np.concatenate([pixels, pixels[:200] + 0.37])
        selector = torch.zeros(len(pixels), dtype=torch.int64)
        origins, directions = camera_rays(
            pack_cameras([camera])[selector],
            torch.eye(4, dtype=torch.float64).expand(len(pixels), 4, 4),
            torch.from_numpy(pixels),
        )
        np.testing.assert_allclose(
            directions.numpy(), cameras.unproject(camera, pixels), atol=1e-12
        )
        np.testing.assert_allclose(origins.numpy(), cameras.eye_origins(camera, pixels), atol=1e-12)
        points = origins.numpy() + 2.5 * directions.numpy()
        np.testing.assert_allclose(cameras.project(camera, points), pixels, atol=1e-9)


@pytest.mark.parametrize("kind", PANORAMAS)
def test_float32_panorama_rays_within_1e_6_rad_and_1e_6_origins(kind: RenderCameraType) -> None:
    """An 8K panorama (8192 px per eye wide) in float32, ``RAY_DTYPE``, against float64."""
    rng = np.random.default_rng(1)
    pose = np.eye(4)
    pose[:3, :3] = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    pose[:3, 3] = (0.3, -1.2, 0.7)
    for camera in render_eyes(kind, 8192, 4096, 60.0, 0.064):
        uv = np.stack([rng.integers(0, 8192, 20000), rng.integers(0, 4096, 20000)], -1) + 0.5
        fast = _rays(camera, pose, uv)
        exact = (
            cameras.eye_origins(camera, uv) @ pose[:3, :3].T + pose[:3, 3],
            cameras.unproject(camera, uv) @ pose[:3, :3].T,
        )
        assert _angle(fast[1], exact[1]).max() < 1e-6
        assert np.abs(fast[0] - exact[0]).max() < 1e-6


def test_render_eyes_and_layouts_follow_nerfstudio() -> None:
    """Intrinsics as ns-render sets them, left eye first, and the stacking order."""
    (equi,) = render_eyes(RenderCameraType.EQUIRECTANGULAR, 200, 100, 60.0)
    assert (equi.fx, equi.fy, equi.cx, equi.cy, equi.eye) == (100.0, 100.0, 100.0, 50.0, None)
    vr_left, vr_right = render_eyes(RenderCameraType.VR180, 100, 100, 60.0, 0.1)
    assert vr_left.fx == 100.0 and vr_left.eye.side == -1 and vr_right.eye.side == 1  # type: ignore[union-attr]
    (persp,) = render_eyes(RenderCameraType.PERSPECTIVE, 40, 30, 90.0)
    assert persp.fx == pytest.approx(15.0) and persp.model is cameras.CameraModel.PINHOLE
    (fish,) = render_eyes(RenderCameraType.FISHEYE, 40, 30, 90.0)
    assert fish.model is cameras.CameraModel.OPENCV_FISHEYE and fish.fx == pytest.approx(15.0)
    left, right = np.zeros((2, 3, 1)), np.ones((2, 3, 1))
    top_bottom = stack_eyes([left, right], StereoLayout.TOP_BOTTOM)
    assert top_bottom.shape == (4, 3, 1) and top_bottom[:2].max() == 0 and top_bottom[2:].min() == 1
    side = stack_eyes([left, right], StereoLayout.SIDE_BY_SIDE)
    assert side.shape == (2, 6, 1) and side[:, :3].max() == 0 and side[:, 3:].min() == 1
    assert cameras.DEFAULT_STEREO_LAYOUT[RenderCameraType.ODS] is StereoLayout.TOP_BOTTOM
    assert cameras.DEFAULT_STEREO_LAYOUT[RenderCameraType.VR180] is StereoLayout.SIDE_BY_SIDE


def test_camera_path_types(tmp_path: Path) -> None:
    """nerfstudio's camera_type strings (viewer, Blender add-on, ns-render), any case; none is
    perspective; an unknown one is refused naming the file."""
    from trainer_adapter.render import read_camera_path

    entry = {"camera_to_world": np.eye(4).ravel().tolist(), "fov": 50}
    expected = {
        None: RenderCameraType.PERSPECTIVE,
        "perspective": RenderCameraType.PERSPECTIVE,
        "fisheye": RenderCameraType.FISHEYE,
        "equirectangular": RenderCameraType.EQUIRECTANGULAR,
        "Omnidirectional": RenderCameraType.ODS,
        "VR180": RenderCameraType.VR180,
    }
    file = tmp_path / "path.json"
    for name, kind in expected.items():
        document = {"render_width": 8, "render_height": 4, "camera_path": [entry]}
        if name is not None:
            document["camera_type"] = name
        file.write_text(json.dumps(document))
        assert read_camera_path(file).kind is kind
    panoramas = {
        "equirectangular": RenderCameraType.EQUIRECTANGULAR,
        "omnidirectional": RenderCameraType.ODS,
        "vr180": RenderCameraType.VR180,
    }
    for name, kind in panoramas.items():  # they ignore fov: any value, or none
        for fov in (180, 360, None):
            panorama = {"camera_to_world": entry["camera_to_world"], "fov": fov}
            document = {"render_width": 8, "render_height": 4, "camera_type": name,
                        "camera_path": [panorama]}  # fmt: skip
            file.write_text(json.dumps(document))
            assert read_camera_path(file).kind is kind
    file.write_text(json.dumps({**document, "camera_type": "cubemap"}))
    with pytest.raises(InputFormatError) as error:
        read_camera_path(file)
    assert error.value.one_line() == (
        f"{file}: camera_type 'cubemap' is not one of perspective, fisheye, equirectangular, "
        "omnidirectional, ods, vr180"
    )


_NS_RAYS = """
import json, sys, torch
from nerfstudio.cameras.cameras import Cameras, CameraType
c2w = torch.tensor(json.loads(sys.argv[1]), dtype=torch.float32)[:3]
out = {}
for name in ("EQUIRECTANGULAR", "OMNIDIRECTIONALSTEREO_L", "OMNIDIRECTIONALSTEREO_R",
             "VR180_L", "VR180_R"):
    cam = Cameras(camera_to_worlds=c2w[None], fx=8.0, fy=8.0, cx=8.0, cy=4.0, width=16,
                  height=8, camera_type=CameraType[name])
    rays = cam.generate_rays(camera_indices=0)
    out[name] = [rays.origins.reshape(-1, 3).tolist(), rays.directions.reshape(-1, 3).tolist()]
print(json.dumps(out))
"""


@needs_peer
def test_panoramas_equal_nerfstudio_generate_rays() -> None:
    """nerfstudio 1.1.5's own rays for a 16x8 camera path frame of each panorama type (its
    camera_paths.py intrinsics, its hard-coded 0.064 IPD) equal ours, origins included."""
    c2w_opengl = np.eye(4)
    c2w_opengl[:3, :3] = [[0.8, -0.6, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]]
    c2w_opengl[:3, 3] = (0.3, -0.2, 0.1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    result = subprocess.run(
        [str(PEER_PY), "-c", _NS_RAYS, json.dumps(c2w_opengl.tolist())],
        check=True, capture_output=True, text=True, env=env,
    )  # fmt: skip
    theirs = json.loads(result.stdout.strip().splitlines()[-1])
    pose = cameras.opencv_from_opengl_pose(c2w_opengl)
    uv = cameras.pixel_centers(16, 8).reshape(-1, 2)
    ours = {"EQUIRECTANGULAR": render_eyes(RenderCameraType.EQUIRECTANGULAR, 16, 8, 60.0)[0]}
    for prefix, kind in (
        ("OMNIDIRECTIONALSTEREO", RenderCameraType.ODS),
        ("VR180", RenderCameraType.VR180),
    ):
        left, right = render_eyes(kind, 16, 8, 60.0, 0.064)
        ours[f"{prefix}_L"], ours[f"{prefix}_R"] = left, right
    for name, camera in ours.items():
        origins, directions = _rays(camera, pose, uv)
        np.testing.assert_allclose(origins, theirs[name][0], atol=1e-6, err_msg=name)
        np.testing.assert_allclose(directions, theirs[name][1], atol=1e-6, err_msg=name)


def test_spherical_metadata_goes_into_the_mp4_and_it_still_plays(tmp_path: Path) -> None:
    import cv2

    video = tmp_path / "ods.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"mp4v"), 10, (16, 16))
    for value in (0, 200):
        writer.write(np.full((16, 16, 3), value, dtype=np.uint8))
    writer.release()
    assert spherical_payload(video) is None
    insert_spherical_metadata(video, "top-bottom")
    payload = spherical_payload(video)
    assert payload is not None and payload == spherical_xml("top-bottom")
    assert b"<GSpherical:StereoMode>top-bottom</GSpherical:StereoMode>" in payload
    assert b"<GSpherical:ProjectionType>equirectangular</GSpherical:ProjectionType>" in payload
    capture = cv2.VideoCapture(str(video))
    frames = [capture.read()[1] for _ in range(2)]
    capture.release()
    assert [int(f.mean() > 100) for f in frames] == [0, 1]  # the samples still decode
    text = tmp_path / "not.mp4"
    text.write_bytes(b"not a video at all")
    with pytest.raises(InputFormatError, match="not an mp4"):
        insert_spherical_metadata(text)
    assert text.read_bytes() == b"not a video at all"


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_a_video_that_lost_frames_is_never_renamed_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    """OpenCV's video writer reports no error when a frame is not written (a full disk): the
    file is read back, and a short one is refused under the output's name, leaving nothing."""
    import cv2

    from trainer_adapter import render

    frame = np.full((16, 16, 3), 100, dtype=np.uint8)
    whole = tmp_path / f"whole{suffix}"
    with render.frame_sink(whole, 10.0, (16, 16), "mono") as write:
        for _ in range(3):
            write(frame)
    capture = cv2.VideoCapture(str(whole))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 3
    capture.release()

    real = cv2.VideoWriter

    class Losing:
        """OpenCV's writer, silently dropping every frame after the first (a full disk)."""

        fourcc = staticmethod(real.fourcc)

        def __init__(self, *args: object) -> None:
            self.writer = real(*args)
            self.frames = 0

        def isOpened(self) -> bool:
            return bool(self.writer.isOpened())

        def write(self, image: np.ndarray) -> None:
            self.frames += 1
            if self.frames == 1:
                self.writer.write(image)

        def release(self) -> None:
            self.writer.release()

    monkeypatch.setattr(render.cv2, "VideoWriter", Losing)
    cut = tmp_path / f"cut{suffix}"
    with pytest.raises(OSError) as error, render.frame_sink(cut, 10.0, (16, 16)) as write:
        for _ in range(3):
            write(frame)
    assert error.value.filename == str(cut) and "holds 1 of 3 frames" in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == [whole.name]


def test_a_flat_camera_type_over_a_panorama_path_is_refused(tmp_path: Path) -> None:
    """A panorama's camera path carries no fov that is read: rendering it as perspective or
    fisheye would silently use a made-up one, so it is one usage error before anything loads."""
    from eyeful_tools.errors import UsageError
    from trainer_adapter.render import render_video

    pose = np.eye(4).ravel().tolist()
    file = tmp_path / "path.json"
    file.write_text(json.dumps({
        "render_width": 8, "render_height": 4, "camera_type": "equirectangular",
        "camera_path": [{"camera_to_world": pose}],
    }))  # fmt: skip
    for camera_type in ("perspective", "fisheye"):
        with pytest.raises(UsageError, match=f"{camera_type} needs a path with fov; .* is equi"):
            render_video(tmp_path / "run", tmp_path / "out.mp4", camera_path=file,
                         camera_type=camera_type)  # fmt: skip
    assert not (tmp_path / "out.mp4").exists()


def test_orbit_options_with_a_camera_path_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--frames/--width/--height shape the orbit; with a camera path they were silently ignored."""
    from eyeful_tools.cli import main

    path_file = tmp_path / "path.json"
    path_file.write_text("{}")
    for option, value in (("--frames", "5"), ("--width", "64"), ("--height", "48")):
        rc = main(["render", str(tmp_path / "run"), "--camera-path", str(path_file),
                   "--output", str(tmp_path / "out.mp4"), option, value])  # fmt: skip
        err = capsys.readouterr().err
        assert rc == 1
        assert (
            err == f"error: {option}: shapes the orbit only; a camera path sets its own size "
            "and frame count (render_width, render_height, fps x seconds)\n"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["path.json"]
