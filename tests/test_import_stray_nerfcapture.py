"""``eyeful import stray|nerfcapture``: exports generated from the synthetic scene, known poses."""

from __future__ import annotations

import json
import tempfile
import zipfile
from dataclasses import replace
from pathlib import Path

import cv2
import ios_fixtures as fx
import numpy as np
import pytest

from eyeful_tools.cli import main
from eyeful_tools.errors import InputFormatError
from eyeful_tools.ios_import import ImportOptions
from eyeful_tools.readers import stray
from eyeful_tools.readers.nerfcapture import import_nerfcapture
from eyeful_tools.readers.stray import import_stray
from eyeful_tools.transforms import read_transforms

N_VIEWS = 6
#: nerfstudio's documented ARKit y-up -> z-up change: new (x, y, z) = old (z, x, y), written
#: out here independently of eyeful_tools.cameras
ZUP_FROM_YUP = np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)


@pytest.fixture(scope="module")
def stray_views() -> list[fx.PhoneView]:
    return fx.make_views(fx.STRAY_CAMERA, N_VIEWS, fx.STRAY_DEPTH_SIZE_PX)


@pytest.fixture(scope="module")
def nerfcapture_views() -> list[fx.PhoneView]:
    views = fx.make_views(fx.NERFCAPTURE_CAMERA, N_VIEWS, fx.NERFCAPTURE_DEPTH_SIZE_PX)
    # ARKit's per-frame intrinsics drift a little (OIS); the top level holds the first frame's
    return [
        replace(v, camera=replace(v.camera, fx=v.camera.fx + 0.3 * i, cy=v.camera.cy - 0.1 * i))
        for i, v in enumerate(views)
    ]


def _pixel_in_nerfstudio_camera(item, point_world: np.ndarray) -> np.ndarray:
    """Project a world point with a transforms.json frame the way NeRF code reads it: OpenGL
    c2w (camera looks down -z, +y up), pinhole ``fl_x fl_y cx cy``, corner-origin pixels."""
    cam_from_world = np.linalg.inv(np.asarray(item.transform_matrix))
    x, y, z, _ = cam_from_world @ np.append(point_world, 1.0)
    return np.array([item.fl_x * x / -z + item.cx, item.fl_y * -y / -z + item.cy])


def _check_against_ground_truth(out: Path, views: list[fx.PhoneView], indices: list[int]) -> None:
    """Poses (after the y-up -> z-up world change), intrinsics, and a 3D point's pixel."""
    tf = read_transforms(out / "transforms.json")
    assert len(tf.frames) == len(indices)
    assert np.allclose(tf.applied_transform, ZUP_FROM_YUP[:3], atol=0)
    for item, index in zip(tf.frames, indices, strict=True):
        view = views[index]
        truth = view.world_from_cam  # OpenCV axes, y-up world
        # camera axes unchanged apart from OpenCV -> OpenGL (+y up, looking down -z)
        expected = ZUP_FROM_YUP @ truth @ np.diag([1.0, -1.0, -1.0, 1.0])
        assert np.allclose(item.transform_matrix, expected, atol=1e-6)
        camera = view.camera
        assert (item.fl_x, item.fl_y, item.cx, item.cy) == pytest.approx(
            (camera.fx, camera.fy, camera.cx, camera.cy), abs=1e-5
        )
        assert (item.w, item.h) == (camera.width_px, camera.height_px)
        # a point 2.5 m in front of ground-truth pixel (20.5, 15.5) lands on that pixel
        pixel = np.array([20.5, 15.5])
        ray = np.array([(pixel[0] - camera.cx) / camera.fx, (pixel[1] - camera.cy) / camera.fy, 1])
        point_yup = truth[:3, :3] @ (2.5 * ray) + truth[:3, 3]
        point_zup = ZUP_FROM_YUP[:3, :3] @ point_yup
        assert np.allclose(_pixel_in_nerfstudio_camera(item, point_zup), pixel, atol=1e-6)
        assert (out / item.file_path).is_file()


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


# ---------------------------------------------------------------------------------------------
# Stray Scanner


def test_stray_folder_poses_intrinsics_frames_and_depth(tmp_path: Path, stray_views) -> None:
    source = fx.write_stray_folder(tmp_path / "scan", stray_views, extra_video_frames=2)
    report = import_stray(source, tmp_path / "out")
    _check_against_ground_truth(tmp_path / "out", stray_views, list(range(N_VIEWS)))
    assert report.kept == N_VIEWS and report.depth_written == N_VIEWS
    line = report.one_line()
    assert "depth kept where confidence >= 1" in line
    assert "2 video frames without a pose ignored" in line
    tf = read_transforms(tmp_path / "out")
    # frame k of the video is odometry row k: each image is closest to its own render
    for k, item in enumerate(tf.frames):
        image = cv2.imread(str(tmp_path / "out" / item.file_path)).astype(float)
        errors = [
            np.mean(np.abs(image - cv2.imdecode(np.frombuffer(v.jpeg, np.uint8), 1)))
            for v in stray_views
        ]
        assert int(np.argmin(errors)) == k and errors[k] < 12
    depth = cv2.imread(str(tmp_path / "out" / tf.frames[3].depth_file_path), cv2.IMREAD_UNCHANGED)
    assert depth.dtype == np.uint16 and depth.shape == (48, 64)
    expected_mm = np.round(stray_views[3].depth_m * 1000).astype(np.uint16)
    expected_mm[0, 0] = 0  # confidence 0 is dropped, confidence 1 (pixel (0, 1)) kept
    assert np.array_equal(depth, cv2.resize(expected_mm, (64, 48), interpolation=cv2.INTER_NEAREST))
    assert np.all(depth[:4, 4:8] > 0)


def test_stray_zip_with_top_folder_min_confidence_and_max_frames(
    tmp_path: Path, stray_views, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = fx.write_stray_folder(tmp_path / "scan", stray_views)
    archive = fx.zip_folder(folder, tmp_path / "scan.zip", top_folder="a1b2c3d4e5")
    options = ImportOptions(max_frames=3)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    report = import_stray(archive, tmp_path / "out", options, min_confidence=2)
    assert not any((tmp_path / "tmp").iterdir())  # the video copied out of the zip is gone
    _check_against_ground_truth(tmp_path / "out", stray_views, [0, 2, 5])  # round(linspace)
    assert report.dropped_subsample == N_VIEWS - 3
    tf = read_transforms(tmp_path / "out")
    depth = cv2.imread(str(tmp_path / "out" / tf.frames[0].depth_file_path), cv2.IMREAD_UNCHANGED)
    assert np.all(depth[:4, :8] == 0) and np.all(depth[4:, :] > 0)  # confidence 0 and 1 dropped
    assert "confidence >= 2" in report.one_line()


def test_a_failed_video_copy_out_of_a_zip_leaves_no_temp_file(
    tmp_path: Path, stray_views, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temporary copy of rgb.mp4 is removed even when the copy itself fails (disk full)."""
    from eyeful_tools.ios_import import Source

    archive = fx.zip_folder(
        fx.write_stray_folder(tmp_path / "scan", stray_views), tmp_path / "s.zip"
    )
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))

    def full_disk(self, name: str, handle) -> None:
        handle.write(b"\0" * 1000)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Source, "copy_to", full_disk)
    with pytest.raises(OSError, match="No space left"):
        import_stray(archive, tmp_path / "out", ImportOptions())
    assert not any((tmp_path / "tmp").iterdir())
    assert not (tmp_path / "out").exists()


def test_stray_odometry_convention_is_the_apps_q_wa_times_q_ac() -> None:
    """A camera at the ARKit identity (OpenGL axes, looking down -z) is written with q_AC only:
    the imported camera looks down the world's -z with its +y pointing down (OpenCV)."""
    pose = stray.world_from_cam_from_odometry([1.0, 2.0, 3.0, *fx.STRAY_Q_AC])
    assert np.allclose(pose[:3, 2], [0, 0, -1]) and np.allclose(pose[:3, 1], [0, -1, 0])
    assert np.allclose(pose[:3, 3], [1, 2, 3])


def _break(source: Path, what: str) -> str:
    """Spoil one thing of a Stray export; return the file the error must name."""
    if what == "missing odometry":
        (source / "odometry.csv").unlink()
        return str(source / "odometry.csv")
    if what == "missing video":
        (source / "rgb.mp4").unlink()
        return str(source / "rgb.mp4")
    if what == "unreadable video":
        (source / "rgb.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
        return str(source / "rgb.mp4")
    if what == "frame count":
        lines = (source / "odometry.csv").read_text().splitlines()
        lines.append(lines[-1].replace(f"{N_VIEWS - 1:06d}", f"{N_VIEWS + 3:06d}", 1))
        (source / "odometry.csv").write_text("\n".join(lines))
        return str(source / "rgb.mp4")
    if what == "bad row":
        lines = (source / "odometry.csv").read_text().splitlines()
        cells = lines[3].split(", ")
        cells[5] = "nan?"
        lines[3] = ", ".join(cells)
        (source / "odometry.csv").write_text("\n".join(lines))
        return str(source / "odometry.csv")
    raise AssertionError(what)


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("missing odometry", "not a Stray Scanner export (no odometry.csv)"),
        ("missing video", "file not found"),
        ("unreadable video", "cannot open the video"),
        ("frame count", f"has {N_VIEWS} frames but odometry.csv refers to frame {N_VIEWS + 3}"),
        ("bad row", "line 4: qx is not a number ('nan?')"),
    ],
)
def test_stray_errors_name_the_file_and_write_nothing(
    tmp_path: Path, capsys, stray_views, what: str, message: str
) -> None:
    source = fx.write_stray_folder(tmp_path / "scan", stray_views)
    where = _break(source, what)
    out = tmp_path / "out"
    assert main(["import", "stray", str(source), "--out", str(out)]) == 1
    line = _error_line(capsys)
    assert line.startswith(f"error: {where}: ") and message in line, line
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan"]


def test_stray_camera_matrix_and_header_checks(tmp_path: Path, stray_views) -> None:
    source = fx.write_stray_folder(tmp_path / "scan", stray_views)
    good = (source / "camera_matrix.csv").read_text()
    (source / "camera_matrix.csv").write_text("52.0, 0.0, 31.7\n0.0, 52.4, 24.6\n")
    with pytest.raises(InputFormatError, match="3 rows of 3"):
        import_stray(source, tmp_path / "out")
    (source / "camera_matrix.csv").write_text(good)
    lines = (source / "odometry.csv").read_text().splitlines()
    (source / "odometry.csv").write_text("\n".join(["x, y, z, qx, qy, qz, qw", *lines[1:]]))
    with pytest.raises(InputFormatError, match="header lacks frame"):
        import_stray(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_stray_per_frame_intrinsics_columns_win(tmp_path: Path, stray_views) -> None:
    """Exports with ``fx, fy, cx, cy`` columns in odometry.csv use them per frame."""
    source = fx.write_stray_folder(tmp_path / "scan", stray_views)
    lines = (source / "odometry.csv").read_text().splitlines()
    rows = [lines[0] + ", fx, fy, cx, cy"]
    rows += [f"{line}, {50.0 + i}, 50.5, 32.0, 24.0" for i, line in enumerate(lines[1:])]
    (source / "odometry.csv").write_text("\n".join(rows))
    import_stray(source, tmp_path / "out")
    tf = read_transforms(tmp_path / "out")
    assert [f.fl_x for f in tf.frames] == [50.0 + i for i in range(N_VIEWS)]
    assert {(f.fl_y, f.cx, f.cy) for f in tf.frames} == {(50.5, 32.0, 24.0)}


def test_cli_stray_summary(tmp_path: Path, capsys, stray_views) -> None:
    source = fx.write_stray_folder(tmp_path / "scan", stray_views)
    out = tmp_path / "data" / "scan"
    args = ["import", "stray", str(source), "--out", str(out), "--max-frames", "4"]
    extra = ["--min-confidence", "1", "--blur-filter", "percentile:20", "--rotate", "ccw"]
    assert main([*args, *extra]) == 0
    line = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert line.startswith(f"imported 4 of {N_VIEWS} frames into {out}")
    assert "1 blurry" in line and "1 by --max-frames" in line and "depth for 4" in line
    assert "turned a quarter turn counter-clockwise" in line
    assert sorted(p.name for p in out.iterdir()) == ["depth", "images", "transforms.json"]
    tf = read_transforms(out)
    image = cv2.imread(str(out / tf.frames[0].file_path))
    assert image.shape[:2] == (64, 48) and (tf.frames[0].w, tf.frames[0].h) == (48, 64)


# ---------------------------------------------------------------------------------------------
# NeRFCapture


def test_nerfcapture_offline_zip_resolves_paths_and_skips_rgba_depth(
    tmp_path: Path, nerfcapture_views
) -> None:
    folder = fx.write_nerfcapture_folder(tmp_path / "project", nerfcapture_views, flavour="app")
    archive = fx.zip_folder(folder, tmp_path / "240101120000.zip", top_folder="240101120000")
    report = import_nerfcapture(archive, tmp_path / "out")
    _check_against_ground_truth(tmp_path / "out", nerfcapture_views, list(range(N_VIEWS)))
    assert report.depth_written == 0
    assert "depth skipped: images/0.depth.png is 8-bit RGBA, not 16-bit depth" in report.one_line()
    tf = read_transforms(tmp_path / "out")
    assert all(f.depth_file_path is None for f in tf.frames)
    assert [f.file_path for f in tf.frames] == [f"images/frame_{i:05d}.png" for i in range(6)]
    assert not (tmp_path / "out" / "depth").exists()
    assert "eyeful" in json.loads((tmp_path / "out" / "transforms.json").read_text())


def test_nerfcapture2nerf_output_with_16_bit_depth(tmp_path: Path, nerfcapture_views) -> None:
    source = fx.write_nerfcapture_folder(tmp_path / "ngp", nerfcapture_views, flavour="ngp")
    report = import_nerfcapture(source, tmp_path / "out")
    _check_against_ground_truth(tmp_path / "out", nerfcapture_views, list(range(N_VIEWS)))
    assert report.depth_written == N_VIEWS
    tf = read_transforms(tmp_path / "out")
    for index in (0, 4):
        path = tmp_path / "out" / tf.frames[index].depth_file_path
        depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert depth.dtype == np.uint16 and depth.shape == (48, 64)
        view = nerfcapture_views[index]
        truth_mm = cv2.resize(view.depth_m * 1000, (64, 48), interpolation=cv2.INTER_NEAREST)
        assert np.max(np.abs(depth.astype(float) - truth_mm)) <= 1.0  # 0.15 mm steps + rounding
        assert np.all(depth > 0)


def test_nerfcapture_damaged_depth_member_loses_only_its_depth(
    tmp_path: Path, nerfcapture_views
) -> None:
    """#15: the first depth member, read for its PNG header, killed the whole import when its
    zip data was damaged; now only that frame goes without depth, as with a bad file."""
    source = fx.write_nerfcapture_folder(tmp_path / "ngp", nerfcapture_views, flavour="ngp")
    archive = fx.zip_folder(source, tmp_path / "capture.zip", top_folder="project")
    fx.damage_member(archive, "project/images/0.depth.png")
    report = import_nerfcapture(archive, tmp_path / "out")
    assert report.kept == N_VIEWS and report.depth_written == N_VIEWS - 1
    tf = read_transforms(tmp_path / "out")
    assert [f.depth_file_path is None for f in tf.frames] == [True] + [False] * (N_VIEWS - 1)


def test_nerfcapture_top_level_intrinsics_and_missing_image(
    tmp_path: Path, capsys, nerfcapture_views
) -> None:
    first = nerfcapture_views[0].camera  # without per-frame values the top level serves all
    same = [replace(v, camera=first) for v in nerfcapture_views]
    source = fx.write_nerfcapture_folder(
        tmp_path / "ngp", same, flavour="ngp", per_frame_intrinsics=False
    )
    import_nerfcapture(source, tmp_path / "out")
    _check_against_ground_truth(tmp_path / "out", same, list(range(N_VIEWS)))
    (source / "images" / "3.png").unlink()
    out = tmp_path / "out2"
    assert main(["import", "nerfcapture", str(source), "--out", str(out)]) == 1
    line = _error_line(capsys)
    assert line.startswith(f"error: {source / 'images' / '3'}: frames[3]: no image 'images/3'")
    assert not out.exists()


def test_nerfcapture_column_major_matrix_is_refused(tmp_path: Path, nerfcapture_views) -> None:
    source = fx.write_nerfcapture_folder(tmp_path / "app", nerfcapture_views)
    manifest = json.loads((source / "transforms.json").read_text())
    manifest["frames"][2]["transform_matrix"] = np.array(
        manifest["frames"][2]["transform_matrix"]
    ).T.tolist()
    (source / "transforms.json").write_text(json.dumps(manifest))
    with pytest.raises(InputFormatError, match=r"frames\[2\]: transform_matrix's last row"):
        import_nerfcapture(source, tmp_path / "out")


def test_cli_nerfcapture_summary(tmp_path: Path, capsys, nerfcapture_views) -> None:
    folder = fx.write_nerfcapture_folder(tmp_path / "p", nerfcapture_views, flavour="app")
    archive = fx.zip_folder(folder, tmp_path / "capture.zip", top_folder="240101120000")
    out = tmp_path / "data" / "mug"
    assert main(["import", "nerfcapture", str(archive), "--out", str(out)]) == 0
    line = " ".join(capsys.readouterr().err.split())
    assert line.startswith(f"imported {N_VIEWS} of {N_VIEWS} frames into {out}; depth for 0")
    assert "8-bit RGBA, not 16-bit depth" in line
    with zipfile.ZipFile(archive) as zipped:
        assert "240101120000/images/0.png" in zipped.namelist()
