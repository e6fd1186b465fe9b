"""Rays: torch undistortion against the numpy camera model, and rays that hit the synthetic
capture's ground-truth 3D points after the whole convention chain (y-up capture -> z-up
transforms.json -> normalised world)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ground_truth, gt_camera, traced_points

from eyeful_tools import cameras
from eyeful_tools.cameras import Camera, CameraModel, Frame, Scene, WorldUp
from eyeful_tools.transforms import scene_to_transforms, write_transforms
from trainer_adapter.data.parser import parse_dataset
from trainer_adapter.data.rays import (
    RAY_DTYPE,
    camera_directions,
    distort,
    pack_cameras,
    pixel_rays,
    undistort,
    valid_pixel_mask,
)

DISTORTIONS = {
    CameraModel.PINHOLE: (0.0,) * 6,
    CameraModel.OPENCV: (-0.12, 0.04, -0.006, 0.0, 0.0011, -0.0007),
    CameraModel.OPENCV_FISHEYE: (0.03, -0.008, 0.001, -0.0001, 0.0004, -0.0003),
}


def _camera(model: CameraModel, scale: float = 1.0) -> Camera:
    """A small test camera; ``scale`` enlarges the sensor (size, focal, centre, crop) alike."""
    fisheye = model is CameraModel.OPENCV_FISHEYE
    return Camera(
        model=model,
        width_px=round(60 * scale),
        height_px=round(90 * scale),
        fx=(28.0 if fisheye else 52.0) * scale,
        fy=(28.3 if fisheye else 52.5) * scale,
        cx=30.4 * scale,
        cy=44.7 * scale,
        distortion=DISTORTIONS[model],
        fisheye_crop_radius_px=25.0 * scale if fisheye else None,
    )


@pytest.mark.parametrize("model", list(DISTORTIONS))
def test_directions_match_numpy_unproject(model: CameraModel) -> None:
    camera = _camera(model)
    pixels = cameras.pixel_centers(camera.width_px, camera.height_px).reshape(-1, 2)
    pixels = np.concatenate([pixels, pixels[:500] + 0.37])  # off-centre points too
    expected = cameras.unproject(camera, pixels)
    packed = pack_cameras([camera])
    selector = torch.zeros(len(pixels), dtype=torch.int64)
    got = camera_directions(packed[selector], torch.from_numpy(pixels)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, atol=1e-12)


def test_undistort_inverts_distort_and_projection_round_trips() -> None:
    coefficients = torch.tensor([DISTORTIONS[CameraModel.OPENCV]] * 400, dtype=torch.float64)
    points = torch.rand(400, 2, dtype=torch.float64) - 0.5
    back = undistort(distort(points, coefficients), coefficients)
    assert torch.allclose(back, points, atol=1e-12)
    camera = _camera(CameraModel.OPENCV_FISHEYE)
    directions = camera_directions(
        pack_cameras([camera])[torch.zeros(3, dtype=torch.int64)],
        torch.tensor([[5.5, 7.5], [30.4, 44.7], [55.5, 80.5]], dtype=torch.float64),
    )
    np.testing.assert_allclose(
        cameras.project(camera, directions.numpy()), [[5.5, 7.5], [30.4, 44.7], [55.5, 80.5]]
    )


def test_undistort_checking_residual_rarely_gives_the_same_answer() -> None:
    """Off the CPU the residual is read back only every 4th Newton step; extra steps at the
    solution must not move it (checked on the CPU by forcing the cadence)."""
    coefficients = torch.tensor([DISTORTIONS[CameraModel.OPENCV]] * 400, dtype=torch.float64)
    points = distort(torch.rand(400, 2, dtype=torch.float64) - 0.5, coefficients)
    every_step = undistort(points, coefficients)
    for check_every in (3, 4, 7):
        rarely = undistort(points, coefficients, check_every=check_every)
        assert torch.allclose(rarely, every_step, atol=1e-13, rtol=0)
    # these points need several Newton steps, so the comparison above is not trivially true
    stopped = undistort(points, coefficients, iterations=2, check_every=4)
    assert not torch.allclose(distort(stopped, coefficients), points, atol=1e-13, rtol=0)


def test_mixed_cameras_in_one_batch_use_their_own_model() -> None:
    pinhole, fisheye = _camera(CameraModel.OPENCV), _camera(CameraModel.OPENCV_FISHEYE)
    packed = pack_cameras([pinhole, fisheye])
    pixels = np.array([[10.5, 20.5], [10.5, 20.5]])
    got = camera_directions(packed[torch.tensor([0, 1])], torch.from_numpy(pixels)).numpy()
    np.testing.assert_allclose(got[0], cameras.unproject(pinhole, pixels[:1])[0], atol=1e-9)
    np.testing.assert_allclose(got[1], cameras.unproject(fisheye, pixels[:1])[0], atol=1e-9)
    assert np.abs(got[0] - got[1]).max() > 1e-2


def _angles_rad(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between direction rows, accurate for tiny angles (atan2 of |a x b| and a . b)."""
    return np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), np.einsum("ij,ij->i", a, b))


@pytest.mark.parametrize("model", list(DISTORTIONS))
def test_float32_rays_within_1e_6_rad_of_float64(model: CameraModel) -> None:
    """The training and eval ray maths run in float32 (``RAY_DTYPE``); on a full-size EyefulTower
    sensor (5784x8676, so pixel offsets reach thousands of px), through a rotation, every
    direction stays within 1e-6 rad of the float64 reference, fisheye edge included."""
    fisheye = model is CameraModel.OPENCV_FISHEYE
    camera = _camera(model, scale=96.4)  # 5784x8676
    if fisheye:  # a wider lens than _camera's: rays up to ~100 degrees off the axis
        camera = dataclasses.replace(camera, fx=1700.0, fy=1702.1, fisheye_crop_radius_px=2880.0)
    rng = np.random.default_rng(0)
    rows = rng.integers(0, camera.height_px, 20000)
    cols = rng.integers(0, camera.width_px, 20000)
    inside = valid_pixel_mask(camera)[rows, cols]
    rows, cols = torch.from_numpy(rows[inside]), torch.from_numpy(cols[inside])
    pose = np.eye(4)
    pose[:3, :3] = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    pose[:3, 3] = (0.3, -1.2, 0.7)
    world_from_cam = torch.from_numpy(pose)[None]
    selector = torch.zeros(len(rows), dtype=torch.int64)
    assert RAY_DTYPE is torch.float32
    fast = pixel_rays(
        pack_cameras([camera], dtype=RAY_DTYPE), world_from_cam.to(RAY_DTYPE), selector, rows, cols
    )
    exact = pixel_rays(pack_cameras([camera]), world_from_cam, selector, rows, cols)
    assert fast[1].dtype == torch.float32 and exact[1].dtype == torch.float64
    angles = _angles_rad(fast[1].double().numpy(), exact[1].numpy())
    assert angles.max() < 1e-6
    uv = np.stack([cols.numpy() + 0.5, rows.numpy() + 0.5], axis=-1)  # the numpy model agrees
    reference = cameras.unproject(camera, uv) @ pose[:3, :3].T
    assert _angles_rad(fast[1].double().numpy(), reference).max() < 1e-6
    if fisheye:  # the sample reaches the wide edge of the lens, where float32 is hardest
        assert np.arccos(np.clip(exact[1].numpy() @ pose[:3, 2], -1, 1)).max() > 1.4


def test_valid_pixel_mask_is_the_crop_circle() -> None:
    camera = _camera(CameraModel.OPENCV_FISHEYE)
    mask = valid_pixel_mask(camera)
    rows, cols = np.nonzero(mask)
    assert np.all(np.hypot(cols + 0.5 - camera.cx, rows + 0.5 - camera.cy) <= 25.0)
    assert mask.sum() == pytest.approx(np.pi * 25.0**2, rel=0.03)
    assert valid_pixel_mask(_camera(CameraModel.OPENCV)).all()


# ---------------------------------------------------------------------------------------------
# Ground truth from the synthetic capture.


def _transforms_from_ground_truth(capture: Path, out: Path, folder: str = "images-jpeg-2k") -> Path:
    """transforms.json written by the one writer from the synth's ground truth (y-up world)."""
    truth = ground_truth(capture)
    size = truth["folders"][folder]
    frames = []
    for key, image in sorted(truth["images"].items()):
        full = gt_camera(image["camera"])
        frames.append(
            Frame(
                image_path=str((capture / folder / f"{key}.jpg").resolve()),
                camera=cameras.rescale_camera(full, size["width"], size["height"]),
                world_from_cam=np.array(image["world_from_cam"]),
                camera_id=image["camera_id"],
                rig_position_id=image["frame_id"],
            )
        )
    scene = Scene(frames=tuple(frames), world_up=WorldUp.Y_UP, name="synth")
    path = out / "transforms.json"
    write_transforms(path, scene_to_transforms(scene))
    return path


def _check_rays_hit_ground_truth(capture: Path, transforms: Path) -> None:
    truth = ground_truth(capture)
    dataset = parse_dataset(transforms)
    # the run's dataparser_transforms.json means what nerfstudio's does:
    # p_normalised = scale * (transform @ [p_capture; 1]), from the capture's own (y-up) world
    saved_path = dataset.save_dataparser_transforms(transforms.parent / "dataparser.json")
    saved = json.loads(saved_path.read_text())
    normalised_from_capture = np.eye(4)
    normalised_from_capture[:3] = saved["scale"] * np.asarray(saved["transform"])
    rng = np.random.default_rng(0)
    count = 0
    for index in range(0, len(dataset), 3):
        camera = dataset.cameras[index]
        valid = np.argwhere(valid_pixel_mask(camera))  # [n, 2] (row, col)
        picks = valid[rng.choice(len(valid), size=min(64, len(valid)), replace=False)]
        rows, cols = torch.from_numpy(picks[:, 0]), torch.from_numpy(picks[:, 1])
        selector = torch.full((len(picks),), index, dtype=torch.int64)
        origins, directions = pixel_rays(
            pack_cameras(dataset.cameras),
            torch.from_numpy(dataset.world_from_cam),
            selector,
            rows,
            cols,
        )
        # ground truth: the synth's own ray through the same pixel centre, traced in y-up
        key = (
            Path(dataset.image_paths[index])
            .relative_to(dataset.image_paths[index].parents[1])
            .with_suffix("")
        )
        image = truth["images"][str(key)]
        truth_camera = cameras.rescale_camera(
            gt_camera(image["camera"]), camera.width_px, camera.height_px
        )
        uv = np.stack([picks[:, 1] + 0.5, picks[:, 0] + 0.5], axis=-1)
        points, _, _ = traced_points(  # [n, 3] capture world, metres
            truth_camera, np.array(image["world_from_cam"]), uv, seed=truth["seed"]
        )
        points_norm = points @ normalised_from_capture[:3, :3].T + normalised_from_capture[:3, 3]
        offset = points_norm - origins.numpy()
        along = np.einsum("ij,ij->i", offset, directions.numpy())
        miss = np.linalg.norm(offset - along[:, None] * directions.numpy(), axis=-1)
        assert np.all(along > 0), "ground-truth points must lie in front of the camera"
        assert np.max(miss) / dataset.dataparser_scale < 1e-4  # metres
        count += len(picks)
    assert count > 200


@pytest.mark.parametrize("rig", ["v2", "v1"])
def test_rays_hit_ground_truth_points(
    rig: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    capture = request.getfixturevalue(f"synth_{rig}")
    transforms = _transforms_from_ground_truth(capture, tmp_path)
    dataset = parse_dataset(transforms)
    assert dataset.cameras[0].is_fisheye == (rig == "v1")
    _check_rays_hit_ground_truth(capture, transforms)


@pytest.mark.parametrize("rig", ["v2", "v1"])
def test_rays_hit_ground_truth_points_after_convert(
    rig: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The same check through ``eyeful convert`` (KRT cameras.json -> transforms.json)."""
    from eyeful_tools import convert

    capture = tmp_path / "capture"
    shutil.copytree(request.getfixturevalue(f"synth_{rig}"), capture)
    convert.convert_capture(capture, resolutions=["jpeg_2k"])
    _check_rays_hit_ground_truth(capture, capture / "images-jpeg-2k" / "transforms.json")
