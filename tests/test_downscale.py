"""eyeful downscale: sizes, intrinsics that keep points in place, EXR averages, masks, reruns."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import ground_truth, gt_camera, random_pose

from eyeful_tools import cameras, downscale, imageio, transforms
from eyeful_tools.cameras import Camera, CameraModel, Frame, Scene, WorldUp
from eyeful_tools.cli import main
from eyeful_tools.errors import InputFormatError

DISTORTION = (-0.08, 0.015, 0.0, 0.0, 0.0004, -0.0003)
# a 3D point per camera (OpenCV camera axes, metres) that lands off-centre in the image
POINT_IN_CAM = np.array([0.31, -0.22, 2.0])


def _camera(width: int, height: int, model: CameraModel = CameraModel.OPENCV) -> Camera:
    radius = 0.45 * min(width, height) / 2 if model is CameraModel.OPENCV_FISHEYE else None
    return Camera(
        model=model,
        width_px=width,
        height_px=height,
        fx=0.9 * height,
        fy=0.9 * height + 1.5,
        cx=width / 2 + 1.3,
        cy=height / 2 - 2.1,
        distortion=DISTORTION if model is CameraModel.OPENCV else (0.02, -0.01, 0, 0, 0, 0),
        fisheye_crop_radius_px=radius,
    )


def _blob_image(camera: Camera, sigma_px: float = 5.0) -> np.ndarray:
    """Grey texture with a bright Gaussian blob centred where POINT_IN_CAM projects."""
    (u, v), *_ = cameras.project(camera, POINT_IN_CAM[None])
    ys, xs = np.mgrid[0 : camera.height_px, 0 : camera.width_px] + 0.5  # pixel centres
    blob = np.exp(-((xs - u) ** 2 + (ys - v) ** 2) / (2 * sigma_px**2))
    grey = 40 + 200 * blob
    return np.repeat(grey[..., None], 3, axis=2).round().astype(np.uint8)


def _dataset(
    root: Path,
    sizes: list[tuple[int, int]],
    suffix: str = ".jpg",
    model: CameraModel = CameraModel.OPENCV,
    masks: bool = False,
    depths: bool = False,
    folders: list[str] | None = None,
) -> Path:
    """Write images (one camera folder each, like Eyeful) and transforms.json; return its path."""
    frames = []
    for index, (width, height) in enumerate(sizes):
        camera = _camera(width, height, model)
        folder = folders[index] if folders else f"{10 + index}"
        name = f"{folder}/{10 + index}_DSC{index:04d}{suffix}"
        if suffix == ".exr":
            rng = np.random.default_rng(index)
            hdr = rng.gamma(2.0, 1.5, size=(height, width, 3)).astype(np.float16)
            imageio.write_image(root / name, hdr if index % 2 else hdr.astype(np.float32))
        else:
            imageio.write_image(root / name, _blob_image(camera), jpeg_quality=100)
        mask_name = depth_name = None
        if masks:
            mask_name = f"masks/{10 + index}_DSC{index:04d}.png"
            rng = np.random.default_rng(100 + index)
            mask = (rng.random((height, width)) > 0.5).astype(np.uint8) * 255
            imageio.write_image(root / mask_name, mask)
        if depths:
            depth_name = f"depth/{10 + index}_DSC{index:04d}.png"
            rng = np.random.default_rng(200 + index)
            depth = rng.integers(500, 9000, size=(height, width), dtype=np.uint16)
            imageio.write_image(root / depth_name, depth)
        frames.append(
            Frame(
                image_path=name,
                camera=camera,
                world_from_cam=random_pose(index),
                camera_id=folder,
                rig_position_id=index,
                mask_path=mask_name,
                depth_path=depth_name,
            )
        )
    names = [f.image_path for f in frames]
    scene = Scene(
        frames=tuple(frames),
        world_up=WorldUp.Y_UP,
        name="unit",
        splits={"train": names[1:], "val": names[:1], "test": names[:1]},
    )
    return transforms.write_transforms(
        root / "transforms.json", transforms.scene_to_transforms(scene)
    )


def _outputs(root: Path) -> dict[Path, int]:
    """mtime of every file downscale writes: images_N/..., masks_N/..., transforms_N.json."""
    written = re.compile(r"(images|masks|depths)_\d+|transforms_\d+\.json")
    return {
        p: p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file() and written.fullmatch(p.relative_to(root).parts[0])
    }


def test_sizes_floor_for_factors_that_divide_and_that_do_not(tmp_path: Path, capsys) -> None:
    path = _dataset(tmp_path, [(64, 96), (67, 101)])
    assert main(["downscale", str(tmp_path), "--jobs", "2"]) == 0  # through the spawn pool
    assert "downscaled 2 files (x2, x4, x8): 6 written" in capsys.readouterr().err
    for factor in (2, 4, 8):
        scaled = transforms.read_transforms(tmp_path / f"transforms_{factor}.json")
        for frame, (width, height) in zip(scaled.frames, [(64, 96), (67, 101)], strict=True):
            assert (
                frame.file_path.startswith(f"images_{factor}/") and "/" not in frame.file_path[9:]
            )
            expected = (width // factor, height // factor)
            assert imageio.image_size(tmp_path / frame.file_path) == expected
            assert (frame.w, frame.h) == expected
    assert downscale.scaled_size(67, 101, 4) == (16, 25)
    assert path.is_file()


def test_intrinsics_keep_a_known_point_in_place(tmp_path: Path) -> None:
    """The blob rendered at POINT_IN_CAM is found, in every copy, where the rescaled camera
    projects the point from the world (to 0.5 px at the smaller size)."""
    sizes = [(256, 384), (259, 389)]  # the second divides by none of the factors
    path = _dataset(tmp_path, sizes)
    result = downscale.downscale(path, jobs=1, jpeg_quality=100)
    assert result.factors == (2, 4, 8) and result.written == 6
    original = transforms.transforms_to_scene(transforms.read_transforms(path))
    for factor in (2, 4, 8):
        scaled_path = tmp_path / f"transforms_{factor}.json"
        scaled = transforms.transforms_to_scene(transforms.read_transforms(scaled_path))
        for before, after in zip(original.frames, scaled.frames, strict=True):
            point_in_world = before.world_from_cam @ np.append(POINT_IN_CAM, 1.0)
            point_in_cam = cameras.cam_from_world(after.world_from_cam) @ point_in_world
            (u, v), *_ = cameras.project(after.camera, point_in_cam[None, :3])
            expected_camera = cameras.rescale_camera(
                before.camera, after.camera.width_px, after.camera.height_px
            )
            assert after.camera == expected_camera
            pixels = imageio.read_image(tmp_path / after.image_path)[..., 0].astype(float)
            weight = np.clip(pixels - 40, 0, None)
            weight[weight < weight.max() * 0.2] = 0
            ys, xs = np.mgrid[0 : pixels.shape[0], 0 : pixels.shape[1]] + 0.5
            found = (weight * xs).sum() / weight.sum(), (weight * ys).sum() / weight.sum()
            # same relative place as at full size
            (u0, v0), *_ = cameras.project(before.camera, POINT_IN_CAM[None])
            w0, h0 = before.camera.width_px, before.camera.height_px
            w1, h1 = after.camera.width_px, after.camera.height_px
            assert abs(u / w1 - u0 / w0) * w1 < 1e-6 and abs(v / h1 - v0 / h0) * h1 < 1e-6
            if factor < 8:  # at 1/8 the blob is under a pixel wide; the centroid is too coarse
                # the issue asks 0.5 px; 0.25 catches a stretch by libjpeg's rounded-up sizes
                assert np.hypot(found[0] - u, found[1] - v) < 0.25, (factor, found, (u, v))


def test_exr_mean_preserved_and_channel_type_kept(tmp_path: Path) -> None:
    path = _dataset(tmp_path, [(64, 96), (66, 97)], suffix=".exr")
    downscale.downscale(path, [2, 3], jobs=1)
    for factor in (2, 3):
        scaled = transforms.read_transforms(tmp_path / f"transforms_{factor}.json")
        source = transforms.read_transforms(path)
        for before, after in zip(source.frames, scaled.frames, strict=True):
            full = imageio.read_image(tmp_path / before.file_path)
            small = imageio.read_image(tmp_path / after.file_path)
            assert small.dtype == full.dtype
            assert small.shape == (full.shape[0] // factor, full.shape[1] // factor, 3)
            assert full.max() > 1.0  # HDR survives
            mean_full = full.astype(np.float64).mean()
            if full.shape[0] % factor == 0 and full.shape[1] % factor == 0:
                assert abs(small.astype(np.float64).mean() / mean_full - 1) < 1e-3
            else:  # edges weigh a little differently; still close
                assert abs(small.astype(np.float64).mean() / mean_full - 1) < 2e-2


def test_second_run_writes_nothing_and_a_touched_source_is_redone(tmp_path: Path) -> None:
    path = _dataset(tmp_path, [(64, 96), (64, 96)], masks=True)
    first = downscale.downscale(path, jobs=1)
    assert first.written == 12 and len(first.transforms_written) == 3
    before = _outputs(tmp_path)
    assert len(before) == 15
    second = downscale.downscale(path, jobs=1)
    assert second.written == 0 and second.up_to_date == 12
    assert not second.transforms_written
    assert _outputs(tmp_path) == before

    source = tmp_path / transforms.read_transforms(path).frames[0].file_path
    stamp = max(before.values()) + 10**9
    os.utime(source, ns=(stamp, stamp))
    third = downscale.downscale(path, jobs=1)
    assert third.written == 3  # that image's three copies, nothing else
    changed = {p for p, t in _outputs(tmp_path).items() if before[p] != t}
    assert changed == {tmp_path / f"images_{f}" / source.name for f in (2, 4, 8)}


def test_a_source_replaced_with_an_older_mtime_is_redone(tmp_path: Path) -> None:
    """B6: ``cp -p``/``rsync -a``/``unzip`` put a different image in place with an older
    mtime than the copies; judging by mtime kept the stale images_N/ forever."""
    path = _dataset(tmp_path, [(64, 96), (64, 96)])
    downscale.downscale(path, [2], jobs=1)
    source = tmp_path / transforms.read_transforms(path).frames[0].file_path
    copy = tmp_path / "images_2" / source.name
    old = source.stat().st_mtime_ns - 10**10  # older than every output
    replacement = tmp_path / "incoming.jpg"
    imageio.write_image(replacement, np.full((96, 64, 3), 200, np.uint8))
    os.utime(replacement, ns=(old, old))
    replacement.replace(source)  # what cp -p and rsync -a end with
    assert source.stat().st_mtime_ns < copy.stat().st_mtime_ns
    again = downscale.downscale(path, [2], jobs=1)
    assert again.written == 1 and again.up_to_date == 1
    assert imageio.read_image(copy).mean() == pytest.approx(200, abs=2)
    assert downscale.downscale(path, [2], jobs=1).written == 0  # and now it is recorded


def test_a_run_failing_half_way_records_no_output_it_did_not_write(tmp_path: Path) -> None:
    """Both sources replaced, the second one corrupt (its header passes, its pixels do not):
    the run fails after writing the first one's copies. The staleness record may keep its old
    claims, never the new identities, so the next run redoes what was not written."""
    path = _dataset(tmp_path, [(64, 96), (64, 96)])
    downscale.downscale(path, [2], jobs=1)
    state_before = (tmp_path / downscale.STATE_FILE).read_bytes()
    first, second = (tmp_path / f.file_path for f in transforms.read_transforms(path).frames)
    for source, value in ((first, 60), (second, 200)):
        imageio.write_image(source, np.full((96, 64, 3), value, np.uint8))
    good = second.read_bytes()
    second.write_bytes(good[: len(good) // 2])
    with pytest.raises(InputFormatError):
        downscale.downscale(path, [2], jobs=1)
    assert (tmp_path / downscale.STATE_FILE).read_bytes() == state_before
    assert imageio.read_image(tmp_path / "images_2" / second.name).mean() != pytest.approx(
        200, abs=20
    )  # the old copy, complete, still marked as made from the old source
    second.write_bytes(good)
    again = downscale.downscale(path, [2], jobs=1)
    assert again.written >= 1
    for source, value in ((first, 60), (second, 200)):
        copy = imageio.read_image(tmp_path / "images_2" / source.name)
        assert copy.mean() == pytest.approx(value, abs=2)
    assert downscale.downscale(path, [2], jobs=1).written == 0


def test_basename_collision_is_refused_and_nothing_written(tmp_path: Path, capsys) -> None:
    path = _dataset(tmp_path, [(32, 48), (32, 48)], folders=["a", "b"])
    data = transforms.read_transforms(path)
    data.frames[1].file_path = data.frames[1].file_path.replace("11_DSC0001", "10_DSC0000")
    (tmp_path / "b" / "11_DSC0001.jpg").rename(tmp_path / "b" / "10_DSC0000.jpg")
    transforms.write_transforms(path, data)
    assert main(["downscale", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: {path}: basenames collide, but images_N/ is flat as nerfstudio requires: "
        "10_DSC0000.jpg <- a/10_DSC0000.jpg, b/10_DSC0000.jpg"
    )
    assert not list(tmp_path.glob("images_*")) and not list(tmp_path.glob("transforms_*"))


def test_missing_image_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    path = _dataset(tmp_path, [(32, 48)])
    (tmp_path / "10" / "10_DSC0000.jpg").unlink()
    assert main(["downscale", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: 1 listed files are missing: ")
    assert "10_DSC0000.jpg" in err and err.count("\n") == 1


def test_wrong_declared_size_and_bad_factor_are_refused(tmp_path: Path, capsys) -> None:
    path = _dataset(tmp_path, [(32, 48)])
    data = transforms.read_transforms(path)
    data.frames[0].w = 33
    transforms.write_transforms(path, data)
    assert main(["downscale", str(tmp_path)]) == 1
    image = tmp_path / "10" / "10_DSC0000.jpg"
    expected = f"error: {image}: image is 32x48 but transforms.json frame 0 says 33x48\n"
    assert capsys.readouterr().err == expected
    assert main(["downscale", str(tmp_path), "--factor", "1"]) == 1
    assert capsys.readouterr().err == "error: --factor must be 2 or more (got 1)\n"
    assert not list(tmp_path.glob("images_*"))


def test_masks_and_depth_use_nearest(tmp_path: Path) -> None:
    path = _dataset(tmp_path, [(64, 96), (67, 101)], masks=True, depths=True)
    downscale.downscale(path, [2, 3], jobs=1)
    source = transforms.read_transforms(path)
    for factor in (2, 3):
        scaled = transforms.read_transforms(tmp_path / f"transforms_{factor}.json")
        for before, after in zip(source.frames, scaled.frames, strict=True):
            assert after.mask_path == f"masks_{factor}/{Path(before.mask_path).name}"
            assert after.depth_file_path == f"depths_{factor}/{Path(before.depth_file_path).name}"
            for key in ("mask_path", "depth_file_path"):
                full = imageio.read_image(tmp_path / getattr(before, key))
                small = imageio.read_image(tmp_path / getattr(after, key))
                assert small.dtype == full.dtype and small.ndim == 2
                assert small.shape == (full.shape[0] // factor, full.shape[1] // factor)
                candidates = _nearest_candidates(full, small.shape)
                assert np.any([small == c for c in candidates], axis=0).all()
            mask = imageio.read_image(tmp_path / after.mask_path)
            assert set(np.unique(mask)) == {0, 255}


def _nearest_candidates(full: np.ndarray, shape: tuple[int, ...]) -> list[np.ndarray]:
    """The source pixel under each output pixel centre. A centre exactly on a pixel border may
    take either neighbour (OpenCV's fixed point breaks such ties either way), so up to four."""
    picks = []
    for eps_y in (-1e-6, 1e-6):
        for eps_x in (-1e-6, 1e-6):
            ys = np.floor((np.arange(shape[0]) + 0.5) * full.shape[0] / shape[0] + eps_y)
            xs = np.floor((np.arange(shape[1]) + 0.5) * full.shape[1] / shape[1] + eps_x)
            picks.append(full[np.ix_(ys.astype(int), xs.astype(int))])
    return picks


def test_max_dim_picks_the_smallest_power_of_two(tmp_path: Path, capsys) -> None:
    assert downscale.factor_for_max_dim(1368, 2048, 1600) == 2
    assert downscale.factor_for_max_dim(1368, 2048, 500) == 8  # 2048 // 4 = 512 > 500
    assert downscale.factor_for_max_dim(1368, 2048, 4000) == 1
    _dataset(tmp_path, [(64, 96)])
    assert main(["downscale", str(tmp_path), "--max-dim", "30"]) == 0
    assert sorted(p.name for p in tmp_path.glob("images_*")) == ["images_4"]
    assert main(["downscale", str(tmp_path), "--max-dim", "96"]) == 0
    assert "already fit" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.glob("transforms_*")) == ["transforms_4.json"]


def test_splits_pose_extras_and_fisheye_radius_carried_over(tmp_path: Path) -> None:
    path = _dataset(tmp_path, [(64, 96), (67, 101)], model=CameraModel.OPENCV_FISHEYE)
    # several factors in one run: each transforms_N.json is scaled from the original, never
    # from the previous factor's copy
    downscale.downscale(path, [2, 4], jobs=1)
    source = transforms.read_transforms(path)
    half = transforms.read_transforms(tmp_path / "transforms_2.json")
    assert half.frames[0].eyeful.fisheye_crop_radius == pytest.approx(
        source.frames[0].eyeful.fisheye_crop_radius / 2
    )
    scaled = transforms.read_transforms(tmp_path / "transforms_4.json")
    assert scaled.applied_transform == source.applied_transform
    assert scaled.camera_model is CameraModel.OPENCV_FISHEYE
    assert scaled.val_filenames == scaled.test_filenames == [scaled.frames[0].file_path]
    assert scaled.train_filenames == [scaled.frames[1].file_path]
    assert transforms.missing_files(tmp_path / "transforms_4.json", scaled.train_filenames) == []
    assert scaled.eyeful["capture"] == "unit" and scaled.eyeful["downscale"]["factor"] == 4
    for before, after in zip(source.frames, scaled.frames, strict=True):
        assert after.transform_matrix == before.transform_matrix
        assert after.eyeful.rig_position_id == before.eyeful.rig_position_id
        scale_x, scale_y = after.w / before.w, after.h / before.h
        assert after.eyeful.fisheye_crop_radius == pytest.approx(
            before.eyeful.fisheye_crop_radius * (scale_x + scale_y) / 2
        )
        assert after.k1 == before.k1 and after.p2 == before.p2


def test_refuses_to_downscale_a_downscaled_copy(tmp_path: Path, capsys) -> None:
    _dataset(tmp_path, [(32, 48)])
    downscale.downscale(tmp_path, [2], jobs=1)
    assert main(["downscale", str(tmp_path / "transforms_2.json")]) == 1
    assert "already downscaled copies" in capsys.readouterr().err


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert an APP1 Exif segment holding only the Orientation tag (0x0112)."""
    ifd = b"\x00\x01" + b"\x01\x12\x00\x03\x00\x00\x00\x01" + bytes([0, orientation, 0, 0])
    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + ifd + b"\x00\x00\x00\x00"
    payload = b"Exif\x00\x00" + tiff
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg[:2] + segment + jpeg[2:]


def test_jpeg_quality_reaches_encoder_and_exif_orientation_is_ignored(tmp_path: Path) -> None:
    """A reduced decode must not rotate by EXIF (nerfstudio's ffmpeg and PIL do not)."""
    path = _dataset(tmp_path, [(64, 96)])
    source = tmp_path / "10" / "10_DSC0000.jpg"
    source.write_bytes(_with_exif_orientation(source.read_bytes(), 6))  # "rotate 90 CW"
    assert cv2.imread(str(source), cv2.IMREAD_REDUCED_COLOR_2).shape[:2] == (32, 48)  # rotated
    downscale.downscale(path, [2, 4], jobs=1, jpeg_quality=30)
    small = tmp_path / "images_2" / "10_DSC0000.jpg"
    assert imageio.image_size(small) == (32, 48)
    assert imageio.image_size(tmp_path / "images_4" / "10_DSC0000.jpg") == (16, 24)
    low = small.stat().st_size
    small.unlink()
    downscale.downscale(path, [2], jobs=1, jpeg_quality=100)
    assert small.stat().st_size > low


# ---------------------------------------------------------------------------------------------
# On the synthetic capture: its ground truth, its JPEG and EXR folders.


def _synth_transforms(capture: Path, folder: str, out: Path) -> Path:
    """transforms.json for one resolution folder, built from the capture's ground truth."""
    truth = ground_truth(capture)
    spec = truth["folders"][folder]
    shutil.copytree(capture / folder, out)
    camera = gt_camera(spec["camera"])
    frames = tuple(
        Frame(
            image_path=f"{key}.{spec['extension']}",
            camera=camera,
            world_from_cam=np.asarray(image["world_from_cam"]),
            camera_id=image["camera_id"],
            rig_position_id=image["frame_id"],
        )
        for key, image in sorted(truth["images"].items())
    )
    scene = Scene(frames=frames, world_up=WorldUp.Y_UP, name="synth")
    return transforms.write_transforms(
        out / "transforms.json", transforms.scene_to_transforms(scene)
    )


def test_synthetic_capture_points_and_pixels(synth_v2: Path, tmp_path: Path) -> None:
    """Ground-truth world points keep their relative place in every copy, and the copies'
    pixels match a plain full decode + area resize (colour order, orientation, alignment)."""
    path = _synth_transforms(synth_v2, "images-jpeg-2k", tmp_path / "jpeg")
    result = downscale.downscale(path, [2, 4, 5], jobs=1, jpeg_quality=100)
    truth = ground_truth(synth_v2)
    assert result.sources == len(truth["images"]) and result.written == 3 * result.sources
    full = transforms.transforms_to_scene(transforms.read_transforms(path))
    rng = np.random.default_rng(0)
    for factor in (2, 4, 5):
        psnrs = []
        small = transforms.transforms_to_scene(
            transforms.read_transforms(path.with_name(f"transforms_{factor}.json"))
        )
        for before, after in zip(full.frames, small.frames, strict=True):
            # points seen by the camera, in the (z-up) world of the file
            depth = rng.uniform(1.0, 4.0, size=(20, 1))
            pixels = rng.uniform(0.1, 0.9, size=(20, 2)) * [
                before.camera.width_px,
                before.camera.height_px,
            ]
            rays = cameras.unproject(before.camera, pixels)
            points = (before.world_from_cam[:3, :3] @ (rays * depth).T).T + before.world_from_cam[
                :3, 3
            ]
            cam_from_world = cameras.cam_from_world(after.world_from_cam)
            in_cam = (cam_from_world[:3, :3] @ points.T).T + cam_from_world[:3, 3]
            uv = cameras.project(after.camera, in_cam)
            size_before = np.array([before.camera.width_px, before.camera.height_px])
            size_after = np.array([after.camera.width_px, after.camera.height_px])
            np.testing.assert_array_less(
                np.abs(uv / size_after - pixels / size_before) * size_after, 0.5
            )

            decoded = imageio.read_image(tmp_path / "jpeg" / before.image_path)
            reference = cv2.resize(decoded, tuple(size_after), interpolation=cv2.INTER_AREA)
            copy = imageio.read_image(tmp_path / "jpeg" / after.image_path)
            mse = np.mean((copy.astype(float) - reference.astype(float)) ** 2)
            psnrs.append(10 * np.log10(255**2 / max(mse, 1e-9)))
        # re-encoding (4:2:0 chroma) 24x36 textured images costs some dB even at q100;
        # swapped channels or a one-pixel shift cost far more (about 20 dB mean)
        assert min(psnrs) > 31 and np.mean(psnrs) > 36, (factor, min(psnrs), np.mean(psnrs))


def test_synthetic_exr_folder_keeps_radiance(synth_v2: Path, tmp_path: Path) -> None:
    path = _synth_transforms(synth_v2, "images-2k", tmp_path / "exr")
    downscale.downscale(path, [2], jobs=1)
    source = transforms.read_transforms(path)
    scaled = transforms.read_transforms(path.with_name("transforms_2.json"))
    peak = 0.0
    for before, after in zip(source.frames, scaled.frames, strict=True):
        full = imageio.read_image(tmp_path / "exr" / before.file_path).astype(np.float64)
        small = imageio.read_image(tmp_path / "exr" / after.file_path)
        assert small.shape == (full.shape[0] // 2, full.shape[1] // 2, 3)
        assert abs(small.astype(np.float64).mean() / full.mean() - 1) < 1e-3
        peak = max(peak, float(full.max()))
    assert peak > 1.0  # the capture has lights brighter than white
