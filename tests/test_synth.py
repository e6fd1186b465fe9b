"""The synthetic capture: its calibration files agree with the renderer and the ground truth.

The checks here re-derive everything from the files with code written independently of
``eyeful_tools.synth.writers`` (KRT parsing, Metashape rig composition per metashape.md s2).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import gt_camera, traced_points
from lxml import etree

from eyeful_tools import cameras
from eyeful_tools.cameras import Camera, CameraModel
from eyeful_tools.cli import main
from eyeful_tools.errors import UsageError
from eyeful_tools.imageio import image_size, read_image
from eyeful_tools.synth import example_capture, synthesize, trace
from eyeful_tools.synth.render import srgb_from_linear

FOLDERS = ("images-jpeg-2k", "images-jpeg-1k", "images-2k")


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _krt_camera(entry: dict) -> Camera:
    """A full-resolution Camera from one KRT entry (real file order, eyeful.md s5)."""
    k = cameras.matrix_from_column_major(entry["K"], 3)
    d = entry["distortion"]
    if entry["distortionModel"] == "Fisheye":
        model = CameraModel.OPENCV_FISHEYE
        distortion = (d[0], d[1], d[2], d[3], d[6], d[7])
    else:
        assert entry["distortionModel"] == "RadialAndTangential"
        model = CameraModel.OPENCV
        distortion = (d[0], d[1], d[4], 0.0, d[2], d[3])
    return Camera(
        model=model,
        width_px=entry["width"],
        height_px=entry["height"],
        fx=k[0, 0],
        fy=k[1, 1],
        cx=k[0, 2],
        cy=k[1, 2],
        distortion=distortion,
    )


# ---------------------------------------------------------------------------------------------
# KRT vs the renderer


@pytest.mark.parametrize("rig", ["v2", "v1"])
def test_krt_projects_traced_point_to_the_rendered_pixel(rig, request):
    capture = request.getfixturevalue(f"synth_{rig}")
    truth = _json(capture / "ground_truth.json")
    krt = _json(capture / "cameras.json")["KRT"]
    rng = np.random.default_rng(0)
    checked = 0
    for entry in krt[:: max(1, len(krt) // 9)]:
        exr_path = capture / "images-2k" / f"{entry['cameraId']}.exr"
        width, height = image_size(exr_path)
        gt = truth["images"][entry["cameraId"]]
        renderer_camera = cameras.rescale_camera(gt_camera(gt["camera"]), width, height)
        world_from_cam = np.array(gt["world_from_cam"])
        # pixel centres the renderer shaded (corner origin, +0.5)
        pixels = np.stack(
            [rng.integers(0, width, 40) + 0.5, rng.integers(0, height, 40) + 0.5], axis=-1
        )
        # [N, 3] ground-truth surface points
        points, radiance, valid = traced_points(
            renderer_camera, world_from_cam, pixels, seed=truth["seed"]
        )

        # the KRT file alone: K, distortion, T (world -> camera, column-major), at image size
        krt_camera = cameras.rescale_camera(_krt_camera(entry), width, height)
        cam_from_world = cameras.matrix_from_column_major(entry["T"], 4)
        in_cam = points @ cam_from_world[:3, :3].T + cam_from_world[:3, 3]
        projected = cameras.project(krt_camera, in_cam)
        error = np.abs(projected - pixels)[valid]
        assert error.max() < 0.01, f"{entry['cameraId']}: {error.max()} px"

        # and the EXR holds exactly that radiance there (supersample=1 fixtures)
        exr = read_image(exr_path).astype(np.float64)
        rows = (pixels[valid, 1] - 0.5).astype(int)
        cols = (pixels[valid, 0] - 0.5).astype(int)
        expected = radiance[valid] / np.array(truth["white_balance"])
        np.testing.assert_allclose(exr[rows, cols], expected, rtol=2e-3, atol=1e-4)
        checked += int(valid.sum())
    assert checked > 150


@pytest.mark.parametrize("rig", ["v2", "v1"])
def test_emitters_appear_where_krt_projects_them(rig, request):
    """Photometric, independent of the renderer's ray code: known bright points of the scene
    (lamp ball centre, ceiling panel centres), projected with the KRT file, land on bright EXR
    pixels wherever nothing occludes them."""
    from eyeful_tools.synth import scene

    capture = request.getfixturevalue(f"synth_{rig}")
    seed = _json(capture / "ground_truth.json")["seed"]
    lamp_centre, lamp_radius = scene.SPHERES[scene.LAMP_SPHERE]
    targets = [(np.array(lamp_centre), lamp_radius)] + [
        (np.array([(x0 + x1) / 2, scene.ROOM_MAX[1], (z0 + z1) / 2]), 0.0)
        for (x0, x1), (z0, z1) in scene.PANELS
    ]
    hits = 0
    for entry in _json(capture / "cameras.json")["KRT"]:
        exr_path = capture / "images-2k" / f"{entry['cameraId']}.exr"
        width, height = image_size(exr_path)
        camera = cameras.rescale_camera(_krt_camera(entry), width, height)
        cam_from_world = cameras.matrix_from_column_major(entry["T"], 4)
        centre = -cam_from_world[:3, :3].T @ cam_from_world[:3, 3]
        exr = None
        for point, radius in targets:
            in_cam = cam_from_world[:3, :3] @ point + cam_from_world[:3, 3]
            if in_cam[2] <= 0.2 * np.linalg.norm(in_cam):  # keep well inside the field of view
                continue
            u, v = cameras.project(camera, in_cam)
            if not (1 <= u < width - 1 and 1 <= v < height - 1):
                continue
            _, distance = trace(centre[None], (point - centre)[None], seed=seed)
            if distance[0] < np.linalg.norm(point - centre) - radius - 1e-6:
                continue  # occluded
            exr = read_image(exr_path) if exr is None else exr
            assert exr[int(v), int(u), 1] > 3.0, (entry["cameraId"], u, v)
            hits += 1
    assert hits >= 3


def test_krt_fields_follow_the_real_format(synth_v2):
    truth = _json(synth_v2 / "ground_truth.json")
    krt = _json(synth_v2 / "cameras.json")["KRT"]
    assert len(krt) == len(truth["images"]) == 8 * truth["positions"]
    by_frame: dict[int, set[str]] = {}
    for entry in krt:
        camera_id, stem = entry["cameraId"].split("/")
        assert stem.startswith(f"{camera_id}_DSC") and len(stem.split("_DSC")[1]) == 4
        assert (entry["width"], entry["height"]) == (780, 1164)
        k = cameras.matrix_from_column_major(entry["K"], 3)
        assert k[0, 0] == k[1, 1] and k[0, 1] == 0.0 and k[2, 2] == 1.0
        assert entry["sensorId"] == int(camera_id) and entry["sensorMasterId"] == 13
        assert len(entry["distortion"]) == 5
        by_frame.setdefault(entry["frameId"], set()).add(stem.split("_")[1])
        # T is world -> camera: the camera centre from T matches ground truth
        t = cameras.matrix_from_column_major(entry["T"], 4)
        centre = -t[:3, :3].T @ t[:3, 3]
        gt = np.array(truth["images"][entry["cameraId"]]["world_from_cam"])
        np.testing.assert_allclose(centre, gt[:3, 3], atol=1e-12)
    # every camera of a position shares its frameId and file number; numbers differ by position
    assert all(len(names) == 1 for names in by_frame.values())
    assert len({next(iter(n)) for n in by_frame.values()}) == truth["positions"]


# ---------------------------------------------------------------------------------------------
# Metashape rig vs ground truth (composition written here from metashape.md s2, independently)


def _floats(element) -> np.ndarray:
    return np.array([float(v) for v in element.text.split()])


def _metashape_world_from_cam(xml_path: Path) -> tuple[dict[str, np.ndarray], dict]:
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    chunk = etree.parse(str(xml_path), parser).getroot().find("chunk")
    transform = chunk.find("transform")
    rotation_c = _floats(transform.find("rotation")).reshape(3, 3)
    translation_c = _floats(transform.find("translation"))
    scale = float(transform.find("scale").text)

    sensors = {}
    for sensor in chunk.find("sensors"):
        offset = np.eye(4)  # master_cam_from_slave_cam, translation in internal units
        if sensor.get("master_id") is not None:
            offset[:3, :3] = _floats(sensor.find("rotation")).reshape(3, 3)
            location = sensor.find("location")
            if location is not None:
                offset[:3, 3] = _floats(location)
        calibration = sensor.find("calibration[@class='adjusted']")
        sensors[sensor.get("id")] = {"offset": offset, "calibration": calibration, "el": sensor}

    internal: dict[str, np.ndarray] = {}  # camera xml id -> camera -> internal
    cams = list(chunk.find("cameras").iter("camera"))
    for camera in cams:
        if camera.find("transform") is not None:
            internal[camera.get("id")] = _floats(camera.find("transform")).reshape(4, 4)
    poses = {}
    for camera in cams:
        master_id = camera.get("master_id")
        if master_id is None:
            t_internal = internal[camera.get("id")]
        else:
            assert camera.find("transform") is None
            t_internal = internal[master_id] @ sensors[camera.get("sensor_id")]["offset"]
        pose = np.eye(4)
        pose[:3, :3] = rotation_c @ t_internal[:3, :3]
        pose[:3, 3] = scale * rotation_c @ t_internal[:3, 3] + translation_c
        poses[camera.get("label")] = pose
    return poses, {"scale": scale, "sensors": sensors}


@pytest.mark.parametrize("rig", ["v2", "v1"])
def test_metashape_rig_composes_to_ground_truth(rig, request):
    capture = request.getfixturevalue(f"synth_{rig}")
    truth = _json(capture / "ground_truth.json")
    poses, info = _metashape_world_from_cam(capture / "cameras.xml")
    assert info["scale"] != 1.0
    assert len(poses) == len(truth["images"])
    for krt_id, image in truth["images"].items():
        pose = poses[krt_id.split("/")[1]]
        np.testing.assert_allclose(pose, np.array(image["world_from_cam"]), atol=1e-9, rtol=0)

    # rig structure: one master sensor, slaves point at it, one slave without <location>
    sensors = info["sensors"]
    master = truth["master_camera"]
    masters = [s for s in sensors.values() if s["el"].get("master_id") is None]
    assert [m["el"].get("label") for m in masters] == [master]
    slaves_without_location = [
        s for s in sensors.values() if s["el"].get("master_id") and s["el"].find("location") is None
    ]
    assert slaves_without_location
    for slave in slaves_without_location:
        rig_from_cam = np.array(truth["rig_cameras"][slave["el"].get("label")]["rig_from_cam"])
        master_rig_from_cam = np.array(truth["rig_cameras"][master]["rig_from_cam"])
        np.testing.assert_allclose(rig_from_cam[:3, 3], master_rig_from_cam[:3, 3], atol=1e-12)

    # intrinsics in Metashape's conventions: centre offsets, P1/P2 swapped vs OpenCV
    gt = gt_camera(truth["camera"])
    for sensor in sensors.values():
        calibration = sensor["calibration"]
        assert float(calibration.find("f").text) == gt.fx
        assert float(calibration.find("cx").text) + gt.width_px / 2 == pytest.approx(gt.cx)
        assert float(calibration.find("cy").text) + gt.height_px / 2 == pytest.approx(gt.cy)
        k1, k2, k3, k4, p1, p2 = gt.distortion
        assert float(calibration.find("p1").text) == p2
        assert float(calibration.find("p2").text) == p1
        assert float(calibration.find("k1").text) == k1
        # the initial calibration comes first, like real exports
        assert sensor["el"].find("calibration").get("class") == "initial"


# ---------------------------------------------------------------------------------------------
# Images, splits, determinism


def test_image_folders_sizes_and_splits(synth_v2):
    truth = _json(synth_v2 / "ground_truth.json")
    splits = _json(synth_v2 / "splits.json")
    ids = sorted(truth["images"])
    assert splits["test"] == sorted(i for i in ids if i.startswith("17/"))
    assert splits["train"] == sorted(i for i in ids if not i.startswith("17/"))
    full = truth["full_resolution"]
    for folder in FOLDERS:
        size = truth["folders"][folder]
        extension = "exr" if folder == "images-2k" else "jpg"
        files = sorted(p for p in (synth_v2 / folder).rglob(f"*.{extension}"))
        assert len(files) == len(ids)
        assert image_size(files[0]) == (size["width"], size["height"])
    two_k, one_k = truth["folders"]["images-jpeg-2k"], truth["folders"]["images-jpeg-1k"]
    # not exact fractions: x and y scale factors differ, as in the real 5784x8660 -> 1368x2048
    assert two_k["width"] / full["width"] != two_k["height"] / full["height"]
    assert one_k["width"] / two_k["width"] != 0.5 or one_k["height"] / two_k["height"] != 0.5


def test_exr_is_linear_hdr_and_jpeg_is_its_white_balanced_srgb(synth_v2):
    truth = _json(synth_v2 / "ground_truth.json")
    white_balance = np.array(truth["white_balance"])
    peak = 0.0
    for exr_path in sorted((synth_v2 / "images-2k").rglob("*.exr")):
        exr = read_image(exr_path)
        assert exr.dtype in (np.float16, np.float32) and exr.min() >= 0
        peak = max(peak, float(exr.max()))
    assert peak > 2.0  # emitters are well above 1.0
    stem = sorted(truth["images"])[5]
    exr = read_image(synth_v2 / "images-2k" / f"{stem}.exr").astype(np.float64)
    jpeg = read_image(synth_v2 / "images-jpeg-2k" / f"{stem}.jpg").astype(np.float64)
    expected = srgb_from_linear(exr * white_balance).astype(np.float64)
    assert np.mean(np.abs(jpeg - expected)) < 2.0
    assert jpeg.std() > 10  # textured, not flat


def test_fisheye_is_black_outside_the_image_circle(synth_v1):
    truth = _json(synth_v1 / "ground_truth.json")
    camera = gt_camera(truth["folders"]["images-2k"]["camera"])
    centres = cameras.pixel_centers(camera.width_px, camera.height_px)
    radius = np.hypot(
        (centres[..., 0] - camera.cx) / camera.fx, (centres[..., 1] - camera.cy) / camera.fy
    )
    limit = camera.fisheye_crop_radius_px / ((camera.fx + camera.fy) / 2)
    outside = radius > limit * 1.02
    inside = radius < limit * 0.98
    assert outside.sum() > 0.2 * outside.size
    for path in sorted((synth_v1 / "images-2k").rglob("*.exr"))[:6]:
        exr = read_image(path)
        assert np.all(exr[outside] == 0)
        assert np.mean(exr[inside].max(axis=-1) > 0.01) > 0.99
    jpeg_camera = gt_camera(truth["folders"]["images-jpeg-1k"]["camera"])
    c = cameras.pixel_centers(jpeg_camera.width_px, jpeg_camera.height_px)
    r = np.hypot(
        (c[..., 0] - jpeg_camera.cx) / jpeg_camera.fx, (c[..., 1] - jpeg_camera.cy) / jpeg_camera.fy
    )
    far_outside = r > limit * 1.15  # leave room for JPEG ringing at the circle's edge
    for path in sorted((synth_v1 / "images-jpeg-1k").rglob("*.jpg"))[:6]:
        values = read_image(path)[far_outside]
        assert values.max() <= 16 and values.mean() < 0.5


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in (".json", ".xml")
    }


def _pixels(root: Path) -> dict[str, np.ndarray]:
    return {
        str(p.relative_to(root)): read_image(p)
        for p in sorted(root.rglob("*"))
        if p.suffix in (".jpg", ".exr")
    }


def test_same_seed_is_identical_and_another_seed_differs(tmp_path):
    kwargs = {"rig": "v1", "positions": 1, "size": (24, 36)}
    first = synthesize(tmp_path / "a", seed=3, **kwargs).out_dir
    again = synthesize(tmp_path / "b", seed=3, jobs=1, **kwargs).out_dir
    other = synthesize(tmp_path / "c", seed=4, **kwargs).out_dir
    assert _tree_bytes(first) == _tree_bytes(again)
    pixels_first, pixels_again = _pixels(first), _pixels(again)
    assert pixels_first.keys() == pixels_again.keys() and len(pixels_first) == 3 * 7
    for name, array in pixels_first.items():
        assert np.array_equal(array, pixels_again[name]), name
    pixels_other = _pixels(other)
    assert any(not np.array_equal(a, pixels_other[n]) for n, a in pixels_first.items())
    assert _tree_bytes(first)["ground_truth.json"] != _tree_bytes(other)["ground_truth.json"]


def test_trace_distance_reaches_the_known_surfaces():
    origins = np.array([[0.0, 1.5, 1.5], [0.0, 1.5, 1.5], [0.0, 1.5, 1.5], [1.0, 1.2, -1.0]])
    directions = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, 2.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    radiance, distance = trace(origins, directions)
    assert radiance.dtype == np.float32 and radiance.shape == (4, 3)
    # floor (y=0), +z wall (z=3.5), +x wall (x=2.5), ceiling (y=2.8); direction length ignored
    np.testing.assert_allclose(distance, [1.5, 2.0, 2.5, 1.6], atol=1e-12)
    # straight down onto the pedestal ball (centre (0, 0.95, 0), r 0.25)
    _, d = trace(np.array([[0.0, 2.0, 0.0]]), np.array([[0.0, -1.0, 0.0]]))
    assert d[0] == pytest.approx(2.0 - 1.2)


def test_cli_synth_writes_a_capture_and_prints_one_summary(tmp_path, capsys):
    out = tmp_path / "cap"
    rc = main(["synth", str(out), "--rig", "v2", "--positions", "1", "--size", "24x36"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "synth: 8 images" in err and "rig v2" in err
    for name in ("cameras.json", "cameras.xml", "splits.json", "ground_truth.json"):
        assert (out / name).is_file()
    assert image_size(out / "images-jpeg-1k" / "13" / "13_DSC0101.jpg") == (12, 19)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rig", "v3"], "error: --rig must be v1 or v2, got 'v3'"),
        (["--size", "24by36"], "error: --size must look like WIDTHxHEIGHT"),
        (["--positions", "0"], "error: --positions must be at least 1, got 0"),
    ],
)
def test_cli_synth_rejects_bad_options_without_writing(tmp_path, capsys, args, message):
    out = tmp_path / "cap"
    assert main(["synth", str(out), *args]) == 1
    assert capsys.readouterr().err.startswith(message)
    assert not out.exists()


def test_example_capture_is_cached(tmp_path):
    first = example_capture("v2", positions=1, size=(16, 24), cache_dir=tmp_path)
    stamp = (first / "cameras.json").stat().st_mtime_ns
    second = example_capture("v2", positions=1, size=(16, 24), cache_dir=tmp_path)
    assert first == second and (second / "cameras.json").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no staging folders left


def test_rerun_replaces_an_earlier_capture_and_refuses_foreign_folders(tmp_path, capsys):
    out = tmp_path / "cap"
    synthesize(out, rig="v1", positions=2, size=(16, 24))
    synthesize(out, rig="v2", positions=1, size=(16, 24))
    folders = {p.name for p in (out / "images-jpeg-2k").iterdir()}
    assert folders == {str(i) for i in range(10, 18)}  # no v1 camera folders left behind
    assert len(list((out / "images-2k").rglob("*.exr"))) == 8

    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    assert main(["synth", str(foreign), "--positions", "1", "--size", "16x24"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"error: {foreign}: folder is not empty and holds no synthetic capture"
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]


def test_a_full_disk_leaves_no_partial_capture(tmp_path: Path) -> None:
    """A real failing write half way (RLIMIT_FSIZE: writes past 2 KB fail with EFBIG, as a full
    disk fails them with ENOSPC): one line, and neither a partial new capture nor a damaged
    earlier one under the final name."""
    import resource
    import signal
    import subprocess
    import sys

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    fresh, earlier = tmp_path / "fresh", tmp_path / "earlier"
    synthesize(earlier, rig="v1", positions=1, size=(16, 24))
    before = _tree_bytes(earlier)
    for out in (fresh, earlier):
        run = subprocess.run(
            [sys.executable, "-c", "from eyeful_tools.cli import entry_point; entry_point()",
             "synth", str(out), "--positions", "2", "--size", "64x96"],
            preexec_fn=limit, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert run.returncode == 1, run.stderr
        assert run.stderr.startswith(f"error: {out}/") and run.stderr.count("\n") == 1, run.stderr
        assert run.stderr.endswith(": File too large\n"), run.stderr
    assert not fresh.exists()
    assert _tree_bytes(earlier) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier"]  # no build folder left


def test_an_earlier_capture_holding_other_files_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "cap"
    synthesize(out, rig="v2", positions=1, size=(16, 24))
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="holds notes.txt besides the synthetic capture"):
        synthesize(out, rig="v2", positions=1, size=(16, 24))
    assert (out / "notes.txt").read_text() == "mine"
