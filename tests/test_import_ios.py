"""``eyeful import record3d|polycam``: exports generated from the synthetic scene, known poses."""

from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import replace
from pathlib import Path

import cv2
import ios_fixtures as fx
import numpy as np
import pytest
from helpers import look_at
from peer import needs_peer, run_peer

from eyeful_tools import blur, cameras
from eyeful_tools.archive import Source, is_safe_member
from eyeful_tools.cameras import WorldUp
from eyeful_tools.cli import main
from eyeful_tools.errors import InputFormatError, LimitError, UsageError
from eyeful_tools.ios_import import ImportOptions
from eyeful_tools.readers import record3d
from eyeful_tools.readers.polycam import import_polycam
from eyeful_tools.readers.record3d import import_record3d
from eyeful_tools.transforms import read_transforms, transforms_to_scene

N_VIEWS = 6
BLURRED = 3  # the view blurred on purpose
#: nerfstudio's documented ARKit y-up -> z-up change: new (x, y, z) = old (z, x, y), written
#: out here independently of eyeful_tools.cameras
ZUP_FROM_YUP = np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)
#: .r3d depth needs the optional ``lzfse`` package (test extra); the no-LZFSE path runs always
needs_lzfse = pytest.mark.skipif(fx.lzfse is None, reason="optional 'lzfse' package not installed")


@pytest.fixture(scope="module")
def r3d_views() -> list[fx.PhoneView]:
    views = fx.make_views(fx.RECORD3D_CAMERA, N_VIEWS, fx.DEPTH_SIZE_PX, blurred=(BLURRED,))
    # per-frame intrinsics drift a little (OIS), as in newer exports
    return [
        replace(v, camera=replace(v.camera, fx=v.camera.fx + 0.3 * i, cy=v.camera.cy - 0.1 * i))
        for i, v in enumerate(views)
    ]


@pytest.fixture(scope="module")
def polycam_views() -> list[fx.PhoneView]:
    return fx.make_views(fx.POLYCAM_CAMERA, N_VIEWS, fx.POLYCAM_DEPTH_SIZE_PX, blurred=(BLURRED,))


def _opengl_c2w_ground_truth(view: fx.PhoneView) -> np.ndarray:
    return cameras.opengl_from_opencv_pose(view.world_from_cam)


def _check_poses_and_intrinsics(
    out: Path, views: list[fx.PhoneView], indices: list[int], per_frame: bool = True
) -> None:
    tf = read_transforms(out / "transforms.json")
    assert len(tf.frames) == len(indices)
    assert np.allclose(tf.applied_transform, ZUP_FROM_YUP[:3], atol=0)
    scene = transforms_to_scene(tf)
    for frame, item, index in zip(scene.frames, tf.frames, indices, strict=True):
        view = views[index]
        # canonical: OpenCV axes, z-up output world
        expected = cameras.output_world_from_source(WorldUp.Y_UP) @ view.world_from_cam
        assert np.allclose(frame.world_from_cam, expected, atol=1e-6)
        # the file: the documented convention change applied to the app's own OpenGL c2w
        expected_file = ZUP_FROM_YUP @ _opengl_c2w_ground_truth(view)
        assert np.allclose(item.transform_matrix, expected_file, atol=1e-6)
        camera = view.camera if per_frame else views[0].camera
        assert (item.fl_x, item.fl_y, item.cx, item.cy) == pytest.approx(
            (camera.fx, camera.fy, camera.cx, camera.cy), abs=1e-9
        )
        assert (item.w, item.h) == (camera.width_px, camera.height_px)
        assert (out / item.file_path).is_file()


# ---------------------------------------------------------------------------------------------
# Record3D


def test_record3d_exr_folder_poses_intrinsics_and_depth(tmp_path: Path, r3d_views) -> None:
    source = fx.write_record3d_folder(tmp_path / "exr", r3d_views, per_frame=False)
    report = import_record3d(source, tmp_path / "out")
    _check_poses_and_intrinsics(tmp_path / "out", r3d_views, list(range(N_VIEWS)), per_frame=False)
    assert report.kept == N_VIEWS and report.depth_written == N_VIEWS
    tf = read_transforms(tmp_path / "out")
    depth = cv2.imread(str(tmp_path / "out" / tf.frames[2].depth_file_path), cv2.IMREAD_UNCHANGED)
    assert depth.dtype == np.uint16 and depth.shape == (64, 48)
    expected_mm = np.round(r3d_views[2].depth_m * 1000).astype(np.uint16)
    assert np.array_equal(depth, cv2.resize(expected_mm, (48, 64), interpolation=cv2.INTER_NEAREST))
    # every-8th split over the sequence, val == test, all three filled
    assert tf.val_filenames == tf.test_filenames == ["images/frame_00000.jpg"]
    assert len(tf.train_filenames) == N_VIEWS - 1


@needs_lzfse
def test_record3d_r3d_archive_per_frame_intrinsics_and_confidence(
    tmp_path: Path, r3d_views
) -> None:
    archive = fx.write_r3d(tmp_path / "scan.r3d", r3d_views, per_frame=True)
    report = import_record3d(archive, tmp_path / "out")
    _check_poses_and_intrinsics(tmp_path / "out", r3d_views, list(range(N_VIEWS)))
    assert report.depth_written == N_VIEWS
    tf = read_transforms(tmp_path / "out")
    depth = cv2.imread(str(tmp_path / "out" / tf.frames[0].depth_file_path), cv2.IMREAD_UNCHANGED)
    # the low-confidence depth pixel (0, 0) covers a 4x4 block at image size; it is invalid (0)
    assert np.all(depth[:4, :4] == 0) and np.all(depth[4:, 4:] > 0)
    assert abs(int(depth[10, 10]) - round(float(r3d_views[0].depth_m[2, 2]) * 1000)) <= 1


def test_record3d_without_lzfse_imports_rgb_and_says_depth_was_skipped(
    tmp_path: Path, r3d_views, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(record3d, "lzfse_available", lambda: False)
    archive = fx.write_r3d(tmp_path / "scan.r3d", r3d_views)
    report = import_record3d(archive, tmp_path / "out")
    assert report.kept == N_VIEWS and report.depth_written == 0
    assert "depth skipped" in report.one_line() and "lzfse" in report.one_line()
    assert all(f.depth_file_path is None for f in read_transforms(tmp_path / "out").frames)


def test_record3d_blur_filter_drops_the_blurred_frame(tmp_path: Path, r3d_views) -> None:
    source = fx.write_record3d_folder(tmp_path / "exr", r3d_views)
    options = ImportOptions(blur_filter=blur.parse_blur_filter("percentile:10"))
    report = import_record3d(source, tmp_path / "out", options)
    assert report.dropped_blurry == [f"frame_{BLURRED:05d}"]
    kept = [i for i in range(N_VIEWS) if i != BLURRED]
    _check_poses_and_intrinsics(tmp_path / "out", r3d_views, kept, per_frame=False)


def test_max_frames_subsamples_evenly_keeping_first_and_last(tmp_path: Path, r3d_views) -> None:
    source = fx.write_record3d_folder(tmp_path / "exr", r3d_views)
    report = import_record3d(source, tmp_path / "out", ImportOptions(max_frames=3))
    assert report.dropped_subsample == 3
    _check_poses_and_intrinsics(tmp_path / "out", r3d_views, [0, 2, 5], per_frame=False)


# ---------------------------------------------------------------------------------------------
# Polycam


def test_polycam_folder_prefers_corrected_cameras(tmp_path: Path, polycam_views) -> None:
    source = fx.write_polycam_folder(tmp_path / "pc", polycam_views)
    report = import_polycam(source, tmp_path / "out")
    _check_poses_and_intrinsics(tmp_path / "out", polycam_views, list(range(N_VIEWS)))
    assert report.depth_written == N_VIEWS
    tf = read_transforms(tmp_path / "out")
    stamps = fx.polycam_timestamps(N_VIEWS)
    assert [f.file_path for f in tf.frames] == [f"images/{s}.jpg" for s in stamps]
    depth = cv2.imread(str(tmp_path / "out" / tf.frames[1].depth_file_path), cv2.IMREAD_UNCHANGED)
    assert depth.shape == (48, 64) and np.all(depth[:4, :4] == 0) and np.all(depth[4:, 4:] > 0)
    # nerfstudio's own formula (ios.md 2.3): rows (t_2*, t_0*, t_1*) of the camera json
    camera_json = json.loads(
        (source / "keyframes" / "corrected_cameras" / f"{stamps[1]}.json").read_text()
    )
    rows = [[camera_json[f"t_{r}{c}"] for c in range(4)] for r in (2, 0, 1)]
    assert np.allclose(np.asarray(tf.frames[1].transform_matrix)[:3], rows, atol=1e-12)


@pytest.mark.parametrize("top_folder", [None, "capture"])
def test_polycam_zip_without_depth_or_sizes(tmp_path: Path, polycam_views, top_folder) -> None:
    folder = fx.write_polycam_folder(
        tmp_path / "pc", polycam_views, depth=False, corrected_sizes=False, raw_sizes=False
    )
    archive = fx.zip_folder(folder, tmp_path / "pc.zip", top_folder)
    with zipfile.ZipFile(archive, "a") as handle:  # what macOS Finder adds
        handle.writestr("__MACOSX/keyframes/images/._1.jpg", b"\x00\x05\x16\x07")
    report = import_polycam(archive, tmp_path / "out")
    _check_poses_and_intrinsics(tmp_path / "out", polycam_views, list(range(N_VIEWS)))
    assert report.depth_written == 0 and "no depth/" in report.one_line()


def test_polycam_falls_back_to_raw_cameras(tmp_path: Path, polycam_views) -> None:
    source = fx.write_polycam_folder(tmp_path / "pc", polycam_views, corrected=False)
    report = import_polycam(source, tmp_path / "out")
    assert "used raw ARKit poses" in report.one_line()
    tf = read_transforms(tmp_path / "out")
    drift = (
        np.asarray(tf.frames[0].transform_matrix)[:3, 3]
        - (ZUP_FROM_YUP @ _opengl_c2w_ground_truth(polycam_views[0]))[:3, 3]
    )
    assert np.allclose(drift, ZUP_FROM_YUP[:3, :3] @ [0.05, 0.0, -0.02], atol=1e-9)


def test_polycam_blur_score_threshold(tmp_path: Path, polycam_views) -> None:
    scores = [90.0] * N_VIEWS
    scores[1] = 12.0  # the app says frame 1 is blurry (its pixels are sharp)
    source = fx.write_polycam_folder(tmp_path / "pc", polycam_views, blur_scores=scores)
    options = ImportOptions(blur_filter=blur.parse_blur_filter("threshold:25"))
    report = import_polycam(source, tmp_path / "out", options)
    assert report.dropped_blurry == [str(fx.polycam_timestamps(N_VIEWS)[1])]
    assert "polycam score" in report.one_line()


def test_polycam_without_scores_uses_the_laplacian(tmp_path: Path, polycam_views) -> None:
    source = fx.write_polycam_folder(tmp_path / "pc", polycam_views)
    options = ImportOptions(blur_filter=blur.parse_blur_filter("percentile:10"))
    report = import_polycam(source, tmp_path / "out", options)
    assert report.dropped_blurry == [str(fx.polycam_timestamps(N_VIEWS)[BLURRED])]


# ---------------------------------------------------------------------------------------------
# Blur scores


def test_sharpness_and_selection(polycam_views) -> None:
    def grey(view: fx.PhoneView) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(view.jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)

    scores = [blur.sharpness(grey(v)) for v in polycam_views]
    assert int(np.argmin(scores)) == BLURRED
    threshold = (scores[BLURRED] + min(s for i, s in enumerate(scores) if i != BLURRED)) / 2
    assert blur.select_sharp(scores, threshold=threshold).tolist() == [
        i != BLURRED for i in range(N_VIEWS)
    ]
    assert blur.select_sharp([5.0, 1.0, 3.0], percentile=0).all()
    assert blur.select_sharp([5.0, 1.0, 3.0, 4.0], percentile=50).tolist() == [
        True,
        False,
        False,
        True,
    ]
    # a larger copy scores about the same (fixed-size reduction first)
    big = cv2.resize(grey(polycam_views[0]), (1280, 960), interpolation=cv2.INTER_NEAREST)
    assert blur.sharpness(big) > 0


def test_parse_blur_filter() -> None:
    assert blur.parse_blur_filter("percentile:10") == blur.BlurFilter(percentile=10.0)
    assert blur.parse_blur_filter("threshold:25") == blur.BlurFilter(threshold=25.0)
    assert blur.parse_blur_filter("10%") == blur.BlurFilter(percentile=10.0)
    assert not blur.parse_blur_filter("none").active
    for bad in ("percentile:100", "threshold:-1", "sharpest", "percentile:x"):
        with pytest.raises(UsageError, match="--blur-filter"):
            blur.parse_blur_filter(bad)


# ---------------------------------------------------------------------------------------------
# Bad input: clear one-line errors, nothing written.


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_zip_member_escaping_the_output_is_refused(tmp_path: Path, capsys, polycam_views) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("keyframes/cameras/1.json", "{}")
        handle.writestr("../../escape.txt", "gotcha")
    rc = main(["import", "polycam", str(archive), "--out", str(tmp_path / "out")])
    assert rc == 1
    line = _error_line(capsys)
    assert line.startswith(f"error: {archive}: archive member '../../escape.txt' would escape")
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "escape.txt").exists()
    assert not is_safe_member("/etc/passwd") and not is_safe_member("a/../../b")
    assert not is_safe_member("C:/x") and not is_safe_member("a\\..\\b")
    assert is_safe_member("keyframes/images/1.jpg")


def test_metadata_without_poses(tmp_path: Path, capsys, r3d_views) -> None:
    source = fx.write_record3d_folder(tmp_path / "exr", r3d_views)
    meta = json.loads((source / "metadata.json").read_text())
    del meta["poses"]
    (source / "metadata.json").write_text(json.dumps(meta))
    assert main(["import", "record3d", str(source), "--out", str(tmp_path / "out")]) == 1
    assert _error_line(capsys) == (
        f"error: {source / 'metadata.json'}: missing 'poses' (the per-frame camera poses)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exr"]


def _drop_from_r3d(archive: Path, out: Path, meta: dict, image: int) -> Path:
    """A copy of ``archive`` with ``meta`` as metadata and image ``<image>.jpg`` deleted."""
    with zipfile.ZipFile(archive) as old, zipfile.ZipFile(out, "w") as new:
        for item in old.infolist():
            if item.filename != f"rgbd/{image}.jpg":
                data = json.dumps(meta) if item.filename == "metadata" else old.read(item)
                new.writestr(item.filename, data)
    return out


def test_images_with_a_gap_keep_their_own_poses(tmp_path: Path, capsys, r3d_views) -> None:
    """#15: images 0, 1, 3, 4, 5 with 5 poses used to be matched by order (image 3 on pose 2,
    ...: wrong poses, exit 0). Now by number: 5.jpg has no pose, pose 2 no image; both listed."""
    meta = fx.record3d_metadata(r3d_views, per_frame=True)
    meta["poses"] = meta["poses"][:-1]
    meta["perFrameIntrinsicCoeffs"] = meta["perFrameIntrinsicCoeffs"][:-1]
    archive = fx.write_r3d(tmp_path / "scan.r3d", r3d_views)
    gapped = _drop_from_r3d(archive, tmp_path / "gap.r3d", meta, image=2)
    out = tmp_path / "out"
    assert main(["import", "record3d", str(gapped), "--out", str(out)]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "imported 4 of 4 frames" in err
    assert "images without a pose: 1 skipped (5.jpg)" in err
    assert "poses without an image: 1 skipped (2)" in err
    _check_poses_and_intrinsics(out, r3d_views, [0, 1, 3, 4])


def test_deleted_images_with_kept_poses_import_the_rest(tmp_path: Path, r3d_views) -> None:
    """#15: a real export whose images were thinned but whose poses were all kept was refused
    ("6 poses but 5 images")."""
    source = fx.write_record3d_folder(tmp_path / "exr", r3d_views)
    (source / "rgb" / "4.jpg").unlink()
    report = import_record3d(source, tmp_path / "out")
    assert "poses without an image: 1 skipped (4)" in report.one_line()
    _check_poses_and_intrinsics(tmp_path / "out", r3d_views, [0, 1, 2, 3, 5], per_frame=False)


@pytest.mark.parametrize("drop", [None, 3])
def test_an_export_numbered_from_1_maps_image_i_to_pose_i_minus_1(
    tmp_path: Path, r3d_views, drop: int | None
) -> None:
    """Images 1..N for N poses: image 1 is pose 0 (by number it was pose 1, and the last image
    had none: every frame one pose off), also with an image missing in between."""
    source = fx.write_record3d_folder(tmp_path / "exr", r3d_views)
    for index in reversed(range(N_VIEWS)):
        for folder, suffix in (("rgb", "jpg"), ("depth", "exr")):
            (source / folder / f"{index}.{suffix}").rename(
                source / folder / f"{index + 1}.{suffix}"
            )
    if drop is not None:
        (source / "rgb" / f"{drop + 1}.jpg").unlink()
    report = import_record3d(source, tmp_path / "out")
    assert "images numbered from 1" in report.one_line()
    kept = [i for i in range(N_VIEWS) if i != drop]
    _check_poses_and_intrinsics(tmp_path / "out", r3d_views, kept, per_frame=False)
    tf = read_transforms(tmp_path / "out" / "transforms.json")
    assert [f.file_path for f in tf.frames] == [f"images/frame_{i + 1:05d}.jpg" for i in kept]


def test_images_without_any_pose_are_refused(tmp_path: Path, capsys, r3d_views) -> None:
    source = fx.write_record3d_folder(tmp_path / "exr", r3d_views)
    meta = json.loads((source / "metadata.json").read_text())
    meta["poses"] = meta["poses"][:1]
    (source / "metadata.json").write_text(json.dumps(meta))
    (source / "rgb" / "0.jpg").unlink()
    assert main(["import", "record3d", str(source), "--out", str(tmp_path / "out")]) == 1
    assert _error_line(capsys) == (
        f"error: {source / 'metadata.json'}: 1 poses but none of the images in rgb/ is numbered"
        " below 1"
    )


def test_row_major_k_is_refused(tmp_path: Path, capsys, r3d_views) -> None:
    """#15: a K written row-major imported with cx = cy = 0."""
    source = fx.write_record3d_folder(tmp_path / "exr", r3d_views)
    meta = json.loads((source / "metadata.json").read_text())
    meta["K"] = fx.RECORD3D_CAMERA.intrinsic_matrix().ravel().tolist()  # row-major
    (source / "metadata.json").write_text(json.dumps(meta))
    assert main(["import", "record3d", str(source), "--out", str(tmp_path / "out")]) == 1
    assert _error_line(capsys) == (
        f"error: {source / 'metadata.json'}: K: last row is 23.2 32.9 1, not 0 0 1 (written"
        " row-major? Record3D writes it column-major)"
    )
    meta = fx.record3d_metadata(r3d_views, per_frame=True)  # per-frame rows with cx = cy = 0
    meta["perFrameIntrinsicCoeffs"][3][2:] = [0.0, 0.0]
    (source / "metadata.json").write_text(json.dumps(meta))
    assert main(["import", "record3d", str(source), "--out", str(tmp_path / "out")]) == 1
    assert _error_line(capsys) == (
        f"error: {source / 'rgb' / '3.jpg'}: its camera's principal point (0, 0) lies outside"
        " the 48x64 image (intrinsics written row-major, or for another image size?)"
    )
    assert not (tmp_path / "out").exists()


def test_corrupt_image_is_reported_by_name_and_skipped(tmp_path: Path, capsys, r3d_views) -> None:
    source = fx.write_record3d_folder(tmp_path / "exr", r3d_views)
    (source / "rgb" / "4.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    out = tmp_path / "out"
    rc = main(["import", "record3d", str(source), "--out", str(out), "--blur-filter", "none"])
    assert rc == 0
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "1 corrupt (rgb/4.jpg)" in err and f"imported {N_VIEWS - 1} of {N_VIEWS}" in err
    kept = [i for i in range(N_VIEWS) if i != 4]
    _check_poses_and_intrinsics(out, r3d_views, kept, per_frame=False)


def test_non_empty_output_needs_overwrite(tmp_path: Path, r3d_views) -> None:
    source = fx.write_record3d_folder(tmp_path / "exr", r3d_views)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(UsageError, match="already holds"):
        import_record3d(source, out)
    assert (out / "keep.txt").is_file()
    import_record3d(source, out, ImportOptions(overwrite=True, max_frames=2))
    assert not (out / "keep.txt").exists() and len(read_transforms(out).frames) == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_unknown_layout_and_bad_quaternion(tmp_path: Path, r3d_views) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.txt").write_text("")
    with pytest.raises(Exception, match="not a Record3D export"):
        import_record3d(tmp_path / "empty", tmp_path / "out")
    source = fx.write_record3d_folder(tmp_path / "exr", r3d_views)
    meta = json.loads((source / "metadata.json").read_text())
    meta["poses"][1] = [0, 0, 0, 0, 1, 2, 3]
    (source / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(InputFormatError, match=r"poses\[1\]: zero quaternion"):
        import_record3d(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@needs_lzfse
def test_cli_record3d_end_to_end(tmp_path: Path, capsys, r3d_views) -> None:
    archive = fx.write_r3d(tmp_path / "scan.r3d", r3d_views)
    out = tmp_path / "data" / "scan"
    args = ["import", "record3d", str(archive), "--out", str(out), "--max-frames", "4"]
    assert main([*args, "--blur-filter", "percentile:20"]) == 0
    line = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert line.startswith(f"imported 4 of {N_VIEWS} frames into {out}")
    assert "1 blurry" in line and "1 by --max-frames" in line
    assert sorted(p.name for p in out.iterdir()) == ["depth", "images", "transforms.json"]


# ---------------------------------------------------------------------------------------------
# nerfstudio's own converters (the peer venv), where it exists.


@needs_peer
def test_same_poses_as_nerfstudio(tmp_path: Path, r3d_views, polycam_views) -> None:
    """Record3D: nerfstudio keeps ARKit's y-up world (float32), we rotate it to z-up; same focal
    length, but nerfstudio replaces the principal point by (w/2, h/2). Polycam: identical poses
    and intrinsics with the same 15 px border crop (nerfstudio's default, ours on request)."""
    source = fx.write_record3d_folder(tmp_path / "exr", r3d_views)
    run_peer("record3d", str(source), str(tmp_path / "ns_r3d"), "--direct")
    import_record3d(source, tmp_path / "ours_r3d")
    theirs = json.loads((tmp_path / "ns_r3d" / "transforms.json").read_text())
    ours = read_transforms(tmp_path / "ours_r3d")
    for mine, other in zip(ours.frames, theirs["frames"], strict=True):
        assert np.allclose(
            mine.transform_matrix, ZUP_FROM_YUP @ other["transform_matrix"], atol=1e-6
        )
        assert mine.fl_x == pytest.approx(theirs["fl_x"], abs=1e-4)
    assert theirs["cx"] == 24.0 and ours.frames[0].cx == pytest.approx(23.2)

    source = fx.write_polycam_folder(tmp_path / "pc", polycam_views)
    run_peer("polycam", str(source), str(tmp_path / "ns_pc"))
    import_polycam(source, tmp_path / "ours_pc", ImportOptions(crop_border_px=15))
    theirs = json.loads((tmp_path / "ns_pc" / "transforms.json").read_text())
    ours = read_transforms(tmp_path / "ours_pc")
    assert len(theirs["frames"]) == len(ours.frames) == N_VIEWS
    for mine, other in zip(ours.frames, theirs["frames"], strict=True):
        assert np.allclose(mine.transform_matrix, other["transform_matrix"], atol=1e-6)
        assert (mine.fl_x, mine.fl_y, mine.cx, mine.cy, mine.w, mine.h) == pytest.approx(
            tuple(other[k] for k in ("fl_x", "fl_y", "cx", "cy", "w", "h"))
        )


# ---------------------------------------------------------------------------------------------
# Landscape-held captures: images, intrinsics and poses turn together.


@pytest.mark.parametrize("turns", [1, 2, 3, -1])
def test_rotate_image_quarter_turns_matches_rotated_pixels(turns: int) -> None:
    """Rendering with the turned camera and pose gives exactly the turned image."""
    camera = replace(fx.RECORD3D_CAMERA, distortion=(-0.1, 0.02, 0.0, 0.0, 0.003, -0.002))
    pose = fx.phone_poses(2)[1]
    image, _ = fx.render(camera, pose, fx.SEED, supersample=1)
    turned_camera, turned_pose = cameras.rotate_image_quarter_turns(camera, pose, turns)
    turned, _ = fx.render(turned_camera, turned_pose, fx.SEED, supersample=1)
    differs = np.abs(turned - np.rot90(image, turns)).max(axis=-1) > 1e-5
    assert differs.mean() < 0.005  # the same rays up to rounding (a ray may graze an edge)
    assert cameras.is_rotation(turned_pose)


def test_polycam_rotate_auto_turns_sideways_frames_upright(tmp_path: Path) -> None:
    """Phone held in portrait, frames stored landscape (nerfstudio #1907): --rotate auto turns
    pixels, depth, intrinsics and poses back to the upright ground truth."""
    upright = fx.RECORD3D_CAMERA  # portrait 48x64
    poses = fx.phone_poses(4, roll_deg=5.0)
    stored = [cameras.rotate_image_quarter_turns(upright, p, 1) for p in poses]
    views = [fx.render_view(c, p, (16, 12)) for c, p in stored]
    source = fx.write_polycam_folder(tmp_path / "pc", views)
    report = import_polycam(source, tmp_path / "out", ImportOptions(rotate="auto"))
    assert "turned a quarter turn clockwise (auto)" in report.one_line()
    tf = read_transforms(tmp_path / "out")
    for item, pose, view in zip(tf.frames, poses, views, strict=True):
        assert (item.w, item.h) == (48, 64)
        assert (item.fl_x, item.fl_y, item.cx, item.cy) == pytest.approx(
            (upright.fx, upright.fy, upright.cx, upright.cy), abs=1e-9
        )
        expected = ZUP_FROM_YUP @ cameras.opengl_from_opencv_pose(pose)
        assert np.allclose(item.transform_matrix, expected, atol=1e-9)
        pixels = cv2.imread(str(tmp_path / "out" / item.file_path))
        sideways = cv2.imdecode(np.frombuffer(view.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert pixels.shape == (64, 48, 3)
        assert np.abs(pixels.astype(int) - np.rot90(sideways, -1)).mean() < 3
        depth = cv2.imread(str(tmp_path / "out" / item.depth_file_path), cv2.IMREAD_UNCHANGED)
        millimetres = np.round(view.depth_m * 1000).astype(np.uint16)
        millimetres[0, 0] = 0  # low confidence
        at_image = cv2.resize(millimetres, (64, 48), interpolation=cv2.INTER_NEAREST)
        assert np.array_equal(depth, np.rot90(at_image, -1))
    # with --rotate none nothing turns: the stored (sideways) camera is kept
    import_polycam(source, tmp_path / "plain", ImportOptions(rotate="none"))
    assert (read_transforms(tmp_path / "plain").frames[0].w, views[0].camera.width_px) == (64, 64)
    with pytest.raises(UsageError, match="--rotate"):
        import_polycam(source, tmp_path / "bad", ImportOptions(rotate="left"))


@pytest.mark.parametrize("rotate", ["auto", "none"])
def test_portrait_polycam_keeps_gravity_up_through_the_orientation_step(
    tmp_path: Path, capsys, rotate: str
) -> None:
    """#15: a Polycam scan held in portrait (frames stored landscape) came out tipped ~90
    degrees in nerfstudio with default options: its ``up`` orientation turns the mean camera up
    (OpenGL +y) onto +z, and that was sideways. The default (``--rotate auto``) keeps gravity
    (+z in transforms.json) within a degree of +z after that step (the trainer's mirror of it,
    and the rule computed here from the file's columns)."""
    from trainer_adapter.data.parser import orient_and_center

    upright = fx.RECORD3D_CAMERA  # portrait 48x64
    poses = []
    for index in range(6):  # level views around the room, rolled a little either way
        angle = 0.3 + 0.25 * index
        position = np.array([1.0 * math.cos(angle), 1.4, 1.2 * math.sin(angle)])
        poses.append(look_at(position, np.array([0.0, 1.4, 0.0]), 4.0 * (-1) ** index))
    stored = [cameras.rotate_image_quarter_turns(upright, p, 1) for p in poses]
    views = [fx.render_view(c, p, (16, 12)) for c, p in stored]
    source = fx.write_polycam_folder(tmp_path / "pc", views, depth=False)
    out = tmp_path / "out"
    args = [] if rotate == "auto" else ["--rotate", rotate]  # the default, as a user runs it
    assert main(["import", "polycam", str(source), "--out", str(out), *args]) == 0
    # import auto has the same option and default
    assert (
        main(["import", "auto", str(source), "--out", str(tmp_path / "auto" / "out"), *args]) == 0
    )
    capsys.readouterr()
    assert (tmp_path / "auto" / "out" / "transforms.json").read_text().replace(
        str(tmp_path / "auto" / "out"), str(out)
    ) == (out / "transforms.json").read_text()
    tf = read_transforms(out)
    mean_up = np.mean([np.asarray(f.transform_matrix)[:3, 1] for f in tf.frames], axis=0)
    orient = orient_and_center(
        np.stack([f.world_from_cam for f in transforms_to_scene(tf).frames]),
        orientation="up",
        center="poses",
    )
    gravity_up = orient[:, :3] @ np.array([0.0, 0.0, 1.0])
    tip_deg = math.degrees(math.acos(np.clip(gravity_up[2], -1, 1)))
    rule_deg = math.degrees(math.acos(mean_up[2] / np.linalg.norm(mean_up)))
    assert tip_deg == pytest.approx(rule_deg, abs=1e-6)
    if rotate == "auto":
        assert tip_deg < 1.0 and (tf.frames[0].w, tf.frames[0].h) == (48, 64)
    else:
        assert tip_deg > 80.0  # what the old default gave


def test_crop_border_shifts_the_principal_point(tmp_path: Path, polycam_views) -> None:
    source = fx.write_polycam_folder(tmp_path / "pc", polycam_views)
    import_polycam(source, tmp_path / "out", ImportOptions(crop_border_px=4))
    item = read_transforms(tmp_path / "out").frames[2]
    camera = polycam_views[2].camera
    assert (item.w, item.h, item.cx, item.cy, item.fl_x) == pytest.approx(
        (camera.width_px - 8, camera.height_px - 8, camera.cx - 4, camera.cy - 4, camera.fx)
    )
    expected = ZUP_FROM_YUP @ cameras.opengl_from_opencv_pose(polycam_views[2].world_from_cam)
    assert np.allclose(item.transform_matrix, expected, atol=1e-9)
    pixels = cv2.imread(str(tmp_path / "out" / item.file_path))
    depth = cv2.imread(str(tmp_path / "out" / item.depth_file_path), cv2.IMREAD_UNCHANGED)
    assert pixels.shape[:2] == depth.shape == (camera.height_px - 8, camera.width_px - 8)
    stored = cv2.imdecode(np.frombuffer(polycam_views[2].jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(pixels.astype(int) - stored[4:-4, 4:-4]).mean() < 3


@needs_lzfse
def test_imported_dataset_works_with_split_and_downscale(tmp_path: Path, capsys, r3d_views) -> None:
    """The rest of the pipeline runs unchanged on an import (nerfstudio's images_N/depths_N)."""
    out = tmp_path / "scan"
    import_record3d(fx.write_r3d(tmp_path / "scan.r3d", r3d_views), out)
    assert main(["downscale", str(out), "--factor", "2", "--jobs", "1"]) == 0
    assert main(["split", str(out / "transforms.json"), "--subsample", "4"]) == 0
    half = read_transforms(out / "transforms_2.json")
    first = half.frames[0]
    assert (first.w, first.h) == (24, 32) and first.fl_x == pytest.approx(
        r3d_views[0].camera.fx / 2
    )
    assert (out / "depths_2" / "frame_00000.png").is_file()
    assert (out / "images_2" / "frame_00000.jpg").is_file()
    assert len(read_transforms(out / "transforms_4.json").frames) == 4


def test_record3d_quirks_duplicates_missing_size_and_rotated_images(
    tmp_path: Path, r3d_views
) -> None:
    source = fx.write_record3d_folder(tmp_path / "exr", r3d_views)
    (source / "rgb" / "3(1).jpg").write_bytes(r3d_views[3].jpeg)  # a Finder duplicate
    meta = json.loads((source / "metadata.json").read_text())
    del meta["w"], meta["h"]  # oldest exports always have them; tolerate their absence
    (source / "metadata.json").write_text(json.dumps(meta))
    report = import_record3d(source, tmp_path / "out")
    assert "ignored 1 non-numbered images" in report.one_line()
    _check_poses_and_intrinsics(tmp_path / "out", r3d_views, list(range(N_VIEWS)), per_frame=False)
    # an image turned after export no longer matches its intrinsics: refused, not guessed
    image = cv2.imdecode(np.frombuffer(r3d_views[0].jpeg, np.uint8), cv2.IMREAD_COLOR)
    cv2.imwrite(str(source / "rgb" / "0.jpg"), np.rot90(image))
    meta["w"], meta["h"] = 48, 64
    (source / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(InputFormatError, match=r"0\.jpg: image is 64x48 but its camera says 48x64"):
        import_record3d(source, tmp_path / "again")
    assert not (tmp_path / "again").exists()


def test_link_hard_links_images_from_a_folder(tmp_path: Path, capsys, polycam_views) -> None:
    source = fx.write_polycam_folder(tmp_path / "pc", polycam_views)
    out = tmp_path / "out"
    assert main(["import", "polycam", str(source), "--out", str(out), "--link", "--no-depth"]) == 0
    stamp = fx.polycam_timestamps(N_VIEWS)[0]
    original = source / "keyframes" / "corrected_images" / f"{stamp}.jpg"
    assert (out / "images" / f"{stamp}.jpg").stat().st_ino == original.stat().st_ino
    assert not (out / "depth").exists()
    assert "depth for 0" in " ".join(capsys.readouterr().err.split())


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("where", ["same", "parent", "inside"])
@pytest.mark.parametrize("command", ["polycam", "record3d", "auto", "images"])
def test_output_overlapping_the_source_is_refused_even_with_overwrite(
    tmp_path: Path, capsys, polycam_views, r3d_views, command: str, where: str
) -> None:
    """B1: ``--out SRC --overwrite`` (or a folder above or inside SRC) used to delete the
    source and exit 0. The refusal comes before anything is read or written."""
    if command == "record3d":
        source = fx.write_record3d_folder(tmp_path / "in" / "scan", r3d_views)
    else:
        source = fx.write_polycam_folder(tmp_path / "in" / "scan", polycam_views)
    if command == "images":  # photos for SfM: the Polycam keyframe JPEGs will do
        source = source / "keyframes" / "images"
    out = {"same": source, "parent": source.parent, "inside": source / "dataset"}[where]
    before = _tree_bytes(tmp_path / "in")
    rc = main(["import", command, str(source), "--out", str(out), "--overwrite"])
    assert rc == 1
    relation = {"same": "is", "parent": "contains", "inside": "lies inside"}[where]
    assert _error_line(capsys) == (
        f"error: {out}: output {relation} the input {source}; choose another --out"
    )
    assert _tree_bytes(tmp_path / "in") == before


# ---------------------------------------------------------------------------------------------
# Archives: limits on what a member may unpack to, damaged members, streaming (#15).


def _polycam_zip(tmp_path: Path, views: list[fx.PhoneView], **members: bytes) -> Path:
    """A zipped Polycam export (deflated), with ``members`` replaced or added."""
    folder = fx.write_polycam_folder(tmp_path / "pc", views)
    archive = tmp_path / "scan.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        for path in sorted(folder.rglob("*")):
            name = path.relative_to(folder).as_posix()
            if path.is_file() and name not in members:
                handle.write(path, name)
        for name, data in members.items():
            handle.writestr(name, data)
    return archive


def _first(folder: str, suffix: str) -> str:
    return f"keyframes/{folder}/{fx.polycam_timestamps(1)[0]}.{suffix}"


def test_zip_bomb_member_is_refused_before_unpacking_with_an_override(
    tmp_path: Path, capsys, polycam_views
) -> None:
    """B5: a JPEG padded with 8 MiB of zeros packs ~1000:1. Refused by ratio by default (the
    error names the member and the flag), then by size under --max-member-mb; allowed when
    both are raised."""
    image = _first("corrected_images", "jpg")
    padded = polycam_views[0].jpeg + bytes(8 << 20)
    archive = _polycam_zip(tmp_path, polycam_views, **{image: padded})
    out = tmp_path / "out"
    assert main(["import", "polycam", str(archive), "--out", str(out)]) == 1
    line = _error_line(capsys)
    assert line.startswith(f"error: {archive}:{image}: archive member unpacks to 8.0 MiB from ")
    assert "over the limit of 100: a zip bomb?; raise it with --max-ratio)" in line
    assert not out.exists()
    args = ["import", "polycam", str(archive), "--out", str(out), "--max-ratio", "1e6"]
    assert main([*args, "--max-member-mb", "4"]) == 1
    assert _error_line(capsys) == (
        f"error: {archive}:{image}: archive member unpacks to 8.0 MiB, over the 4.0 MiB limit"
        " (raise it with --max-member-mb)"
    )
    assert main(args) == 0
    assert (out / "images" / f"{fx.polycam_timestamps(1)[0]}.jpg").stat().st_size == len(padded)


def test_a_depth_bomb_is_an_error_not_a_quietly_skipped_depth(
    tmp_path: Path, polycam_views
) -> None:
    depth = _first("depth", "png")
    archive = _polycam_zip(tmp_path, polycam_views, **{depth: bytes(4 << 20)})
    with pytest.raises(LimitError, match="--max-ratio"):
        import_polycam(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_damaged_zip_members_lose_only_their_frame_or_depth(
    tmp_path: Path, capsys, polycam_views
) -> None:
    """A CRC error or corrupt deflate data used to end in a BadZipFile/zlib.error traceback, and
    a bad depth member killed the whole import; now the same as a bad file in a folder: the
    image's frame is skipped as corrupt, the depth member's frame keeps its image."""
    archive = _polycam_zip(tmp_path, polycam_views)
    stamps = fx.polycam_timestamps(N_VIEWS)
    fx.damage_member(archive, f"keyframes/corrected_images/{stamps[1]}.jpg")
    fx.damage_member(archive, f"keyframes/depth/{stamps[2]}.png")
    out = tmp_path / "out"
    assert main(["import", "polycam", str(archive), "--out", str(out)]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert f"imported {N_VIEWS - 1} of {N_VIEWS} frames" in err
    assert f"1 corrupt (keyframes/corrected_images/{stamps[1]}.jpg)" in err
    assert f"depth for {N_VIEWS - 2}" in err
    tf = read_transforms(out)
    no_depth = [f.file_path for f in tf.frames if f.depth_file_path is None]
    assert no_depth == [f"images/{stamps[2]}.jpg"]


def test_a_damaged_camera_member_is_one_line(tmp_path: Path, capsys, polycam_views) -> None:
    archive = _polycam_zip(tmp_path, polycam_views)
    camera = _first("corrected_cameras", "json")
    fx.damage_member(archive, camera)
    assert main(["import", "polycam", str(archive), "--out", str(tmp_path / "out")]) == 1
    line = _error_line(capsys)
    assert line.startswith(f"error: {archive}:{camera}: damaged archive member (")


def test_copying_a_zip_member_streams_it(tmp_path: Path) -> None:
    """Members are copied into the dataset chunk by chunk (they were read whole): a 24 MiB
    member never sits in memory."""
    import tracemalloc

    from eyeful_tools.ios_import import _copy_member

    archive = tmp_path / "big.zip"
    payload = np.random.default_rng(0).integers(0, 255, 24 << 20, dtype=np.uint8).tobytes()
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("video.mp4", payload)
    source = Source(archive)
    tracemalloc.start()
    _copy_member(source, "video.mp4", tmp_path / "copy.mp4", link=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    source.close()
    assert peak < 4 << 20
    assert (tmp_path / "copy.mp4").read_bytes() == payload


def test_link_follows_relative_symlinks_instead_of_linking_them(
    tmp_path: Path, polycam_views
) -> None:
    """``--link`` hard-linked a relative symlink itself, which then dangled in the dataset."""
    source = fx.write_polycam_folder(tmp_path / "pc", polycam_views)
    stamp = fx.polycam_timestamps(1)[0]
    image = source / "keyframes" / "corrected_images" / f"{stamp}.jpg"
    photos = tmp_path / "photos"
    photos.mkdir()
    target = photos / "first.jpg"
    image.replace(target)
    image.symlink_to(os.path.relpath(target, image.parent))
    import_polycam(source, tmp_path / "out", ImportOptions(link=True))
    linked = tmp_path / "out" / "images" / f"{stamp}.jpg"
    assert not linked.is_symlink() and linked.stat().st_ino == target.stat().st_ino
    assert linked.read_bytes() == polycam_views[0].jpeg


def test_total_unpacked_size_of_an_archive_is_limited_with_an_override(
    tmp_path: Path, capsys, polycam_views
) -> None:
    """Many members each under the member and ratio limits still add up: the sum of what the
    archive's headers say is refused before anything is unpacked."""
    image = _first("corrected_images", "jpg")
    padded = polycam_views[0].jpeg + np.random.default_rng(0).bytes(3 << 20)  # incompressible
    archive = _polycam_zip(tmp_path, polycam_views, **{image: padded})
    out = tmp_path / "out"
    assert main(["import", "polycam", str(archive), "--out", str(out), "--max-total-mb", "2"]) == 1
    line = _error_line(capsys)
    assert line.startswith(f"error: {archive}: archive unpacks to 3.")
    assert line.endswith("MiB in all, over the 2.0 MiB limit (raise it with --max-total-mb)")
    assert not out.exists()
    assert main(["import", "polycam", str(archive), "--out", str(out), "--max-total-mb", "8"]) == 0


def test_a_huge_file_in_a_source_folder_is_refused_before_it_is_read(
    tmp_path: Path, capsys, polycam_views
) -> None:
    """Folders get the member limit too for files read whole (images, JSON): a 5 MiB "image"
    under --max-member-mb 4 is one line naming the file, not a 5 MiB read."""
    folder = fx.write_polycam_folder(tmp_path / "pc", polycam_views)
    image = folder / _first("corrected_images", "jpg")
    image.write_bytes(polycam_views[0].jpeg + bytes(5 << 20))
    out = tmp_path / "out"
    args = ["import", "polycam", str(folder), "--out", str(out), "--max-member-mb", "4"]
    assert main(args) == 1
    assert _error_line(capsys) == (
        f"error: {image}: file is 5.0 MiB, over the 4.0 MiB limit for files read whole (raise "
        "it with --max-member-mb)"
    )
    assert not out.exists()


@pytest.mark.parametrize("app", ["record3d", "polycam"])
def test_free_space_is_checked_before_an_ios_import_writes(
    tmp_path: Path, capsys, monkeypatch, app: str, r3d_views, polycam_views
) -> None:
    """Sizes are known from the archive's headers or the files: an import that cannot fit is
    one ENOSPC line before anything is written (it used to fail half way)."""
    import shutil

    from eyeful_tools import fsio

    if app == "record3d":
        source = fx.write_record3d_folder(tmp_path / "r3d", r3d_views)
    else:
        source = _polycam_zip(tmp_path, polycam_views)
    real = shutil.disk_usage
    monkeypatch.setattr(
        fsio.shutil, "disk_usage", lambda p: real(p)._replace(free=fsio.FREE_SPACE_RESERVE_BYTES)
    )
    out = tmp_path / "out"
    assert main(["import", app, str(source), "--out", str(out)]) == 1
    line = _error_line(capsys)
    assert line.startswith(f"error: {out}: not enough free space: importing {N_VIEWS} frames ")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_free_space_counts_linked_images_that_are_turned(
    tmp_path: Path, monkeypatch, r3d_views
) -> None:
    """--link writes nothing for an image copied as it is, but an image turned upright (or
    cropped) is encoded again: its bytes count toward the free-space check."""
    from eyeful_tools import ios_import
    from eyeful_tools.readers.record3d import read_record3d

    source = fx.write_record3d_folder(tmp_path / "r3d", r3d_views)
    needed: dict[str, int] = {}
    for rotate in ("none", "cw"):

        def record(_out: Path, count: int, _what: str, rotate: str = rotate) -> None:
            needed[rotate] = count
            raise OSError("stop here")  # nothing needs writing for this test

        monkeypatch.setattr(ios_import, "require_free_space", record)
        capture = read_record3d(source)
        options = ios_import.ImportOptions(link=True, depth=False, rotate=rotate)
        with pytest.raises(OSError, match="stop here"):
            ios_import.import_capture(capture, tmp_path / f"out-{rotate}", options)
    assert needed["none"] == 0 and needed["cw"] >= N_VIEWS * 1000, needed
