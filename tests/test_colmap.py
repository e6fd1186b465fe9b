"""COLMAP interop: camera models against pycolmap's projection, rig export, round trips, import."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pycolmap
import pytest
from helpers import ground_truth

from eyeful_tools import cameras, colmap_io, transforms
from eyeful_tools.cameras import Camera, CameraModel, Frame, Scene, WorldUp
from eyeful_tools.cli import main
from eyeful_tools.errors import UnsupportedError

RNG = np.random.default_rng(7)
POINTS_IN_CAM = RNG.uniform([-0.6, -0.6, 0.5], [0.6, 0.6, 2.0], size=(64, 3))


def _camera(model: CameraModel, distortion=(0.0,) * 6) -> Camera:
    return Camera(
        model=model,
        width_px=120,
        height_px=90,
        fx=101.5,
        fy=99.25,
        cx=61.3,
        cy=44.1,
        distortion=distortion,
    )


OUR_CAMERAS = {
    "PINHOLE": _camera(CameraModel.PINHOLE),
    "OPENCV": _camera(CameraModel.OPENCV, (-0.05, 0.01, 0.0, 0.0, 0.001, -0.0007)),
    "FULL_OPENCV": _camera(CameraModel.OPENCV, (-0.05, 0.01, -0.002, 0.0, 0.001, -0.0007)),
    "OPENCV_FISHEYE": _camera(CameraModel.OPENCV_FISHEYE, (0.02, -0.004, 0.0007, -5e-5, 0, 0)),
    "THIN_PRISM_FISHEYE": _camera(
        CameraModel.OPENCV_FISHEYE, (0.02, -0.004, 0.0007, -5e-5, 0.0003, -0.0002)
    ),
}


@pytest.mark.parametrize("expected", sorted(OUR_CAMERAS))
def test_exported_cameras_project_exactly_like_ours(expected: str) -> None:
    """Same pixels from pycolmap as from cameras.project: model, parameter order and the
    pixel-centre convention (both corner-origin) all agree; import gives the camera back."""
    camera = OUR_CAMERAS[expected]
    name, params = colmap_io.colmap_camera_params(camera)
    assert name == expected
    colmap_camera = pycolmap.Camera(
        camera_id=1, model=name, width=camera.width_px, height=camera.height_px, params=params
    )
    np.testing.assert_allclose(
        colmap_camera.img_from_cam(POINTS_IN_CAM),
        cameras.project(camera, POINTS_IN_CAM),
        atol=1e-9,
    )
    assert colmap_io.camera_from_colmap(colmap_camera) == camera


@pytest.mark.parametrize(
    "name, params",
    [
        ("SIMPLE_PINHOLE", [100.0, 60.0, 45.0]),
        ("SIMPLE_RADIAL", [100.0, 60.0, 45.0, -0.03]),
        ("RADIAL", [100.0, 60.0, 45.0, -0.03, 0.004]),
        ("SIMPLE_RADIAL_FISHEYE", [100.0, 60.0, 45.0, 0.02]),
        ("RADIAL_FISHEYE", [100.0, 60.0, 45.0, 0.02, -0.003]),
    ],
)
def test_imported_special_models_project_like_colmap(name: str, params: list[float]) -> None:
    colmap_camera = pycolmap.Camera(camera_id=1, model=name, width=120, height=90, params=params)
    camera = colmap_io.camera_from_colmap(colmap_camera)
    np.testing.assert_allclose(
        cameras.project(camera, POINTS_IN_CAM), colmap_camera.img_from_cam(POINTS_IN_CAM), atol=1e-9
    )


def test_inexpressible_cameras_are_refused() -> None:
    with pytest.raises(UnsupportedError, match="nonzero k4 has no COLMAP equivalent"):
        colmap_io.colmap_camera_params(_camera(CameraModel.OPENCV, (0.1, 0, 0, 0.01, 0, 0)))
    rational = pycolmap.Camera(
        camera_id=3,
        model="FULL_OPENCV",
        width=9,
        height=9,
        params=[1, 1, 4, 4] + [0] * 5 + [0.1, 0, 0],
    )
    with pytest.raises(UnsupportedError, match="FULL_OPENCV with nonzero k4 has no equivalent"):
        colmap_io.camera_from_colmap(rational)
    fov = pycolmap.Camera(camera_id=4, model="FOV", width=9, height=9, params=[1, 1, 4, 4, 0.1])
    with pytest.raises(UnsupportedError, match="COLMAP camera 4 uses FOV"):
        colmap_io.camera_from_colmap(fov)


# ---------------------------------------------------------------------------------------------
# The synthetic captures, converted, exported and imported back.


def _converted(capture: Path, tmp_path: Path) -> Path:
    """A writable copy of the capture's jpeg-2k folder, converted to transforms.json."""
    from eyeful_tools.convert import convert_capture

    copy = tmp_path / capture.name
    copy.mkdir()
    for name in ("cameras.json", "splits.json"):
        shutil.copy(capture / name, copy / name)
    shutil.copytree(capture / "images-jpeg-2k", copy / "images-jpeg-2k")
    convert_capture(copy, resolutions=["jpeg_2k"])
    return copy / "images-jpeg-2k"


@pytest.fixture(params=["synth_v2", "synth_v1"])
def converted(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, dict]:
    capture = request.getfixturevalue(request.param)
    truth = ground_truth(capture)
    return _converted(capture, tmp_path), truth


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "text"])
def test_round_trip_keeps_poses_intrinsics_and_extras(
    converted: tuple[Path, dict], tmp_path: Path, binary: bool
) -> None:
    data_dir, _ = converted
    result = colmap_io.export_colmap(data_dir, tmp_path / "colmap", binary=binary)
    suffix = ".bin" if binary else ".txt"
    assert {f"rigs{suffix}", f"frames{suffix}", f"images{suffix}"} <= {
        p.name for p in result.model_dir.iterdir()
    }
    imported = colmap_io.import_colmap(result.model_dir, data_dir, tmp_path / "back")

    before = transforms.read_transforms(data_dir / "transforms.json")
    after = transforms.read_transforms(imported.transforms_path)
    assert imported.scene.world_up is WorldUp.Z_UP
    assert after.camera_model == before.camera_model
    assert after.fisheye_crop_radius == before.fisheye_crop_radius
    assert after.applied_transform == before.applied_transform
    assert len(after.frames) == len(before.frames)
    for old, new in zip(before.frames, after.frames, strict=True):
        # images referenced where they are: same files, paths relative to the new folder
        assert (imported.transforms_path.parent / new.file_path).resolve() == (
            data_dir / old.file_path
        ).resolve()
        np.testing.assert_allclose(new.transform_matrix, old.transform_matrix, rtol=0, atol=1e-9)
        for key in ("w", "h", "fl_x", "fl_y", "cx", "cy", "k1", "k2", "k3", "k4", "p1", "p2"):
            assert getattr(new, key) == pytest.approx(getattr(old, key), rel=0, abs=1e-9), key
        assert new.eyeful == old.eyeful
    for key in transforms.SPLIT_KEYS:
        names = [Path(p).name for p in getattr(after, key)]
        assert names == [Path(p).name for p in getattr(before, key)], key


def test_exported_rig_is_the_synthetic_tower(converted: tuple[Path, dict], tmp_path: Path) -> None:
    """Read back with pycolmap: one rig (the tower) with the master as reference and the ground
    truth offsets as sensor_from_rig, one frame per rig position, every image in its frame."""
    data_dir, truth = converted
    result = colmap_io.export_colmap(data_dir, tmp_path / "colmap")
    model = pycolmap.Reconstruction(str(result.model_dir))
    assert model.num_rigs() == 1
    rig = model.rig(colmap_io.TOWER_RIG_ID)
    camera_ids = truth["camera_ids"]
    assert rig.num_sensors() == len(camera_ids)
    assert model.num_frames() == truth["positions"]
    sidecar = json.loads((result.model_dir / colmap_io.SIDECAR_NAME).read_text())
    name_of = {
        image.camera_id: sidecar["images"][image.name]["camera_id"]
        for image in model.images.values()
    }
    sensors = {name_of[c.camera_id]: c.sensor_id for c in model.cameras.values()}
    master = truth["master_camera"]
    assert rig.ref_sensor_id == sensors[master]
    rig_from_master = np.asarray(truth["rig_cameras"][master]["rig_from_cam"])
    for camera_id in camera_ids:
        cam_from_rig = np.asarray(truth["rig_cameras"][camera_id]["cam_from_rig"])
        expected = cam_from_rig @ rig_from_master  # the rig frame is the master camera's
        if camera_id == master:
            assert rig.is_ref_sensor(sensors[camera_id])
            continue
        got = colmap_io.matrix_from_rigid3d(rig.sensor_from_rig(sensors[camera_id]))
        np.testing.assert_allclose(got, expected, atol=1e-9)
    positions = {p["frame_id"] for p in truth["rig_positions"]}
    frame_positions = set()
    for frame in model.frames.values():
        names = [model.image(data.id).name for data in frame.data_ids]
        assert len(names) == len(camera_ids)
        (position,) = {sidecar["images"][n]["rig_position_id"] for n in names}
        frame_positions.add(position)
        assert frame.rig_id == colmap_io.TOWER_RIG_ID
    assert frame_positions == positions


def _scene(jitter: float = 0.0, rig_ids: bool = True) -> Scene:
    """Two cameras on a rigid bar at three positions (optionally jittered, not rigid)."""
    rng = np.random.default_rng(3)
    camera = OUR_CAMERAS["OPENCV"]
    offset = np.eye(4)
    offset[:3, 3] = [0.3, 0.0, 0.0]
    frames = []
    for position in range(3):
        world_from_rig = np.eye(4)
        world_from_rig[:3, :3] = pycolmap.Rotation3d(rng.normal(size=3) * 0.3).matrix()
        world_from_rig[:3, 3] = rng.normal(size=3)
        for index, rig_from_cam in enumerate((np.eye(4), offset)):
            pose = world_from_rig @ rig_from_cam
            pose[:3, 3] += jitter * rng.normal(size=3)
            frames.append(
                Frame(
                    image_path=f"cam{index}/{position}.jpg",
                    camera=camera,
                    world_from_cam=pose,
                    camera_id=f"cam{index}" if rig_ids else None,
                    rig_position_id=position if rig_ids else None,
                )
            )
    return Scene(frames=tuple(frames), world_up=WorldUp.Z_UP, name="bar")


def test_non_rigid_positions_fall_back_to_one_frame_per_image(caplog) -> None:
    model, report = colmap_io.scene_to_reconstruction(_scene(jitter=1e-3))
    assert report.rig is None and "not rigid" in report.rig_note
    assert model.num_frames() == 6 and "not rigid" in caplog.text
    model, report = colmap_io.scene_to_reconstruction(_scene(jitter=1e-3), rig="on")
    assert model.num_frames() == 3 and report.rig is not None
    assert 1e-4 < report.rig.max_translation_error < 1e-2  # averaged offsets, error reported
    model, report = colmap_io.scene_to_reconstruction(_scene(), rig="off")
    assert model.num_frames() == 6 and model.num_cameras() == 2
    with pytest.raises(UnsupportedError, match="not every frame has camera_id"):
        colmap_io.scene_to_reconstruction(_scene(rig_ids=False), rig="on")


def test_cli_export_and_import(synth_v2: Path, tmp_path: Path, capsys) -> None:
    data_dir = _converted(synth_v2, tmp_path)
    out = tmp_path / "colmap"
    assert main(["export", "colmap", str(data_dir), "--out", str(out), "--text"]) == 0
    line = capsys.readouterr().err
    assert "export colmap: 32 images, 8 cameras, 4 frames; rig of 8 cameras, reference 13" in line
    assert (out / "sparse" / "0" / "rigs.txt").is_file()
    back = tmp_path / "back"
    argv = ["import", "colmap", str(out / "sparse"), "--images", str(data_dir), "--out", str(back)]
    assert main([*argv, "--image-mode", "copy"]) == 0
    assert "import colmap: 32 images, world z_up, 4 rig positions" in capsys.readouterr().err
    tf = transforms.read_transforms(back / "transforms.json")
    assert tf.frames[0].file_path.startswith("images/")
    assert not transforms.missing_files(back / "transforms.json", [f.file_path for f in tf.frames])


def test_fisheye_without_tangential_and_its_shift() -> None:
    """Dropping p1/p2 gives an OPENCV_FISHEYE camera; the reported shift is the largest
    displacement of any valid pixel (checked on random pixels, independently of its grid)."""
    exact = OUR_CAMERAS["THIN_PRISM_FISHEYE"]
    approximation, shift = colmap_io.without_fisheye_tangential(exact)
    assert colmap_io.colmap_model_name(approximation) == "OPENCV_FISHEYE"
    assert approximation.distortion[:4] == exact.distortion[:4]
    radius = cameras.default_fisheye_crop_radius_px(exact)
    angle, r = RNG.uniform(0, 2 * np.pi, 20_000), radius * np.sqrt(RNG.uniform(0, 1, 20_000))
    pixels = np.stack([exact.cx + r * np.cos(angle), exact.cy + r * np.sin(angle)], axis=-1)
    pixels = pixels[(pixels >= 0).all(-1) & (pixels <= [exact.width_px, exact.height_px]).all(-1)]
    moved = cameras.project(approximation, cameras.unproject(exact, pixels))
    displacement = np.linalg.norm(moved - pixels, axis=-1)
    assert 0.0 < displacement.max() <= shift * 1.001 and displacement.max() > 0.95 * shift
    for unchanged in (OUR_CAMERAS["OPENCV_FISHEYE"], OUR_CAMERAS["OPENCV"]):
        assert colmap_io.without_fisheye_tangential(unchanged) == (unchanged, 0.0)


def test_export_fisheye_as_opencv_fisheye(synth_v1: Path, tmp_path: Path, capsys) -> None:
    """--fisheye opencv: every camera OPENCV_FISHEYE (what splatting loaders read), k1..k4
    kept, and the summary says how far pixels moved; the default keeps p1/p2 exactly."""
    data_dir = _converted(synth_v1, tmp_path)
    exact_out, opencv_out = tmp_path / "exact", tmp_path / "opencv"
    assert main(["export", "colmap", str(data_dir), "--out", str(exact_out)]) == 0
    assert "p1/p2 dropped" not in capsys.readouterr().err
    assert (
        main(["export", "colmap", str(data_dir), "--out", str(opencv_out), "--fisheye", "opencv"])
        == 0
    )
    line = capsys.readouterr().err
    assert "p1/p2 dropped from 28 fisheye images (max shift" in line
    exact = pycolmap.Reconstruction(str(exact_out / "sparse" / "0"))
    approximated = pycolmap.Reconstruction(str(opencv_out / "sparse" / "0"))
    assert {c.model.name for c in exact.cameras.values()} == {"THIN_PRISM_FISHEYE"}
    assert {c.model.name for c in approximated.cameras.values()} == {"OPENCV_FISHEYE"}
    for camera_id, camera in approximated.cameras.items():
        k1, k2, p1, p2, k3, k4 = list(exact.cameras[camera_id].params)[4:10]
        assert (p1, p2) != (0.0, 0.0)
        np.testing.assert_allclose(list(camera.params)[4:], [k1, k2, k3, k4])
    assert (
        main(["export", "colmap", str(data_dir), "--out", str(tmp_path / "x"), "--fisheye", "nope"])
        == 1
    )
    assert "--fisheye: expected one of exact, opencv" in capsys.readouterr().err


def test_cli_errors_are_one_line_and_write_nothing(tmp_path: Path, synth_v2: Path, capsys) -> None:
    assert main(["export", "colmap", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert (
        err.strip() == f"error: {tmp_path / 'nope' / 'transforms.json'}: transforms file not found"
    )
    assert not (tmp_path / "o").exists()

    data_dir = _converted(synth_v2, tmp_path)
    assert (
        main(["export", "colmap", str(data_dir), "--out", str(tmp_path / "m"), "--rig", "x"]) == 1
    )
    assert "error: --rig: expected one of auto, on, off, got 'x'" in capsys.readouterr().err

    model = colmap_io.export_colmap(data_dir, tmp_path / "m").model_dir
    images = tmp_path / "images"
    shutil.copytree(data_dir, images)
    (images / "10" / "10_DSC0102.jpg").unlink()
    out = tmp_path / "out"
    assert main(["import", "colmap", str(model), "--images", str(images), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {images / '10' / '10_DSC0102.jpg'}: image not found (1 of 32 missing)"
    assert not (out / "transforms.json").exists()

    assert (
        main(
            [
                "import",
                "colmap",
                str(tmp_path / "images"),
                "--images",
                str(images),
                "--out",
                str(out),
            ]
        )
        == 1
    )
    assert (
        "no COLMAP model (cameras.bin/images.bin or .txt) here or in a subfolder"
        in capsys.readouterr().err
    )


def test_foreign_model_uses_colmap_world_rigs_and_points(tmp_path: Path) -> None:
    """A model we did not write (pycolmap's synthetic rig dataset): nerfstudio's COLMAP world,
    rig positions from COLMAP frames, splits by interval, sparse points as PLY."""
    options = pycolmap.SyntheticDatasetOptions()
    options.num_rigs = 1
    options.num_cameras_per_rig = 3
    options.num_frames_per_rig = 4
    options.num_points3D = 50
    model = pycolmap.synthesize_dataset(options)
    model_dir = tmp_path / "sparse" / "0"
    model_dir.mkdir(parents=True)
    model.write_binary(str(model_dir))
    images = tmp_path / "images"
    images.mkdir()
    for image in model.images.values():
        (images / image.name).write_bytes(b"not decoded")
    result = colmap_io.import_colmap(tmp_path / "sparse", images, tmp_path / "ns")

    tf = transforms.read_transforms(result.transforms_path)
    assert result.scene.world_up is WorldUp.COLMAP
    output_from_colmap = cameras.output_world_from_source(WorldUp.COLMAP)
    np.testing.assert_array_equal(tf.applied_transform, output_from_colmap[:3])
    scene = transforms.transforms_to_scene(tf)
    for frame in scene.frames:
        image = model.find_image_with_name(Path(frame.image_path).name)
        expected = output_from_colmap @ cameras.world_from_cam(
            colmap_io.matrix_from_rigid3d(image.cam_from_world())
        )
        np.testing.assert_allclose(frame.world_from_cam, expected, atol=1e-9)
        assert frame.rig_position_id == image.frame_id
        assert frame.camera_id == str(image.camera_id)
        assert frame.camera.model is CameraModel.OPENCV  # SIMPLE_RADIAL
    assert len(tf.train_filenames) + len(tf.test_filenames) == 12 and tf.val_filenames
    assert tf.ply_file_path == "sparse_pc.ply"
    assert (result.transforms_path.parent / "sparse_pc.ply").stat().st_size > 50 * 12


def test_eyefultower_style_model_without_sidecar(synth_v2: Path, tmp_path: Path) -> None:
    """A rig model in EyefulTower's folder layout but not ours (no sidecar): camera ids from the
    image folders, rig positions from COLMAP frames; no catalog rule is guessed from the
    camera ids: nerfstudio's every 8th image is test."""
    data_dir = _converted(synth_v2, tmp_path)
    model_dir = colmap_io.export_colmap(data_dir, tmp_path / "colmap").model_dir
    (model_dir / colmap_io.SIDECAR_NAME).unlink()
    result = colmap_io.import_colmap(model_dir, data_dir, tmp_path / "ns")
    assert result.scene.world_up is WorldUp.COLMAP
    tf = transforms.read_transforms(result.transforms_path)
    by_name = {Path(f.file_path).name: f for f in tf.frames}
    assert {f.eyeful.camera_id for f in tf.frames} == {str(c) for c in range(10, 18)}
    positions = {f.eyeful.rig_position_id for f in tf.frames}
    assert len(positions) == 4
    for name in by_name:  # images of one rig position share the COLMAP frame id
        same_shot = [f for n, f in by_name.items() if n.split("_")[1] == name.split("_")[1]]
        assert len({f.eyeful.rig_position_id for f in same_shot}) == 1
    names = sorted(f.file_path for f in tf.frames)
    assert sorted(tf.test_filenames) == names[::8] and "every 8th" in tf.eyeful["split"]


@pytest.mark.parametrize("angle", [1e-10, 1e-7, 0.5, 3.1])
def test_rotation_angle_is_accurate_from_tiny_to_large(angle: float) -> None:
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    rotation = pycolmap.Rotation3d(axis * angle).matrix()
    assert cameras.rotation_angle_rad(np.eye(4), rotation) == pytest.approx(angle, rel=1e-6)


def test_legacy_text_model_without_rigs_and_frames(tmp_path: Path) -> None:
    """Older COLMAP and Metashape exports (EyefulTower's colmap/sparse) have no rigs/frames
    files; pycolmap makes trivial ones and every image is its own position-less frame."""
    options = pycolmap.SyntheticDatasetOptions()
    options.num_rigs = 2
    options.num_frames_per_rig = 3
    options.num_points3D = 20
    model = pycolmap.synthesize_dataset(options)
    model_dir = tmp_path / "sparse"
    model_dir.mkdir()
    model.write_text(str(model_dir))
    (model_dir / "rigs.txt").unlink()
    (model_dir / "frames.txt").unlink()
    images = tmp_path / "images"
    images.mkdir()
    for image in model.images.values():
        (images / image.name).write_bytes(b"jpeg")
    result = colmap_io.import_colmap(model_dir, images, tmp_path / "ns", image_mode="symlink")
    assert len(result.scene.frames) == 6
    assert all(f.rig_position_id is None for f in result.scene.frames)
    assert (tmp_path / "ns" / "images" / model.image(1).name).is_symlink()


def test_export_never_replaces_a_model_unasked(
    converted: tuple[Path, dict], tmp_path: Path, capsys
):
    """B7: pointed at an EyefulTower colmap/ download, export replaced its reconstruction
    (points3D included). Refused without --overwrite; never into the dataset's own files."""
    data_dir, _ = converted
    original = tmp_path / "riverview" / "colmap"
    model = colmap_io.export_colmap(data_dir, original).model_dir
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    assert main(["export", "colmap", str(data_dir), "--out", str(original)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {model}: output folder already holds cameras.bin")
    assert err.endswith("(pass --overwrite)") and len(err.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before
    assert main(["export", "colmap", str(data_dir), "--out", str(original), "--overwrite"]) == 0
    # a sparse/0 holding the dataset's own images: refused even with --overwrite
    inside = data_dir / "sparse" / "0"
    image = data_dir / transforms.read_transforms(data_dir / "transforms.json").frames[0].file_path
    inside.mkdir(parents=True)
    shutil.copy(image, inside / "x.jpg")
    tf = transforms.read_transforms(data_dir / "transforms.json")
    tf.frames[0].file_path = "sparse/0/x.jpg"
    transforms.write_transforms(data_dir / "transforms.json", tf)
    assert main(["export", "colmap", str(data_dir), "--out", str(data_dir), "--overwrite"]) == 1
    assert "output contains the input" in capsys.readouterr().err
    assert (inside / "x.jpg").is_file()


def test_import_colmap_never_replaces_a_dataset_unasked(
    converted: tuple[Path, dict], tmp_path: Path, capsys
) -> None:
    """import colmap into a folder that holds a transforms.json (a converted capture):
    refused without --overwrite; copying images onto the --images folder: always refused."""
    data_dir, _ = converted
    model = colmap_io.export_colmap(data_dir, tmp_path / "colmap").model_dir
    before = (data_dir / "transforms.json").read_bytes()
    argv = ["import", "colmap", str(model), "--images", str(data_dir), "--out", str(data_dir)]
    assert main(argv) == 1
    assert "already holds transforms.json (pass --overwrite)" in capsys.readouterr().err
    assert (data_dir / "transforms.json").read_bytes() == before
    # nerfstudio's layout, ns/images + ns/colmap: copying the images to ns/images is refused
    layout = tmp_path / "ns"
    shutil.copytree(data_dir, layout / "images")
    copy_onto_itself = ["import", "colmap", str(model), "--images", str(layout / "images")]
    copy_onto_itself += ["--out", str(layout), "--image-mode", "copy", "--overwrite"]
    assert main(copy_onto_itself) == 1
    assert "output contains the input" in capsys.readouterr().err
    assert len(list((layout / "images").rglob("*.jpg"))) == len(list(data_dir.rglob("*.jpg")))
    assert main([*argv, "--overwrite"]) == 0
