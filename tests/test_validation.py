"""Poisoned inputs are refused before anything is written, each by one exact error line:
corrupt or truncated images, absurd image headers, bad intrinsics, non-rigid poses and
nerfstudio's fraction crop radius (issues #15 and #16)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import OpenEXR
import pytest

from eyeful_tools import imageio
from eyeful_tools.cli import main
from eyeful_tools.errors import InputFormatError
from eyeful_tools.readers import metashape
from eyeful_tools.transforms import read_transforms

INTRINSICS_RULE = "(intrinsics must be finite and greater than zero)"
LIMIT_HINT = "(raise it with eyeful --max-image-pixels N or EYEFUL_MAX_IMAGE_PIXELS=N)"


@pytest.fixture(scope="module")
def converted(synth_v2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from eyeful_tools.convert import convert_capture

    copy = tmp_path_factory.mktemp("validation") / synth_v2.name
    shutil.copytree(synth_v2, copy, ignore=shutil.ignore_patterns("images-jpeg-2k"))
    convert_capture(copy, resolutions=["jpeg_1k", "exr_2k"])
    return copy


@pytest.fixture
def capture(converted: Path, tmp_path: Path) -> Path:
    """A private copy of a converted v2 capture (transforms.json in images-jpeg-1k/)."""
    return shutil.copytree(converted, tmp_path / converted.name)


def _edit(transforms_path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(transforms_path.read_text())
    change(data)
    transforms_path.write_text(json.dumps(data))


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _first_train_image(data: Path) -> Path:
    """The first image the trainer reads (frames sorted by resolved path)."""
    return sorted((data / f.file_path).resolve() for f in read_transforms(data).frames)[0]


def _refused_by_every_command(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str
) -> None:
    """split, downscale, export colmap and train each exit 1 with ``line`` and write nothing."""
    before = sorted(p for p in data.rglob("*"))
    commands = {
        "split": ["split", str(data / "transforms.json"), "--out", str(data / "t_split.json")],
        "downscale": ["downscale", str(data), "--jobs", "1"],
        "export": ["export", "colmap", str(data), "--out", str(tmp_path / "colmap")],
        "train": ["train", str(data), "--preset", "tiny", "--max-steps", "1",
                  "--output-dir", str(tmp_path / "runs"), "--downscale", "1"],
    }  # fmt: skip
    for name, args in commands.items():
        assert main(args) == 1, name
        assert _error(capsys) == line, name
    assert sorted(p for p in data.rglob("*")) == before
    assert not (tmp_path / "colmap").exists() and not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------
# Images that do not decode cleanly.


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garble_scan(path: Path) -> None:
    """Overwrite 16 bytes in the middle of the entropy-coded data (no marker made)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, middle + 16):
        data[i] = (data[i] * 7 + 13) & 0xFF if data[i] != 0xFF else 0
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncate, re.escape("corrupt JPEG (Premature end of JPEG file)")),
        (_garble_scan, r"corrupt JPEG \(Corrupt JPEG data: \d+ extraneous bytes before marker 0xd9\)"),
    ],
    ids=["truncated", "corrupt-entropy-data"],
)  # fmt: skip
def test_damaged_jpeg_is_refused_by_downscale_and_before_training(
    capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage, reason: str
) -> None:
    data = capture / "images-jpeg-1k"
    image = _first_train_image(data)
    damage(image)
    assert main(["downscale", str(data), "--jobs", "1", "--factor", "2"]) == 1
    assert re.fullmatch(f"error: {re.escape(str(image))}: {reason}", _error(capsys))
    assert not (data / "transforms_2.json").exists()
    assert not (data / "images_2" / image.name).exists()  # no copy of the damaged image
    runs = tmp_path / "runs"
    rc = main(["train", str(data), "--preset", "tiny", "--max-steps", "1",
               "--output-dir", str(runs), "--downscale", "1"])  # fmt: skip
    assert rc == 1
    assert re.fullmatch(f"error: {re.escape(str(image))}: {reason}", _error(capsys))
    assert not runs.exists()  # refused before the run folder was made


def test_decode_workers_decode_strictly(capture: Path) -> None:
    """The training loader's decode path (read_image_into) raises too, not only the up-front
    check: a file damaged after the check stops the run instead of training on grey."""
    image = _first_train_image(capture / "images-jpeg-1k")
    width, height = imageio.image_size(image)
    _truncate(image)
    with pytest.raises(InputFormatError) as caught:
        imageio.read_image_into(image, np.zeros((height, width, 3), np.uint8))
    assert caught.value.one_line() == f"{image}: corrupt JPEG (Premature end of JPEG file)"


def test_headers_cut_short_are_one_line_errors(tmp_path: Path) -> None:
    png = tmp_path / "short.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")  # 20 bytes
    jpeg = tmp_path / "sof.jpg"
    imageio.write_image(jpeg, np.zeros((8, 8, 3), np.uint8))
    data = jpeg.read_bytes()
    sof = data.index(b"\xff\xc0")
    jpeg.write_bytes(data[: sof + 6])  # inside the SOF segment, before the size
    for read in (imageio.image_size, imageio.read_image, imageio.verify_image):
        with pytest.raises(InputFormatError) as caught:
            read(png)
        assert caught.value.one_line() == f"{png}: PNG ends inside its header (truncated file)"
        with pytest.raises(InputFormatError) as caught:
            read(jpeg)
        assert caught.value.one_line() == f"{jpeg}: JPEG ends inside its headers (truncated file)"


def test_exr_with_uint_channels_or_truncated_is_refused_in_train(
    capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = capture / "images-2k"
    image = _first_train_image(data)
    width, height = imageio.image_size(image)
    pixels = np.ones((height, width, 3), np.uint32)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {"RGB": pixels}).write(str(image))
    args = ["train", str(data), "--preset", "tiny", "--max-steps", "1",
            "--output-dir", str(tmp_path / "runs"), "--downscale", "1"]  # fmt: skip
    assert main(args) == 1
    assert _error(capsys) == (
        f"error: {image}: EXR channel RGB holds uint32; eyeful reads HALF or FLOAT radiance"
    )
    shutil.copy(capture / "images-2k" / read_transforms(data).frames[-1].file_path, image)
    _truncate(image)
    # a subprocess: OpenEXR prints from C++ past Python's streams, which capsys cannot see
    run = subprocess.run(
        [sys.executable, "-c", "from eyeful_tools.cli import entry_point; entry_point()", *args],
        capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1", "COLUMNS": "300"},
    )  # fmt: skip
    assert run.returncode == 1
    assert run.stderr == f"error: {image}: cannot read EXR pixels (truncated or corrupt)\n"
    assert "Warning" not in run.stdout
    assert not (tmp_path / "runs").exists()


def test_exr_cut_anywhere_is_one_quiet_error(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Every cut of an EXR is refused by eyeful's own check, with nothing printed by OpenEXR."""
    whole = tmp_path / "whole.exr"
    imageio.write_image(whole, np.random.default_rng(0).random((40, 24, 3), np.float32))
    data = whole.read_bytes()
    cut = tmp_path / "cut.exr"
    for end in range(0, len(data), 37):
        cut.write_bytes(data[:end])
        with pytest.raises(InputFormatError):
            imageio.read_image(cut)
    assert capfd.readouterr() == ("", "")


# ---------------------------------------------------------------------------------------------
# The pixel limit: read from the header, before decoding.


def test_forged_huge_header_is_refused_before_decoding(
    capture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = capture / "images-jpeg-1k"
    item = read_transforms(data).frames[0]
    png = data / "huge.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + (30000).to_bytes(4, "big") * 2)

    def use_png(tf: dict) -> None:
        tf["frames"][0].update(file_path="huge.png", w=30000, h=30000)

    _edit(data / "transforms.json", use_png)
    assert main(["downscale", str(data), "--jobs", "1"]) == 1
    assert _error(capsys) == (
        f"error: {png}: image is 30000x30000 (900 megapixels), over the limit of 200 "
        f"megapixels {LIMIT_HINT}"
    )
    assert not list(data.glob("images_*")) and item.file_path != "huge.png"


def test_pixel_limit_flag_and_environment_apply_to_downscale_train_and_import(
    capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setenv("EYEFUL_MAX_IMAGE_PIXELS", "")  # the flag sets it: restored after
    data = capture / "images-jpeg-1k"
    first = data / read_transforms(data).frames[0].file_path
    width, height = imageio.image_size(first)
    over = f"image is {width}x{height} ({width * height / 1e6:.3g} megapixels), over the limit"
    assert main(["--max-image-pixels", "1000", "downscale", str(data), "--jobs", "1"]) == 1
    assert _error(capsys) == f"error: {first}: {over} of 0.001 megapixels {LIMIT_HINT}"
    assert not list(data.glob("images_*"))

    monkeypatch.setenv("EYEFUL_MAX_IMAGE_PIXELS", "2000")
    runs = tmp_path / "runs"
    rc = main(["train", str(data), "--preset", "tiny", "--max-steps", "1",
               "--output-dir", str(runs), "--downscale", "1"])  # fmt: skip
    assert rc == 1 and not runs.exists()
    image = _first_train_image(data)  # every image of the folder is the same size
    assert _error(capsys) == f"error: {image}: {over} of 0.002 megapixels {LIMIT_HINT}"

    import ios_fixtures as fx

    from eyeful_tools.readers.polycam import import_polycam

    views = fx.make_views(fx.POLYCAM_CAMERA, 2, fx.POLYCAM_DEPTH_SIZE_PX)
    source = fx.write_polycam_folder(tmp_path / "pc", views)
    with pytest.raises(InputFormatError, match=r"image is 64x48 \(0.00307 megapixels\), over"):
        import_polycam(source, tmp_path / "imported")
    assert not (tmp_path / "imported").exists()
    assert main(["--max-image-pixels", "0", "downscale", str(data)]) == 1
    assert _error(capsys) == "error: --max-image-pixels: must be at least 1, got 0"


# ---------------------------------------------------------------------------------------------
# Calibration.


def test_convert_refuses_a_zero_focal_length_from_cameras_json(
    capture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calibration = json.loads((capture / "cameras.json").read_text())
    entry = calibration["KRT"][3]
    entry["K"][0][0] = 0.0  # column-major K: [0][0] is fx
    (capture / "cameras.json").write_text(json.dumps(calibration))
    for written in capture.rglob("transforms*.json"):
        written.unlink()
    assert main(["convert", str(capture), "--resolution", "jpeg_1k"]) == 1
    assert _error(capsys) == (
        f"error: {capture / 'cameras.json'}: frame {entry['cameraId']}: focal length fx is 0 "
        f"{INTRINSICS_RULE}"
    )
    assert not list(capture.rglob("transforms*.json"))


def test_convert_refuses_metashape_b1_below_minus_f(
    capture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    xml = capture / "cameras.xml"
    first = next(f.image_path for f in metashape.read_metashape(xml).frames if f.sensor_id == "10")
    text = xml.read_text()
    adjusted = text.index('class="adjusted"')  # sensor 10's, the first sensor
    f_end = text.index("</f>", adjusted) + len("</f>")
    xml.write_text(text[:f_end] + "<b1>-600</b1>" + text[f_end:])  # f is 560
    for written in capture.rglob("transforms*.json"):
        written.unlink()
    assert main(["convert", str(capture), "--from", "metashape", "--resolution", "jpeg_1k"]) == 1
    assert _error(capsys) == (
        f"error: {xml}: frame {first}: focal length fx is -40 {INTRINSICS_RULE}"
    )
    assert not list(capture.rglob("transforms*.json"))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda f: f.update(fl_y=-5.0), f"focal length fy is -5 {INTRINSICS_RULE}"),
        (lambda f: f.update(cx=0.0), f"principal point cx is 0 {INTRINSICS_RULE}"),
        (
            lambda f: f["transform_matrix"][0].__setitem__(0, 2 * f["transform_matrix"][0][0]),
            None,  # a scaled axis: not orthonormal
        ),
        (
            lambda f: [row.__setitem__(0, -row[0]) for row in f["transform_matrix"][:3]],
            "transform_matrix rotation has determinant -1, not +1 (a reflection)",
        ),
        (
            lambda f: f["transform_matrix"][1].__setitem__(3, 1e307),
            "transform_matrix camera position 1e+307 is beyond 1e+07 (units of the file)",
        ),
    ],
    ids=["negative-fy", "zero-cx", "scaled-rotation", "reflection", "position-1e307"],
)
def test_bad_calibration_in_transforms_json_is_refused_by_every_command(
    capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], change, reason
) -> None:
    data = capture / "images-jpeg-1k"
    frames = json.loads((data / "transforms.json").read_text())["frames"]
    bad = frames[3]
    if reason is None:  # the exact number follows from the frame's own rotation
        r = np.asarray(bad["transform_matrix"], dtype=float)[:3, :3]
        r[0, 0] *= 2
        gram = np.abs(r @ r.T - np.eye(3)).max()
        reason = f"transform_matrix rotation is not orthonormal (|R R^T - I| = {gram:.2g} > 0.0001)"
    _edit(data / "transforms.json", lambda tf: change(tf["frames"][3]))
    line = f"error: {data / 'transforms.json'}: frame {bad['file_path']}: {reason}"
    _refused_by_every_command(data, tmp_path, capsys, line)


def test_nerfstudio_fraction_crop_radius_is_refused_and_convert_repairs_it(
    synth_v1: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = shutil.copytree(synth_v1, tmp_path / "capture",
                              ignore=shutil.ignore_patterns("images-2k", "images-jpeg-2k"))  # fmt: skip
    assert main(["convert", str(capture), "--resolution", "jpeg_1k"]) == 0
    data = capture / "images-jpeg-1k"
    transforms_path = data / "transforms.json"
    first = read_transforms(transforms_path).frames[0].file_path
    _edit(transforms_path, lambda tf: tf.update(fisheye_crop_radius=0.9))  # ns-download-data's
    capsys.readouterr()
    line = (
        f"error: {transforms_path}: frame {first}: fisheye_crop_radius is 0.9 (top level: every "
        f"frame), not pixels: nerfstudio writes this as a fraction; run `eyeful convert "
        f"{capture}` to repair it"
    )
    _refused_by_every_command(data, tmp_path, capsys, line)
    assert main(["convert", str(capture), "--resolution", "jpeg_1k"]) == 0  # the repair
    assert read_transforms(transforms_path).fisheye_crop_radius > 10


def test_negative_crop_radius_is_never_written(
    capture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = capture / "images-jpeg-1k"

    def negative(tf: dict) -> None:
        tf["frames"][2]["eyeful"]["fisheye_crop_radius"] = -3.0

    _edit(data / "transforms.json", negative)
    frames = json.loads((data / "transforms.json").read_text())["frames"]
    assert main(["split", str(data / "transforms.json"), "--out", str(data / "t.json")]) == 1
    assert _error(capsys) == (
        f"error: {data / 'transforms.json'}: frame {frames[2]['file_path']}: fisheye_crop_radius "
        "is -3 (must be a positive number of pixels)"
    )
    assert not (data / "t.json").exists()


def test_downscale_checks_mask_sizes(capture: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = capture / "images-jpeg-1k"
    frames = read_transforms(data).frames
    width, height = imageio.image_size(data / frames[0].file_path)
    for index in range(len(frames)):
        size = (width + 1, height) if index == 1 else (width, height)
        imageio.write_image(data / f"masks/{index}.png", np.full(size[::-1], 255, np.uint8))

    def add_masks(tf: dict) -> None:
        for index, frame in enumerate(tf["frames"]):
            frame["mask_path"] = f"masks/{index}.png"

    _edit(data / "transforms.json", add_masks)
    assert main(["downscale", str(data), "--jobs", "1"]) == 1
    assert _error(capsys) == (
        f"error: {data / 'masks/1.png'}: mask is {width + 1}x{height} but its image "
        f"{frames[1].file_path} is {width}x{height}"
    )
    assert not list(data.glob("images_*")) and not list(data.glob("masks_*"))


def test_impossible_values_are_never_written(tmp_path: Path) -> None:
    from eyeful_tools.cameras import Camera, CameraModel, Frame, Scene
    from eyeful_tools.transforms import scene_to_transforms, write_transforms

    camera = Camera(model=CameraModel.OPENCV_FISHEYE, width_px=64, height_px=48, fx=40.0,
                    fy=40.0, cx=32.0, cy=24.0, fisheye_crop_radius_px=-3.0)  # fmt: skip
    frame = Frame(image_path="a.jpg", camera=camera, world_from_cam=np.eye(4))
    source = tmp_path / "source.json"
    with pytest.raises(InputFormatError) as caught:  # every importer's scene goes through here
        scene_to_transforms(Scene(frames=(frame,), name="unit"), source=source)
    assert caught.value.one_line() == (
        f"{source}: frame a.jpg: fisheye_crop_radius is -3 (must be a positive number of pixels)"
    )
    good = frame.with_(camera=Camera(**{**camera.__dict__, "fisheye_crop_radius_px": 30.0}))
    written = scene_to_transforms(Scene(frames=(good,), name="unit"))
    written.frames[0].transform_matrix[0][3] = 1e307
    target = tmp_path / "transforms.json"
    with pytest.raises(InputFormatError) as caught:
        write_transforms(target, written)
    assert caught.value.one_line() == (
        f"{target}: frame a.jpg: transform_matrix camera position 1e+307 is beyond 1e+07 "
        "(units of the file)"
    )
    assert not target.exists()
