"""transforms.json: the one writer and reader, validation errors, pose round trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import random_pose

from eyeful_tools import cameras, transforms
from eyeful_tools.cameras import Camera, CameraModel, Frame, Scene, WorldUp
from eyeful_tools.errors import InputFormatError

CAMERA = Camera(
    model=CameraModel.OPENCV,
    width_px=192,
    height_px=288,
    fx=150.5,
    fy=151.25,
    cx=96.1,
    cy=143.9,
    distortion=(-0.1, 0.02, 0.001, 0.0, 0.0005, -0.0002),
)


def _scene(world_up: WorldUp = WorldUp.Y_UP) -> Scene:
    frames = tuple(
        Frame(
            image_path=f"{cam}/{cam}_DSC{pos:04d}.jpg",
            camera=CAMERA,
            world_from_cam=random_pose(10 * cam + pos, translation_scale=3),
            camera_id=str(cam),
            rig_position_id=pos,
        )
        for cam in (10, 11)
        for pos in (1, 2)
    )
    return Scene(
        frames=frames, world_up=world_up, name="unit", splits={"train": ["10/10_DSC0001.jpg"]}
    )


def test_pose_survives_write_read_and_convention_round_trip(tmp_path: Path) -> None:
    scene = _scene()
    path = transforms.write_transforms(
        tmp_path / "transforms.json", transforms.scene_to_transforms(scene)
    )
    back = transforms.transforms_to_scene(transforms.read_transforms(path))
    zup_from_yup = cameras.zup_from_yup_world()
    for original, loaded in zip(scene.frames, back.frames, strict=True):
        np.testing.assert_allclose(
            loaded.world_from_cam, zup_from_yup @ original.world_from_cam, atol=1e-12
        )
        assert loaded.camera == original.camera
        assert (loaded.camera_id, loaded.rig_position_id) == (
            original.camera_id,
            original.rig_position_id,
        )
    assert back.splits["train"] == ["10/10_DSC0001.jpg"]


def test_written_matrix_is_nerfstudio_formula() -> None:
    """nerfstudio's EyefulTower converter: rows permuted [2,0,1,3], columns 1 and 2 negated."""
    scene = _scene()
    data = transforms.scene_to_transforms(scene)
    pose = scene.frames[0].world_from_cam
    expected = pose[[2, 0, 1, 3], :] * np.array([1, -1, -1, 1])
    np.testing.assert_allclose(np.array(data.frames[0].transform_matrix), expected, atol=1e-15)
    assert data.applied_transform == [[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0]]


def test_written_file_is_plain_nerfstudio_json(tmp_path: Path) -> None:
    path = transforms.write_transforms(
        tmp_path / "t.json", transforms.scene_to_transforms(_scene())
    )
    data = json.loads(path.read_text())
    assert data["camera_model"] == "OPENCV"
    frame = data["frames"][0]
    assert list(frame)[:14] == [
        "file_path",
        "w",
        "h",
        "fl_x",
        "fl_y",
        "cx",
        "cy",
        "k1",
        "k2",
        "k3",
        "k4",
        "p1",
        "p2",
        "transform_matrix",
    ]
    assert frame["eyeful"] == {"camera_id": "10", "rig_position_id": 1}
    assert not list(tmp_path.glob(".*tmp*")), "temp files left behind"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["frames"][1].pop("transform_matrix"), "frames.1.transform_matrix"),
        (lambda d: d["frames"][0]["transform_matrix"].pop(), "frames.0.transform_matrix"),
        (
            lambda d: d["frames"][2]["transform_matrix"][0].__setitem__(1, float("nan")),
            "frames.2.transform_matrix",
        ),
        (lambda d: d["frames"][0].__setitem__("fl_x", "wide"), "frames.0.fl_x"),
        (lambda d: d.__setitem__("camera_model", "BROWN"), "camera_model"),
        (lambda d: d.pop("frames"), "frames"),
    ],
)
def test_malformed_file_names_file_and_field(tmp_path: Path, mutate, field: str) -> None:
    data = transforms.scene_to_transforms(_scene()).model_dump(mode="json", exclude_none=True)
    mutate(data)
    path = tmp_path / "transforms.json"
    path.write_text(json.dumps(data))  # json allows NaN on write
    with pytest.raises(InputFormatError) as error:
        transforms.read_transforms(path)
    assert str(path) in str(error.value)
    assert f"field {field}" in str(error.value)


def test_not_json_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "transforms.json"
    path.write_text("{ nope")
    with pytest.raises(InputFormatError, match="not valid JSON"):
        transforms.read_transforms(path)


def test_writer_refuses_nan_and_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "transforms.json"
    transforms.write_transforms(path, transforms.scene_to_transforms(_scene()))
    before = path.read_bytes()
    bad = transforms.scene_to_transforms(_scene())
    bad.frames[0].transform_matrix[0][0] = float("nan")
    with pytest.raises((InputFormatError, ValueError)):
        transforms.write_transforms(path, bad)
    assert path.read_bytes() == before


def test_top_level_intrinsics_override_per_frame() -> None:
    data = transforms.scene_to_transforms(_scene()).model_dump(mode="json", exclude_none=True)
    data.update(fl_x=10.0, fl_y=11.0, cx=5.0, cy=6.0, w=10, h=12, k1=0.5)
    scene = transforms.transforms_to_scene(transforms.parse_transforms(data))
    camera = scene.frames[0].camera
    assert (camera.fx, camera.fy, camera.width_px, camera.height_px) == (10.0, 11.0, 10, 12)
    assert camera.distortion == (0.5, 0.0, 0.0, 0.0, 0.0, 0.0)  # shared distortion: top-level only


@pytest.mark.parametrize("with_opencv", [False, True], ids=["alone", "beside-opencv"])
def test_a_pinhole_with_distortion_keeps_its_pixels_through_a_write(
    tmp_path: Path, with_opencv: bool
) -> None:
    """PINHOLE carries no distortion: one given coefficients is an OPENCV camera (nerfstudio
    applies k1..p2 whatever camera_model says), so pixel (47.00, 34.00) sees the same ray after
    a write and a read; as a PINHOLE its distortion used to be ignored, then applied once
    written beside OPENCV cameras, moving it to (47.39, 34.26)."""
    pinhole = Camera(
        model=CameraModel.PINHOLE, width_px=96, height_px=72, fx=60.0, fy=61.0, cx=48.2,
        cy=35.9, distortion=(-0.2, 0.05, 0.0, 0.0, 0.002, -0.001),
    )  # fmt: skip
    assert pinhole.model is CameraModel.OPENCV and pinhole.distortion[0] == -0.2
    plain = Camera(**{**pinhole.__dict__, "model": CameraModel.PINHOLE, "distortion": (0.0,) * 6})
    assert plain.model is CameraModel.PINHOLE
    scene = _scene()
    frames = [scene.frames[0].with_(camera=pinhole), scene.frames[1].with_(camera=plain)]
    if with_opencv:
        frames.append(scene.frames[2].with_(camera=Camera(**{**CAMERA.__dict__})))
    path = transforms.write_transforms(
        tmp_path / "transforms.json", transforms.scene_to_transforms(Scene(frames=tuple(frames)))
    )
    back = transforms.transforms_to_scene(transforms.read_transforms(path))
    pixel = np.array([47.0, 34.0])
    for before, after in zip(frames, back.frames, strict=True):
        ray = cameras.unproject(before.camera, pixel)
        np.testing.assert_allclose(cameras.project(after.camera, ray), pixel, atol=1e-9)


def test_mixed_models_refused() -> None:
    scene = _scene()
    fisheye = Camera(**{**CAMERA.__dict__, "model": CameraModel.OPENCV_FISHEYE})
    frames = (scene.frames[0], scene.frames[1].with_(camera=fisheye))
    with pytest.raises(InputFormatError, match="mixed camera models"):
        transforms.scene_to_transforms(Scene(frames=frames))


def test_pinhole_and_opencv_cameras_write_as_opencv() -> None:
    """transforms.json has one camera_model: a pinhole joins OPENCV ones with zero distortion,
    and reads back projecting exactly as before."""
    scene = _scene()
    pinhole = Camera(**{**CAMERA.__dict__, "model": CameraModel.PINHOLE, "distortion": (0.0,) * 6})
    opencv = Camera(**{**CAMERA.__dict__, "model": CameraModel.OPENCV})
    frames = (scene.frames[0].with_(camera=pinhole), scene.frames[1].with_(camera=opencv))
    written = transforms.scene_to_transforms(Scene(frames=frames))
    assert written.camera_model is CameraModel.OPENCV
    back = transforms.transforms_to_scene(written)
    points = np.array([[0.1, -0.2, 1.5], [0.3, 0.1, 2.0]])
    for before, after in zip(frames, back.frames, strict=True):
        np.testing.assert_allclose(
            cameras.project(after.camera, points), cameras.project(before.camera, points)
        )
