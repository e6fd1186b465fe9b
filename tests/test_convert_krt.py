"""``eyeful convert`` from EyefulTower ``cameras.json`` (KRT).

Hand-made KRT captures test the nerfstudio formula (encoded here independently of the library),
per-axis rescaling from the image headers, fisheye k4 and crop radius, EXR folders, subsets and
bad input. When the nerfstudio peer venv exists, nerfstudio's own converter is run on the same
input and compared. The synthetic capture (``synth_v1``/``synth_v2``) is the ground truth.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import ground_truth, gt_camera, random_rotation, traced_points
from peer import needs_peer, peer_command

from eyeful_tools import cameras, catalog
from eyeful_tools.cameras import fisheye_image_circle_px
from eyeful_tools.cli import main
from eyeful_tools.convert import convert_capture
from eyeful_tools.imageio import write_image
from eyeful_tools.readers.krt import read_krt
from eyeful_tools.transforms import read_transforms, transforms_to_scene

FULL = (5784, 8660)

# nerfstudio's EyefulTower converter, written out independently of eyeful_tools.cameras:
# c2w = PERM @ inv(T^T) @ diag(1, -1, -1, 1), rows permuted [2, 0, 1], columns 1 and 2 negated.
NS_PERM = np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)


def ns_pose(t_column_major: list) -> np.ndarray:
    c2w = np.linalg.inv(np.array(t_column_major).T)
    c2w = NS_PERM @ c2w
    c2w[:, 1:3] *= -1
    return c2w


def make_krt_capture(
    root: Path,
    *,
    model: str = "RadialAndTangential",
    cams: tuple[str, ...] = ("10", "11", "12", "13", "14", "15"),
    positions: int = 3,
    full: tuple[int, int] = (776, 1164),
    folders: dict[str, tuple[int, int]] | None = None,
    holdout: str = "13",
    seed: int = 0,
) -> list[dict]:
    """A capture folder with cameras.json, splits.json and blank images; returns the KRT list."""
    rng = np.random.default_rng(seed)
    folders = folders or {"images-jpeg-1k": (100, 150)}
    entries = []
    for position in range(positions):
        for cam in cams:
            cam_from_world = np.eye(4)
            cam_from_world[:3, :3] = random_rotation(rng)
            cam_from_world[:3, 3] = rng.uniform(-3, 3, size=3)
            fx = float(rng.uniform(0.4, 0.6) * full[0])
            k = np.array(
                [[fx, 0, full[0] / 2 + rng.uniform(-9, 9)], [0, fx, full[1] / 2 + 3.5], [0, 0, 1]]
            )
            if model == "Fisheye":
                distortion = [0.03, -0.01, 0.002, -0.0007, 0.0, 0.0, 0.0004, -0.0003]
            else:
                distortion = [-0.12, 0.05, 0.001, -0.0007, -0.01]
            entries.append(
                {
                    "cameraId": f"{cam}/{cam}_DSC{position + 1:04d}",
                    "width": full[0],
                    "height": full[1],
                    "K": k.T.tolist(),
                    "T": cam_from_world.T.tolist(),
                    "distortionModel": model,
                    "distortion": distortion,
                    "frameId": position,
                    "sensorId": int(cam),
                }
            )
    root.mkdir(parents=True, exist_ok=True)
    (root / "cameras.json").write_text(json.dumps({"KRT": entries}))
    ids = sorted(e["cameraId"] for e in entries)
    splits = {
        "train": [i for i in ids if not i.startswith(holdout + "/")],
        "test": [i for i in ids if i.startswith(holdout + "/")],
    }
    (root / "splits.json").write_text(json.dumps(splits))
    for folder, (width, height) in folders.items():
        ext = "exr" if folder in ("images-2k", "images-1k") else "jpg"
        pixels = np.full((height, width, 3), 0.5 if ext == "exr" else 128, np.float32)
        first = root / folder / f"{entries[0]['cameraId']}.{ext}"
        write_image(first, pixels.astype(np.float32 if ext == "exr" else np.uint8))
        for entry in entries[1:]:  # the same blank image: encoded once
            target = root / folder / f"{entry['cameraId']}.{ext}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(first, target)
    return entries


def test_poses_and_intrinsics_equal_nerfstudio_formula(tmp_path: Path) -> None:
    capture = tmp_path / "mycapture"
    entries = make_krt_capture(capture)
    report = convert_capture(capture)
    folder = capture / "images-jpeg-1k"
    assert report.written[0] == folder / "transforms.json"
    tf = read_transforms(folder / "transforms.json")
    by_path = {f.file_path: f for f in tf.frames}
    assert sorted(by_path) == sorted(e["cameraId"] + ".jpg" for e in entries)
    assert [f.file_path for f in tf.frames] == sorted(by_path)  # nerfstudio's order
    for entry in entries:
        frame = by_path[entry["cameraId"] + ".jpg"]
        np.testing.assert_allclose(frame.transform_matrix, ns_pose(entry["T"]), atol=1e-12)
        k = np.array(entry["K"]).T
        sx, sy = 100 / entry["width"], 150 / entry["height"]
        assert (frame.w, frame.h) == (100, 150)
        assert frame.fl_x == pytest.approx(k[0, 0] * sx, rel=1e-12)
        assert frame.fl_y == pytest.approx(k[1, 1] * sy, rel=1e-12)
        assert frame.cx == pytest.approx(k[0, 2] * sx, rel=1e-12)
        assert frame.cy == pytest.approx(k[1, 2] * sy, rel=1e-12)
        d = entry["distortion"]  # [k1, k2, p1, p2, k3]
        assert (frame.k1, frame.k2, frame.k3, frame.k4, frame.p1, frame.p2) == (
            d[0],
            d[1],
            d[4],
            0.0,
            d[2],
            d[3],
        )
        assert frame.eyeful.camera_id == entry["cameraId"].split("/")[0]
        assert frame.eyeful.rig_position_id == entry["frameId"]
    assert tf.camera_model.value == "OPENCV"
    np.testing.assert_allclose(np.array(tf.applied_transform), NS_PERM[:3])
    held = sorted(e["cameraId"] + ".jpg" for e in entries if e["cameraId"].startswith("13/"))
    assert sorted(tf.val_filenames) == held and sorted(tf.test_filenames) == held
    assert sorted(tf.train_filenames) == sorted(set(by_path) - set(held))


def test_intrinsics_rescale_per_axis_from_image_headers(tmp_path: Path) -> None:
    """Sizes come from the headers (not the catalog), x and y scaled separately."""
    capture = tmp_path / "cap"
    entries = make_krt_capture(capture, positions=1, folders={"images-jpeg-2k": (201, 300)})
    convert_capture(capture, resolutions=["jpeg_2k"])
    tf = read_transforms(capture / "images-jpeg-2k" / "transforms.json")
    k = np.array(entries[0]["K"]).T
    frame = next(f for f in tf.frames if f.file_path == entries[0]["cameraId"] + ".jpg")
    assert frame.fl_x == pytest.approx(k[0, 0] * 201 / 776, rel=1e-12)
    assert frame.fl_y == pytest.approx(k[1, 1] * 300 / 1164, rel=1e-12)
    assert frame.fl_x != pytest.approx(frame.fl_y, rel=1e-4)  # the scales really differ


def test_projection_through_written_file_matches_krt(tmp_path: Path) -> None:
    """A world point projected with the written transforms.json lands where the full-res KRT
    camera puts it, scaled to the image (KRT y-up world -> z-up output world)."""
    capture = tmp_path / "cap"
    entries = make_krt_capture(capture, positions=1, folders={"images-jpeg-2k": (194, 291)})
    convert_capture(capture)
    tf = read_transforms(capture / "images-jpeg-2k" / "transforms.json")
    scene = transforms_to_scene(tf)
    frames = {f.image_path: f for f in scene.frames}
    zup_from_yup = np.array(tf.applied_transform + [[0, 0, 0, 1]])
    for entry in entries:
        frame = frames[entry["cameraId"] + ".jpg"]
        cam_from_world = np.array(entry["T"]).T
        point_cam = np.array([0.2, -0.1, 2.0])
        point_world = np.linalg.inv(cam_from_world) @ np.append(point_cam, 1.0)
        k = np.array(entry["K"]).T
        x, y = point_cam[:2] / point_cam[2]
        k1, k2, p1, p2, k3 = entry["distortion"]
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
        xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        expected = np.array(
            [(k[0, 0] * xd + k[0, 2]) * 194 / 776, (k[1, 1] * yd + k[1, 2]) * 291 / 1164]
        )
        in_cam = cameras.cam_from_world(frame.world_from_cam) @ (zup_from_yup @ point_world)
        np.testing.assert_allclose(cameras.project(frame.camera, in_cam[:3]), expected, atol=1e-9)


#: a v1 capture matching office1a's catalog entry: 85 rig positions of cameras 0..8 (765 images)
OFFICE1A = {"model": "Fisheye", "cams": tuple(str(c) for c in range(9)), "holdout": "5"}


def test_fisheye_keeps_k4_and_writes_crop_radius_in_pixels(tmp_path: Path) -> None:
    # recognised by its cameras.json (office1a's rig, positions and images), not by its name
    capture = tmp_path / "my-scan"
    entries = make_krt_capture(capture, positions=85, **OFFICE1A)
    report = convert_capture(capture)
    tf = read_transforms(capture / "images-jpeg-1k" / "transforms.json")
    assert tf.camera_model.value == "OPENCV_FISHEYE"
    assert tf.fisheye_crop_radius == pytest.approx(0.43 * 100 / 2)  # nerfstudio's 0.43, in px
    assert tf.eyeful["catalog"] == "office1a"
    assert "held-out camera 5" in report.folders[0].split_rule
    d = entries[0]["distortion"]  # [k1, k2, k3, k4, t1, t2, p1, p2]
    frame = next(f for f in tf.frames if f.file_path == entries[0]["cameraId"] + ".jpg")
    assert (frame.k1, frame.k2, frame.k3, frame.k4, frame.p1, frame.p2) == (
        d[0],
        d[1],
        d[2],
        d[3],
        d[6],
        d[7],
    )
    # a folder named like a catalog capture whose cameras.json is not it: no catalog rule
    unknown = tmp_path / "office1a"
    make_krt_capture(unknown, positions=3, **OFFICE1A)
    convert_capture(unknown)
    other = read_transforms(unknown / "images-jpeg-1k" / "transforms.json")
    assert "catalog" not in other.eyeful
    # outside the catalog: the lens's own image circle (90 degrees off-axis), inside the image
    circles = [fisheye_image_circle_px(f.camera) for f in transforms_to_scene(other).frames]
    assert other.fisheye_crop_radius == pytest.approx(min(circles))
    assert other.fisheye_crop_radius > 0.45 * 100 / 2


def test_exr_folder_and_subsets(tmp_path: Path) -> None:
    capture = tmp_path / "cap"
    make_krt_capture(
        capture, positions=2, folders={"images-2k": (100, 150), "images-jpeg-1k": (50, 75)}
    )
    report = convert_capture(capture)
    assert {p.parent.name for p in report.written} == {"images-2k", "images-jpeg-1k"}
    tf = read_transforms(capture / "images-2k" / "transforms.json")
    assert all(f.file_path.endswith(".exr") for f in tf.frames)
    assert {f.eyeful.color_space for f in tf.frames} == {"linear"}
    half = read_transforms(capture / "images-2k" / "transforms_half.json")
    assert len(half.frames) == 6 and half.applied_transform == tf.applied_transform
    assert len(read_transforms(capture / "images-2k" / "transforms_300.json").frames) == 12
    assert set(half.val_filenames) <= {f.file_path for f in half.frames}


def test_missing_images_are_counted_not_written(tmp_path: Path) -> None:
    capture = tmp_path / "cap"
    entries = make_krt_capture(capture, positions=2)
    (capture / "images-jpeg-1k" / (entries[0]["cameraId"] + ".jpg")).unlink()
    report = convert_capture(capture)
    assert report.folders[0].poses_without_image == 1
    assert len(read_transforms(capture / "images-jpeg-1k").frames) == len(entries) - 1


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("landscape", "(landscape) but its calibration is 776x1164 (portrait)"),
        ("aspect", "which is not the calibrated 776x1164 scaled"),
        ("mixed", "mixed distortion models in one file (Fisheye, RadialAndTangential)"),
        ("nan", "K or T has a non-finite value"),
        ("model", "unknown distortionModel 'Kannala'"),
        ("holdout", "the held-out set is empty (official splits.json (held-out camera none)"),
    ],
)
def test_bad_input_is_one_clear_error_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str, message: str
) -> None:
    capture = tmp_path / "cap"
    entries = make_krt_capture(capture, positions=1)
    bad_image = capture / "images-jpeg-1k" / (entries[2]["cameraId"] + ".jpg")
    if damage == "landscape":
        write_image(bad_image, np.zeros((100, 150, 3), np.uint8))
    elif damage == "aspect":
        write_image(bad_image, np.zeros((150, 120, 3), np.uint8))
    elif damage == "holdout":
        (capture / "splits.json").write_text(json.dumps({"train": [], "test": ["99/99_DSC0001"]}))
    else:
        if damage == "mixed":
            entries[1]["distortionModel"] = "Fisheye"
        elif damage == "nan":
            entries[1]["T"][3][0] = float("nan")
        else:
            for entry in entries:
                entry["distortionModel"] = "Kannala"
        (capture / "cameras.json").write_text(json.dumps({"KRT": entries}))
    rc = main(["convert", str(capture)])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    if damage in ("landscape", "aspect"):
        assert str(bad_image) in err
    elif damage == "holdout":
        assert f"error: {capture / 'splits.json'}: " in err
    else:
        assert "cameras.json" in err
    assert not list(capture.rglob("transforms*.json"))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("frame_id_text", "entry 1 (11/11_DSC0001): frameId must be a whole number, got 'abc'"),
        ("frame_id_float", "entry 1 (11/11_DSC0001): frameId must be a whole number, got 1.5"),
        ("width_inf", "entry 1 (11/11_DSC0001): bad number (cannot convert float infinity"),
        ("digits", "not valid JSON (Exceeds the limit (4300 digits) for integer string conver"),
        ("deep", "not valid JSON (nested too deeply)"),
    ],
)
def test_malformed_json_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str, message: str
) -> None:
    """#15: each of these used to end in a ValueError, OverflowError or RecursionError
    traceback (or, for 1.5, a silently truncated rig position)."""
    capture = tmp_path / "cap"
    entries = make_krt_capture(capture, positions=1)
    text = None
    if damage == "frame_id_text":
        entries[1]["frameId"] = "abc"
    elif damage == "frame_id_float":
        entries[1]["frameId"] = 1.5
    elif damage == "width_inf":
        entries[1]["width"] = float("inf")
    elif damage == "digits":
        text = '{"KRT": [' + "7" * 5000 + "]}"
    else:
        text = "[" * 100_000 + "]" * 100_000
    path = capture / "cameras.json"
    path.write_text(text if text is not None else json.dumps({"KRT": entries}))
    assert main(["convert", str(capture)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: {message}") and len(err.strip().splitlines()) == 1
    assert not list(capture.rglob("transforms*.json"))


def test_cli_summary_and_resolution_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "cap"
    make_krt_capture(capture, positions=1)
    assert main(["convert", str(capture), "--resolution", "jpeg_1k"]) == 0
    err = " ".join(capsys.readouterr().err.split())  # rich wraps at 80 columns off a terminal
    assert "images-jpeg-1k: 6 frames (train 5, val/test 1)" in err
    assert "official splits.json (held-out camera 13)" in err
    assert main(["convert", str(capture), "--resolution", "jpeg_4k"]) == 1
    assert "images-jpeg-4k: resolution folder not found" in capsys.readouterr().err
    assert main(["convert", str(capture), "--from", "metashape"]) == 1
    assert "cameras.xml: needed for --from metashape" in capsys.readouterr().err


def test_reader_returns_full_resolution_yup_frames(tmp_path: Path) -> None:
    entries = make_krt_capture(tmp_path / "cap", positions=1, folders={})
    scene = read_krt(tmp_path / "cap" / "cameras.json")
    frame = scene.frames[0]
    assert (frame.camera.width_px, frame.camera.height_px) == (776, 1164)
    np.testing.assert_allclose(
        frame.world_from_cam, np.linalg.inv(np.array(entries[0]["T"]).T), atol=1e-15
    )
    assert scene.world_up.value == "y_up"


# ---------------------------------------------------------------------------------------------
# nerfstudio itself (the peer venv), when available.


def _run_peer(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        peer_command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@needs_peer
def test_same_numbers_as_nerfstudio_itself(tmp_path: Path) -> None:
    pinhole = tmp_path / "riverview"
    fisheye = tmp_path / "office1a"
    pin_entries = make_krt_capture(
        pinhole, full=FULL, folders={"images-jpeg-1k": (684, 1024)}, positions=2, holdout="13"
    )
    fish_entries = make_krt_capture(  # office1a's catalog entry: 85 positions of 9 cameras
        fisheye, full=FULL, folders={"images-jpeg-1k": (684, 1024)}, positions=85, **OFFICE1A
    )
    convert_capture(pinhole)
    convert_capture(fisheye)
    jobs = [
        _run_peer(
            "eyeful-convert",
            str(c / "cameras.json"),
            str(c / "splits.json"),
            c.name,
            "jpeg_1k",
            str(tmp_path / f"ns_{c.name}"),
        )
        for c in (pinhole, fisheye)
    ]
    parse = _run_peer(
        "dataparse",
        str(pinhole / "images-jpeg-1k"),
        str(tmp_path / "parsed.json"),
        "--split",
        "test",
        "--orientation-method",
        "none",
        "--center-method",
        "none",
        "--auto-scale-poses",
        "false",
    )
    for job in [*jobs, parse]:
        output = job.communicate(timeout=240)[0]
        assert job.returncode == 0, output[-2000:]

    for capture, entries in ((pinhole, pin_entries), (fisheye, fish_entries)):
        ours = json.loads((capture / "images-jpeg-1k" / "transforms.json").read_text())
        assert len(ours["frames"]) == len(entries)
        theirs = json.loads((tmp_path / f"ns_{capture.name}" / "transforms.json").read_text())
        assert [f["file_path"] for f in ours["frames"]] == [
            f["file_path"] for f in theirs["frames"]
        ]
        assert ours["camera_model"] == theirs["camera_model"]
        for a, b in zip(ours["frames"], theirs["frames"], strict=True):
            np.testing.assert_allclose(a["transform_matrix"], b["transform_matrix"], atol=1e-9)
            for key in ("w", "h", "fl_x", "fl_y", "cx", "cy", "k1", "k2", "k3", "p1", "p2"):
                assert a[key] == pytest.approx(b[key], rel=1e-12, abs=1e-15), key
        assert sorted(ours["train_filenames"]) == sorted(theirs["train_filenames"])
        assert sorted(ours["val_filenames"]) == sorted(theirs["val_filenames"])
        # on purpose: nerfstudio leaves test empty, we fill it with the held-out camera
        assert theirs["test_filenames"] == [] and ours["test_filenames"] == ours["val_filenames"]
        for sub in ("transforms_300.json", "transforms_half.json"):
            mine = json.loads((capture / "images-jpeg-1k" / sub).read_text())
            ns = json.loads((tmp_path / f"ns_{capture.name}" / sub).read_text())
            assert [f["file_path"] for f in mine["frames"]] == [
                f["file_path"] for f in ns["frames"]
            ]
    fish_ours = json.loads((fisheye / "images-jpeg-1k" / "transforms.json").read_text())
    fish_ns = json.loads((tmp_path / "ns_office1a" / "transforms.json").read_text())
    assert fish_ns["fisheye_crop_radius"] == 0.43  # a fraction: broken with nerfstudio >= 1.0.3
    assert fish_ours["fisheye_crop_radius"] == pytest.approx(0.43 * 684 / 2)  # pixels
    assert "k4" not in fish_ns["frames"][0] and fish_ours["frames"][0]["k4"] == -0.0007

    # nerfstudio's own dataparser reads our file: poses verbatim, and a non-empty test split
    parsed = json.loads((tmp_path / "parsed.json").read_text())
    ours = json.loads((pinhole / "images-jpeg-1k" / "transforms.json").read_text())
    by_name = {f["file_path"]: f for f in ours["frames"]}
    assert sorted(parsed["image_filenames_rel"]) == sorted(ours["test_filenames"])
    for name, c2w in zip(parsed["image_filenames_rel"], parsed["camera_to_worlds"], strict=True):
        np.testing.assert_allclose(c2w, by_name[name]["transform_matrix"][:3], atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Ground truth: the synthetic capture.


def check_against_ground_truth(capture: Path, tolerance: float = 1e-6) -> int:
    """Every written pose and intrinsic equals ``ground_truth.json`` (after the documented
    convention change: rows permuted y-up -> z-up, OpenCV -> OpenGL columns), at every
    resolution; a traced 3D point projects back onto its pixel. Returns frames checked."""
    truth = ground_truth(capture)
    checked = 0
    for folder, info in truth["folders"].items():
        tf = read_transforms(capture / folder / "transforms.json")
        assert len(tf.frames) == len(truth["images"])
        scene = transforms_to_scene(tf)
        for item in tf.frames:
            key = item.file_path.rsplit(".", 1)[0]
            expected = NS_PERM @ np.array(truth["images"][key]["world_from_cam"])
            expected[:, 1:3] *= -1
            written = np.array(item.transform_matrix)
            assert np.abs(written[:3, 3] - expected[:3, 3]).max() < tolerance, key
            relative = written[:3, :3].T @ expected[:3, :3]
            angle = np.arccos(np.clip((np.trace(relative) - 1) / 2, -1, 1))
            assert angle < tolerance, key
            camera = info["camera"]
            assert (item.w, item.h) == (camera["width"], camera["height"])
            for ours, theirs in ("fl_x", "fx"), ("fl_y", "fy"), ("cx", "cx"), ("cy", "cy"):
                assert getattr(item, ours) == pytest.approx(camera[theirs], rel=1e-9), key
            for name, value in camera["distortion"].items():
                assert getattr(item, name) == pytest.approx(value, abs=1e-12), (key, name)
            checked += 1
        # one traced point per frame, in the middle third of the image
        zup_from_yup = np.array(tf.applied_transform + [[0, 0, 0, 1]])
        rng = np.random.default_rng(len(folder))
        for item, frame in zip(tf.frames, scene.frames, strict=True):
            key = item.file_path.rsplit(".", 1)[0]
            pixel = np.floor(rng.uniform(1 / 3, 2 / 3, 2) * (item.w, item.h)) + 0.5
            (point_yup,), _, _ = traced_points(
                gt_camera(camera),
                np.array(truth["images"][key]["world_from_cam"]),
                pixel[None],
                seed=truth["seed"],
            )
            point = zup_from_yup @ np.append(point_yup, 1.0)
            in_cam = cameras.cam_from_world(frame.world_from_cam) @ point
            error = np.abs(cameras.project(frame.camera, in_cam[:3]) - pixel).max()
            assert error < 0.05, (key, error)
    return checked


@pytest.mark.parametrize("rig", ["v2", "v1"])
def test_synthetic_capture_matches_ground_truth(
    tmp_path: Path, rig: str, request: pytest.FixtureRequest
) -> None:
    import shutil

    capture = tmp_path / f"synth-{rig}"
    shutil.copytree(request.getfixturevalue(f"synth_{rig}"), capture)
    report = convert_capture(capture, source="krt")
    assert len(report.written) == 9  # 3 folders x (transforms, _300, _half)
    assert check_against_ground_truth(capture) == 3 * len(ground_truth(capture)["images"])
    truth = ground_truth(capture)
    tf = read_transforms(capture / "images-jpeg-2k" / "transforms.json")
    held = {f.file_path for f in tf.frames if f.eyeful.camera_id == truth["holdout_camera"]}
    assert set(tf.val_filenames) == held == set(tf.test_filenames) and held


def test_catalog_captures_are_recognised_by_what_they_hold() -> None:
    """office1a: 85 rig positions of cameras 0..8, 765 images. A lost image still leaves it
    office1a; a position fewer, or generic cameras, is no catalog capture."""
    v1 = {str(c) for c in range(9)}
    assert catalog.recognise(v1, 85, 765) is catalog.CAPTURES["office1a"]
    assert catalog.recognise(v1, 85, 764) is catalog.CAPTURES["office1a"]
    assert catalog.recognise(v1, 84, 756) is None
    assert catalog.recognise(v1 | {"cam9"}, 85, 765) is None
    assert catalog.recognise({"0", "1", "2", "3", "4", "5"}, 85, 510) is None  # six cameras
    assert catalog.recognise({str(c) for c in range(10, 32)}, 48, 1008).name == "riverview"
