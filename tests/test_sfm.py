"""SfM import (pycolmap on CPU): rendered views of the synthetic scene come back with their poses."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import look_at

from eyeful_tools import sfm, transforms
from eyeful_tools.cameras import Camera, CameraModel, rotation_angle_rad
from eyeful_tools.cli import main
from eyeful_tools.imageio import write_image
from eyeful_tools.synth.render import render, srgb_from_linear

VIEWS = 24
#: tiny renders have plenty of features (2048 per image halves the run time); one thread makes
#: the run reproducible, so the accuracy asserts cannot flake (and costs little on 2 cores)
FAST = ["--max-features", "2048", "--threads", "1"]
CAMERA = Camera(
    model=CameraModel.PINHOLE, width_px=320, height_px=240, fx=230.0, fy=230.0, cx=160.0, cy=120.0
)


def _walk() -> list[np.ndarray]:
    """A 3.2 m walk across the room towards the far wall, bobbing, panning and rolling a little
    (general motion: an orbit around one point makes the focal length poorly determined)."""
    poses = []
    for index in range(VIEWS):
        t = index / (VIEWS - 1)
        eye = np.array([-1.6 + 3.2 * t, 1.2 + 0.3 * math.sin(7 * t), 1.6 + 0.5 * math.sin(5 * t)])
        direction = np.array([0.5 * math.sin(6 * t) - 0.3 * eye[0], -0.2, -1.0])
        poses.append(look_at(eye, eye + direction, 10.0 * math.sin(9 * t)))
    return poses


@pytest.fixture(scope="module")
def views(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """24 pinhole renders (320x240 sRGB JPEG) and their ground-truth world_from_cam by name."""
    folder = tmp_path_factory.mktemp("views")
    truth = {}
    for index, pose in enumerate(_walk()):
        radiance, _ = render(CAMERA, pose, seed=0, supersample=1)
        name = f"view_{index:02d}.jpg"
        write_image(folder / name, srgb_from_linear(radiance))
        truth[name] = pose
    return folder, truth


def _pose_errors(transforms_path: Path, truth: dict[str, np.ndarray]) -> tuple[float, float]:
    """Max rotation error (deg) and max centre error (m) after the best similarity alignment:
    rotation from the camera orientations (chordal mean), then scale and shift of the centres."""
    scene = transforms.transforms_to_scene(transforms.read_transforms(transforms_path))
    estimated = np.stack([f.world_from_cam for f in scene.frames])  # [N, 4, 4]
    expected = np.stack([truth[Path(f.image_path).name] for f in scene.frames])  # [N, 4, 4]
    u, _, vt = np.linalg.svd(np.einsum("nij,nkj->ik", expected[:, :3, :3], estimated[:, :3, :3]))
    rotation = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt  # truth_from_estimate
    rotation_deg = max(
        math.degrees(rotation_angle_rad(rotation @ e[:3, :3], g[:3, :3]))
        for e, g in zip(estimated, expected, strict=True)
    )
    centres = estimated[:, :3, 3] @ rotation.T
    centred, target = centres - centres.mean(0), expected[:, :3, 3] - expected[:, :3, 3].mean(0)
    scale = float((centred * target).sum() / (centred * centred).sum())
    return rotation_deg, float(np.abs(scale * centred - target).max())


def test_import_images_recovers_the_rendered_poses(views, tmp_path: Path, capsys) -> None:
    folder, truth = views
    out = tmp_path / "photos"
    assert main(["import", "images", str(folder), "--out", str(out), *FAST]) == 0
    line = capsys.readouterr().err
    assert f"import images: {VIEWS}/{VIEWS} images registered (exhaustive matching" in line
    tf = transforms.read_transforms(out / "transforms.json")
    assert len(tf.frames) == VIEWS and tf.ply_file_path == "sparse_pc.ply"
    assert tf.train_filenames and tf.val_filenames and tf.test_filenames
    assert not transforms.missing_files(out / "transforms.json", [f.file_path for f in tf.frames])
    assert (out / "colmap" / "sparse" / "0" / "images.bin").is_file()
    rotation_deg, centre_m = _pose_errors(out / "transforms.json", truth)
    assert rotation_deg < 1.0
    assert centre_m < 0.05  # on a 3.2 m walk
    assert tf.frames[0].fl_x == pytest.approx(CAMERA.fx, rel=0.05)
    # a second import into the same folder would mix two datasets: refused, nothing touched
    before = (out / "transforms.json").read_bytes()
    assert main(["import", "images", str(folder), "--out", str(out), *FAST]) == 1
    err = capsys.readouterr().err
    assert "already holds colmap, images, sparse_pc.ply, transforms.json (pass --overwrite)" in err
    assert (out / "transforms.json").read_bytes() == before
    (out / "images" / "stale.jpg").write_bytes(b"left from an older import")
    assert main(["import", "images", str(folder), "--out", str(out), *FAST, "--overwrite"]) == 0
    assert not (out / "images" / "stale.jpg").exists()  # replaced, not merged
    assert len(transforms.read_transforms(out / "transforms.json").frames) == VIEWS


@pytest.mark.slow
def test_import_video_keeps_the_sharpest_frames(views, tmp_path: Path, capsys) -> None:
    """Each view appears twice in the video, blurred then sharp: with one kept frame per two,
    the sharp copies are chosen and SfM registers all of them (sequential matching)."""
    folder, truth = views
    video = tmp_path / "walk.avi"
    writer = cv2.VideoWriter(
        str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (CAMERA.width_px, CAMERA.height_px)
    )
    for name in sorted(truth):
        frame = cv2.imread(str(folder / name))
        writer.write(cv2.GaussianBlur(frame, (0, 0), 2.5))
        writer.write(frame)
    writer.release()
    out = tmp_path / "walk"
    argv = ["import", "video", str(video), "--out", str(out), "--max-frames", str(VIEWS)]
    assert main([*argv, *FAST]) == 0
    line = capsys.readouterr().err
    assert f"{VIEWS}/{VIEWS} images registered (sequential matching" in line
    assert "sharpest of every 2 frames" in line
    tf = transforms.read_transforms(out / "transforms.json")
    kept = sorted(Path(f.file_path).name for f in tf.frames)
    assert kept == [f"frame_{2 * i + 1:05d}.jpg" for i in range(VIEWS)]
    by_frame = {f"frame_{2 * i + 1:05d}.jpg": truth[n] for i, n in enumerate(sorted(truth))}
    rotation_deg, _ = _pose_errors(out / "transforms.json", by_frame)
    assert rotation_deg < 1.0


def test_too_few_registered_images_is_a_clear_error(tmp_path: Path, capsys) -> None:
    """Unrelated noise images: nothing registers; one line says so and nothing is left."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "noise"
    for index in range(4):
        write_image(folder / f"n{index}.png", rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    out = tmp_path / "out"
    assert main(["import", "images", str(folder), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {folder}: SfM registered only 0 of 4 images (need 2)")
    assert len(err.splitlines()) == 1
    assert not out.exists()


def test_a_failed_overwrite_keeps_the_old_dataset(tmp_path: Path, capsys) -> None:
    """--overwrite builds the new dataset beside the old one and swaps only on success: SfM
    failing (nothing registers) leaves the old dataset byte for byte, and no temp folders."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "noise"
    for index in range(3):
        write_image(folder / f"n{index}.png", rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    (out / "images" / "a.jpg").write_bytes(b"old image")
    (out / "transforms.json").write_text('{"frames": []}')
    assert main(["import", "images", str(folder), "--out", str(out), "--overwrite"]) == 1
    assert "SfM registered only 0 of 3 images" in capsys.readouterr().err
    assert (out / "images" / "a.jpg").read_bytes() == b"old image"
    assert (out / "transforms.json").read_text() == '{"frames": []}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noise", "out"]


def test_bad_sources_are_refused(tmp_path: Path, capsys) -> None:
    assert main(["import", "images", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err.strip().endswith("none: images folder not found")
    (tmp_path / "empty").mkdir()
    assert main(["import", "images", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 1
    assert "no images (.jpg, .jpeg, .png) found" in capsys.readouterr().err
    (tmp_path / "clip.mp4").write_bytes(b"not a video")
    assert main(["import", "video", str(tmp_path / "clip.mp4"), "--out", str(tmp_path / "o")]) == 1
    assert "clip.mp4: cannot open the video" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    argv = ["import", "images", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]
    assert main([*argv, "--matcher", "nearest"]) == 1
    assert (
        "error: --matcher: expected one of auto, exhaustive, sequential" in capsys.readouterr().err
    )


def test_matcher_choice() -> None:
    assert sfm.choose_matcher("auto", 24, video=False) is sfm.Matcher.EXHAUSTIVE
    assert sfm.choose_matcher("auto", 24, video=True) is sfm.Matcher.SEQUENTIAL
    many = sfm.EXHAUSTIVE_MAX_IMAGES + 1
    assert sfm.choose_matcher("auto", many, video=False) is sfm.Matcher.SEQUENTIAL
    assert sfm.choose_matcher("exhaustive", many, video=True) is sfm.Matcher.EXHAUSTIVE
