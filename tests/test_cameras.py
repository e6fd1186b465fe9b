"""The canonical camera model: projection round trips and named convention changes."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import random_pose

from eyeful_tools import cameras
from eyeful_tools.cameras import Camera, CameraModel

PINHOLE = Camera(
    model=CameraModel.OPENCV,
    width_px=776,
    height_px=1164,
    fx=600.0,
    fy=601.0,
    cx=389.0,
    cy=580.5,
    distortion=(-0.12, 0.05, -0.01, 0.0, 0.001, -0.0007),
)
# Strong equidistant fisheye, ~180 degree circle inside a portrait frame.
FISHEYE = Camera(
    model=CameraModel.OPENCV_FISHEYE,
    width_px=800,
    height_px=1200,
    fx=250.0,
    fy=250.0,
    cx=401.0,
    cy=598.0,
    distortion=(0.06, -0.02, 0.004, -0.0005, 0.0, 0.0),
)
FISHEYE_TANGENTIAL = Camera(
    model=CameraModel.OPENCV_FISHEYE,
    width_px=800,
    height_px=1200,
    fx=250.0,
    fy=250.0,
    cx=401.0,
    cy=598.0,
    distortion=(0.03, -0.01, 0.002, 0.0, 0.0004, -0.0003),
)
PLAIN = Camera(model=CameraModel.PINHOLE, width_px=64, height_px=48, fx=50, fy=50, cx=32, cy=24)


def _valid_pixels(camera: Camera) -> np.ndarray:
    pixels = cameras.pixel_centers(camera.width_px, camera.height_px)[::7, ::7].reshape(-1, 2)
    if camera.is_fisheye:
        radius = np.hypot(pixels[:, 0] - camera.cx, pixels[:, 1] - camera.cy)
        pixels = pixels[radius < 0.98 * np.pi / 2 * camera.fx]  # inside the 180-degree circle
    return pixels


@pytest.mark.parametrize("camera", [PINHOLE, FISHEYE, FISHEYE_TANGENTIAL, PLAIN], ids=str)
def test_project_unproject_round_trip_over_whole_image(camera: Camera) -> None:
    pixels = _valid_pixels(camera)
    directions = cameras.unproject(camera, pixels)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=-1), 1.0, atol=1e-12)
    reprojected = cameras.project(camera, directions * 3.7)
    assert np.max(np.abs(reprojected - pixels)) < 1e-6


def test_fisheye_without_tangential_matches_opencv() -> None:
    import cv2

    points = np.random.default_rng(0).uniform(-1, 1, size=(200, 3)) + np.array([0, 0, 1.2])
    k = FISHEYE.intrinsic_matrix()
    expected, _ = cv2.fisheye.projectPoints(
        points.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), k, np.array(FISHEYE.distortion[:4])
    )
    np.testing.assert_allclose(cameras.project(FISHEYE, points), expected.reshape(-1, 2), atol=1e-8)


def test_pinhole_matches_opencv_brown_model() -> None:
    import cv2

    camera = Camera(**{**PINHOLE.__dict__, "distortion": (-0.12, 0.05, -0.01, 0.0, 0.001, -0.0007)})
    points = np.random.default_rng(1).uniform(-0.5, 0.5, size=(100, 3)) + np.array([0, 0, 2.0])
    k1, k2, k3, _, p1, p2 = camera.distortion
    expected, _ = cv2.projectPoints(
        points, np.zeros(3), np.zeros(3), camera.intrinsic_matrix(), np.array([k1, k2, p1, p2, k3])
    )
    np.testing.assert_allclose(cameras.project(camera, points), expected.reshape(-1, 2), atol=1e-8)


def test_fisheye_sees_beyond_90_degrees_off_axis_below_180() -> None:
    direction = np.array([np.sin(np.radians(85)), 0.0, np.cos(np.radians(85))])
    pixel = cameras.project(FISHEYE, direction)
    back = cameras.unproject(FISHEYE, pixel)
    np.testing.assert_allclose(back, direction, atol=1e-9)


def test_rescale_separates_x_and_y() -> None:
    small = cameras.rescale_camera(PINHOLE, 192, 288)
    assert small.fx == pytest.approx(600.0 * 192 / 776)
    assert small.fy == pytest.approx(601.0 * 288 / 1164)
    point = np.array([0.1, -0.2, 1.0])
    full = cameras.project(PINHOLE, point) / np.array([776, 1164])
    rel = cameras.project(small, point) / np.array([192, 288])
    np.testing.assert_allclose(full, rel, atol=1e-12)


def test_world_from_cam_and_cam_from_world_invert_exactly() -> None:
    pose = random_pose(3)
    np.testing.assert_allclose(
        cameras.world_from_cam(cameras.cam_from_world(pose)), pose, atol=1e-15
    )
    np.testing.assert_allclose(cameras.cam_from_world(pose) @ pose, np.eye(4), atol=1e-14)


def test_opengl_opencv_flip_and_world_permutation() -> None:
    pose = random_pose(4)
    gl = cameras.opengl_from_opencv_pose(pose)
    # OpenGL camera: x right, y up, looks down -z; the OpenCV y and z columns negated
    np.testing.assert_allclose(gl, pose * np.array([1.0, -1.0, -1.0, 1.0]))
    np.testing.assert_allclose(cameras.opencv_from_opengl_pose(gl), pose)
    zup = cameras.zup_from_yup_world()
    assert cameras.is_rotation(zup)
    np.testing.assert_allclose(zup[:3, :3] @ np.array([0.0, 1.0, 0.0]), [0.0, 0.0, 1.0])


def test_column_major_round_trip() -> None:
    matrix = np.arange(16.0).reshape(4, 4)
    stored = cameras.column_major_from_matrix(matrix)
    assert stored[0] == [0.0, 4.0, 8.0, 12.0]
    np.testing.assert_array_equal(cameras.matrix_from_column_major(stored, 4), matrix)


def test_colmap_world_maps_like_nerfstudio_colmap_to_json() -> None:
    """nerfstudio: ``c2w = c2w[[0, 2, 1, 3]]; c2w[2] *= -1`` after the OpenGL flip."""
    pose = random_pose(7)
    expected = cameras.opengl_from_opencv_pose(pose)[[0, 2, 1, 3], :]
    expected[2, :] *= -1
    ours = cameras.opengl_from_opencv_pose(
        cameras.output_world_from_source(cameras.WorldUp.COLMAP) @ pose
    )
    np.testing.assert_allclose(ours, expected, atol=1e-15)
