"""Fuzzing every reader (#15): any mutation of a valid input ends in a valid result or an
:class:`~eyeful_tools.errors.EyefulError` (which the CLI prints as one line), never another
exception (which the CLI prints as a traceback).

Each reader gets a small valid input and two kinds of mutation: structured ones (a JSON value,
an XML element or attribute, a CSV cell replaced by something odd: huge or non-finite numbers,
wrong types, deletions, duplicates) and raw byte ones (flips, insertions, cuts). Hypothesis runs
derandomized with no example database, so CI sees the same examples every run; example counts
are bounded so the whole file takes about a minute on two cores. A failure prints the input that
broke the reader; fix the reader, not the test, and pin the input down in a plain test at the end
of this file. Longer hunts: ``EYEFUL_FUZZ_SCALE=20`` (twenty times the examples),
``EYEFUL_FUZZ_RANDOM=1`` (different examples every run).
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ios_fixtures as fx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from test_convert_metashape import make_xml

from eyeful_tools import cameras
from eyeful_tools.cameras import Camera, CameraModel, Frame, Scene, WorldUp
from eyeful_tools.colmap_io.load import read_reconstruction, reconstruction_to_scene
from eyeful_tools.errors import EyefulError
from eyeful_tools.imageio import image_size, write_image
from eyeful_tools.readers.krt import read_krt
from eyeful_tools.readers.metashape import parse_metashape
from eyeful_tools.readers.nerfcapture import read_nerfcapture
from eyeful_tools.readers.polycam import import_polycam, read_polycam
from eyeful_tools.readers.record3d import import_record3d, read_record3d
from eyeful_tools.readers.stray import read_stray
from eyeful_tools.split import read_splits
from eyeful_tools.transforms import read_transforms, scene_to_transforms, transforms_to_scene

FUZZ = settings(
    # EYEFUL_FUZZ_RANDOM=1: new examples every run (a hunt); CI always sees the same ones
    derandomize=not os.environ.get("EYEFUL_FUZZ_RANDOM"),
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


#: ``EYEFUL_FUZZ_SCALE=20 pytest tests/test_fuzz.py`` runs twenty times the examples (a longer
#: local hunt; CI runs the bounded counts)
SCALE = float(os.environ.get("EYEFUL_FUZZ_SCALE", "1"))


def examples(count: int) -> settings:
    return settings(FUZZ, max_examples=max(1, round(count * SCALE)))


def must_not_crash(read: Callable[[], Any]) -> None:
    """The property: a result, or an EyefulError with a non-empty one-line message."""
    try:
        read()
    except EyefulError as error:
        assert error.one_line().strip() and "\n" not in error.reason, repr(error.one_line())


# ---------------------------------------------------------------------------------------------
# Mutations.

ODD_NUMBERS = st.sampled_from(
    [0, -1, 1.5, 1e308, -1e308, 1e-320, math.inf, -math.inf, math.nan, 2**63, -(2**63), 10**40]
)
ODD_TEXT = st.sampled_from(
    ["", " ", "nan", "inf", "-0", "1e308", "1e999", "0x10", "1" * 5000, "../x", "\x00", "é"]
)
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    ODD_NUMBERS,
    ODD_TEXT,
    st.text(max_size=12),
)
JSON_VALUES = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _slots(node: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key) of a JSON tree, depth first."""
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, child in items:
        out.append((node, key))
        _slots(child, out)
    return out


@st.composite
def mutated_json(draw: st.DrawFn, base: Any) -> Any:
    """``base`` with one to three values replaced, deleted, nested or duplicated."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(doc, [])
        if not slots or draw(st.integers(0, 30)) == 0:
            return draw(JSON_VALUES)  # the whole document replaced
        container, key = draw(st.sampled_from(slots))
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "wrap", "copy"]))
        if action == "replace":
            container[key] = draw(JSON_VALUES)
        elif action == "delete":
            del container[key]
        elif action == "wrap":
            container[key] = [container[key]]
        elif isinstance(container, list):
            container.append(copy.deepcopy(container[key]))
        else:
            container[draw(st.text(max_size=6))] = copy.deepcopy(container[key])
    return doc


@st.composite
def mutated_bytes(draw: st.DrawFn, base: bytes, head: int | None = None) -> bytes:
    """``base`` with a few bytes flipped, inserted or cut (in the first ``head`` bytes only,
    when given), or truncated."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "flip", "insert", "cut", "truncate"]))
        limit = min(len(data), head) if head else len(data)
        at = draw(st.integers(0, max(limit - 1, 0)))
        if action == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif action == "cut":
            del data[at : at + draw(st.integers(1, 16))]
        else:
            del data[at:]
    return bytes(data)


@st.composite
def damaged_archive(draw: st.DrawFn, archive: Path) -> bytes:
    """A zip with a few bytes flipped inside one member's packed data (a CRC error, corrupt
    deflate data), or, one time in four, a raw byte mutation anywhere (the directory too)."""
    data = archive.read_bytes()
    if draw(st.integers(0, 3)) == 0:
        return draw(mutated_bytes(data))
    with zipfile.ZipFile(archive) as handle:
        info = draw(st.sampled_from([i for i in handle.infolist() if i.compress_size > 0]))
    start = fx.member_data_start(data, info)
    damaged = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        at = start + draw(st.integers(0, info.compress_size - 1))
        damaged[at] = draw(st.integers(0, 255))
    return bytes(damaged)


def json_inputs(base: Any) -> st.SearchStrategy[bytes]:
    text = json.dumps(base).encode()
    structured = mutated_json(base).map(lambda doc: json.dumps(doc).encode())
    return st.one_of(structured, structured, mutated_bytes(text))


# ---------------------------------------------------------------------------------------------
# EyefulTower cameras.json, Metashape cameras.xml, transforms.json, splits.json


def _krt_base() -> dict:
    entries = []
    for index, cam in enumerate(("10", "11")):
        cam_from_world = np.eye(4)
        cam_from_world[:3, 3] = [0.1 * index, 0.2, 0.3]
        entries.append(
            {
                "cameraId": f"{cam}/{cam}_DSC0001",
                "width": 776,
                "height": 1164,
                "K": [[400.0, 0, 0], [0, 400.0, 0], [390.0, 580.0, 1.0]],
                "T": cam_from_world.T.tolist(),
                "distortionModel": "RadialAndTangential",
                "distortion": [-0.1, 0.05, 0.001, -0.0007, -0.01],
                "frameId": 0,
                "sensorId": int(cam),
            }
        )
    return {"KRT": entries}


@examples(150)
@given(data=json_inputs(_krt_base()))
def test_krt(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "cameras.json"
    path.write_bytes(data)
    must_not_crash(lambda: read_krt(path))


XML_TEXT = ["", "nan", "inf", "1e308", "-1e308", "1.7e308", "0", "-1", "abc", "1 2 3", "1" * 400]
XML_CHARACTERS = st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"])
XML_ATTRIBUTES = ["id", "sensor_id", "master_id", "component_id", "label", "enabled", "type"]


@st.composite
def mutated_xml(draw: st.DrawFn, base: str) -> bytes:
    root = etree.fromstring(base.encode())
    elements = list(root.iter())
    for _ in range(draw(st.integers(1, 3))):
        element = draw(st.sampled_from(elements))
        action = draw(st.sampled_from(["text", "text", "attribute", "remove", "duplicate"]))
        if action == "text":
            element.text = draw(st.sampled_from(XML_TEXT) | st.text(XML_CHARACTERS, max_size=10))
        elif action == "attribute":
            value = draw(st.sampled_from(["0", "1", "99", "-1", "", "x", "false"]))
            element.set(draw(st.sampled_from(XML_ATTRIBUTES)), value)
        elif element.getparent() is not None:
            if action == "remove":
                element.getparent().remove(element)
            else:
                element.getparent().append(copy.deepcopy(element))
            elements = list(root.iter())
    return etree.tostring(root)


XML_BASE = make_xml(positions=2)


@examples(150)
@given(data=st.one_of(mutated_xml(XML_BASE), mutated_bytes(XML_BASE.encode())))
def test_metashape(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "cameras.xml"
    path.write_bytes(data)
    must_not_crash(lambda: parse_metashape(path))


def _transforms_base() -> dict:
    camera = Camera(model=CameraModel.OPENCV, width_px=64, height_px=48, fx=50, fy=50, cx=32, cy=24)
    frames = tuple(
        Frame(image_path=f"images/{i}.jpg", camera=camera, world_from_cam=pose)
        for i, pose in enumerate(fx.phone_poses(2))
    )
    tf = scene_to_transforms(Scene(frames=frames, world_up=WorldUp.Y_UP, name="fuzz"))
    tf.train_filenames, tf.val_filenames = ["images/0.jpg"], ["images/1.jpg"]
    return json.loads(tf.model_dump_json(exclude_none=True))


@examples(150)
@given(data=json_inputs(_transforms_base()))
def test_transforms(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "transforms.json"
    path.write_bytes(data)
    must_not_crash(lambda: transforms_to_scene(read_transforms(path), path))


@examples(80)
@given(data=json_inputs({"train": ["10/10_DSC0001"], "test": ["17/17_DSC0001"]}))
def test_splits(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "splits.json"
    path.write_bytes(data)
    must_not_crash(lambda: read_splits(path))


# ---------------------------------------------------------------------------------------------
# Phone exports. Each is built once; an example overwrites one file of a private copy.


@pytest.fixture(scope="module")
def views() -> list[fx.PhoneView]:
    return fx.make_views(fx.RECORD3D_CAMERA, 3, fx.DEPTH_SIZE_PX)


@pytest.fixture(scope="module")
def landscape_views() -> list[fx.PhoneView]:
    return fx.make_views(fx.POLYCAM_CAMERA, 3, fx.POLYCAM_DEPTH_SIZE_PX)


@pytest.fixture(scope="module")
def exports(
    tmp_path_factory: pytest.TempPathFactory, views: list, landscape_views: list
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz")
    return {
        "record3d": fx.write_record3d_folder(root / "r3d", views, per_frame=True),
        "r3d": fx.write_r3d(root / "scan.r3d", views),
        "polycam": fx.write_polycam_folder(root / "pc", landscape_views),
        "stray": fx.write_stray_folder(root / "stray", landscape_views),
        "nerfcapture": fx.write_nerfcapture_folder(root / "nc", landscape_views, flavour="ngp"),
    }


def _copy(source: Path, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    return shutil.copytree(source, target)


def _read_with_member(
    export: Path, tmp_path: Path, member: str, data: bytes, read: Callable[[Path], Any]
) -> None:
    """A private copy of ``export`` with ``member`` replaced by ``data``, parsed by ``read``."""
    folder = _copy(export, tmp_path / export.name)
    (folder / member).write_bytes(data)
    must_not_crash(lambda: read(folder).source.close())


RECORD3D_META = fx.record3d_metadata(fx.make_views(fx.RECORD3D_CAMERA, 3, (4, 4)), True)


@examples(120)
@given(data=json_inputs(RECORD3D_META))
def test_record3d_metadata(tmp_path: Path, exports: dict[str, Path], data: bytes) -> None:
    _read_with_member(exports["record3d"], tmp_path, "metadata.json", data, read_record3d)


@examples(30)
@given(data=st.data())
def test_r3d_archive_import(tmp_path: Path, exports: dict[str, Path], data: st.DataObject) -> None:
    damaged = tmp_path / "scan.r3d"
    damaged.write_bytes(data.draw(damaged_archive(exports["r3d"])))
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
    must_not_crash(lambda: import_record3d(damaged, tmp_path / "out"))


POLYCAM_CAMERA = fx.polycam_camera_json(
    fx.PhoneView(fx.phone_poses(1)[0], fx.POLYCAM_CAMERA, b"", np.zeros((1, 1))), 30.0
)


@examples(120)
@given(data=json_inputs(POLYCAM_CAMERA))
def test_polycam_camera(tmp_path: Path, exports: dict[str, Path], data: bytes) -> None:
    member = f"keyframes/corrected_cameras/{fx.polycam_timestamps(1)[0]}.json"
    _read_with_member(exports["polycam"], tmp_path, member, data, read_polycam)


@pytest.fixture(scope="module")
def polycam_zip(exports: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    archive = tmp_path_factory.mktemp("fuzz-zip") / "pc.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        for path in sorted(exports["polycam"].rglob("*")):
            if path.is_file():
                handle.write(path, path.relative_to(exports["polycam"]).as_posix())
    return archive


@examples(30)
@given(data=st.data())
def test_polycam_zip_import(tmp_path: Path, polycam_zip: Path, data: st.DataObject) -> None:
    damaged = tmp_path / "pc.zip"
    damaged.write_bytes(data.draw(damaged_archive(polycam_zip)))
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
    must_not_crash(lambda: import_polycam(damaged, tmp_path / "out"))


@st.composite
def mutated_csv(draw: st.DrawFn, text: str) -> bytes:
    """A CSV with cells replaced (odd numbers, text), rows dropped or repeated."""
    rows = [line.split(",") for line in text.splitlines()]
    for _ in range(draw(st.integers(1, 3))):
        row = draw(st.integers(0, len(rows) - 1))
        action = draw(st.sampled_from(["cell", "cell", "drop", "repeat", "short"]))
        if action == "cell" and rows[row]:
            column = draw(st.integers(0, len(rows[row]) - 1))
            rows[row][column] = draw(ODD_TEXT | ODD_NUMBERS.map(str) | st.text(max_size=6))
        elif action == "drop" and len(rows) > 1:
            del rows[row]
        elif action == "repeat":
            rows.insert(row, list(rows[row]))
        else:
            rows[row] = rows[row][: draw(st.integers(0, len(rows[row])))]
    return "\n".join(",".join(cells) for cells in rows).encode()


STRAY_TEXT = {
    "odometry.csv": "\n".join(
        [fx.STRAY_ODOMETRY_HEADER]
        + [fx.stray_odometry_line(i, fx.PhoneView(p, fx.STRAY_CAMERA, b"", np.zeros((1, 1))))
           for i, p in enumerate(fx.phone_poses(3))]
    ),
    "camera_matrix.csv": "\n".join(
        ", ".join(str(v) for v in row) for row in fx.STRAY_CAMERA.intrinsic_matrix().tolist()
    ),
}  # fmt: skip


@examples(120)
@given(
    name=st.sampled_from(sorted(STRAY_TEXT)),
    data=st.data(),
)
def test_stray_csv(
    tmp_path: Path, exports: dict[str, Path], name: str, data: st.DataObject
) -> None:
    text = STRAY_TEXT[name]
    mutated = data.draw(st.one_of(mutated_csv(text), mutated_bytes(text.encode())))
    _read_with_member(exports["stray"], tmp_path, name, mutated, read_stray)


NERFCAPTURE_BASE = {
    "w": 64,
    "h": 48,
    "fl_x": 51.0,
    "fl_y": 51.3,
    "cx": 32.4,
    "cy": 23.8,
    "integer_depth_scale": 10.0 / 65535,
    "frames": [
        {
            "file_path": f"images/{i}",
            "depth_path": f"images/{i}.depth.png",
            "transform_matrix": cameras.opengl_from_opencv_pose(pose).tolist(),
        }
        for i, pose in enumerate(fx.phone_poses(3))
    ],
}


@examples(120)
@given(data=json_inputs(NERFCAPTURE_BASE))
def test_nerfcapture(tmp_path: Path, exports: dict[str, Path], data: bytes) -> None:
    _read_with_member(exports["nerfcapture"], tmp_path, "transforms.json", data, read_nerfcapture)


# ---------------------------------------------------------------------------------------------
# COLMAP text models, image headers

COLMAP_CAMERAS = "1 PINHOLE 64 48 50 50 32 24\n2 OPENCV 64 48 50 51 31 23 0.01 -0.002 0.001 0.0\n"
COLMAP_IMAGES = (
    "1 1 0 0 0 0.1 0.2 0.3 1 a.jpg\n\n2 0.7071 0 0.7071 0 0.1 0.2 0.3 2 b.jpg\n\n"
    "3 0.5 0.5 0.5 0.5 1 2 3 1 c/d.jpg\n\n"
)


@examples(150)
@given(
    name=st.sampled_from(["cameras.txt", "images.txt"]),
    data=st.data(),
)
def test_colmap_text_model(tmp_path: Path, name: str, data: st.DataObject) -> None:
    texts = {"cameras.txt": COLMAP_CAMERAS, "images.txt": COLMAP_IMAGES, "points3D.txt": ""}
    line_text = texts[name].replace(" ", ",")  # cells for mutated_csv
    mutated = data.draw(
        st.one_of(
            mutated_csv(line_text).map(lambda b: b.replace(b",", b" ")),
            mutated_bytes(texts[name].encode()),
        )
    )
    model = tmp_path / "sparse"
    shutil.rmtree(model, ignore_errors=True)
    model.mkdir()
    for file_name, text in texts.items():
        (model / file_name).write_bytes(mutated if file_name == name else text.encode())

    def read() -> None:
        reconstruction, model_dir = read_reconstruction(model)
        reconstruction_to_scene(reconstruction, where=model_dir)

    must_not_crash(read)


@pytest.fixture(scope="module")
def colmap_binary(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A binary model (cameras, images with a 2D point, a 3D point with its track, and the
    rigs and frames pycolmap adds), written by pycolmap from a text one."""
    import pycolmap

    text = tmp_path_factory.mktemp("colmap-text")
    (text / "cameras.txt").write_text(COLMAP_CAMERAS)
    (text / "images.txt").write_text(COLMAP_IMAGES.replace("a.jpg\n\n", "a.jpg\n10 20 1\n", 1))
    (text / "points3D.txt").write_text("1 0.1 0.2 0.3 10 20 30 0.5 1 0\n")
    binary = tmp_path_factory.mktemp("colmap-binary")
    pycolmap.Reconstruction(str(text)).write_binary(str(binary))
    return {path.name: path.read_bytes() for path in sorted(binary.iterdir())}


@examples(150)
@given(data=st.data())
def test_colmap_binary_model(
    tmp_path: Path, colmap_binary: dict[str, bytes], data: st.DataObject
) -> None:
    """pycolmap trusts the counts in binary files (a points3D.bin cut to one byte made it loop
    for minutes): any mutation of one file is a model or one error, quickly."""
    name = data.draw(st.sampled_from(sorted(colmap_binary)))
    mutated = data.draw(mutated_bytes(colmap_binary[name]))
    model = tmp_path / "sparse"
    shutil.rmtree(model, ignore_errors=True)
    model.mkdir()
    for file_name, content in colmap_binary.items():
        (model / file_name).write_bytes(mutated if file_name == name else content)

    def read() -> None:
        reconstruction, model_dir = read_reconstruction(model)
        reconstruction_to_scene(reconstruction, where=model_dir)

    must_not_crash(read)


def test_a_binary_model_cut_short_is_refused_before_pycolmap(
    tmp_path: Path, colmap_binary: dict[str, bytes]
) -> None:
    """Pinned: these made pycolmap's reader spin (the fuzz test above would time out)."""
    for name, cut in (("points3D.bin", 1), ("frames.bin", 100), ("images.bin", 30)):
        model = tmp_path / name
        model.mkdir()
        for file_name, content in colmap_binary.items():
            (model / file_name).write_bytes(content[:cut] if file_name == name else content)
        with pytest.raises(EyefulError, match=f"{name}: malformed COLMAP binary file"):
            read_reconstruction(model)
    whole, model_dir = read_reconstruction(_write_all(tmp_path / "whole", colmap_binary))
    assert whole.num_points3D() == 1 and whole.num_reg_images() == 3


def _write_all(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


@pytest.fixture(scope="module")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz-images")
    pixels = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    files = {}
    for suffix, image in (
        (".jpg", pixels),
        (".png", pixels),
        (".exr", pixels.astype(np.float32) / 255),
    ):
        write_image(root / f"image{suffix}", image)
        files[suffix] = root / f"image{suffix}"
    return files


@examples(200)
@given(suffix=st.sampled_from([".jpg", ".png", ".exr"]), data=st.data())
def test_image_headers(
    tmp_path: Path, image_files: dict[str, Path], suffix: str, data: st.DataObject
) -> None:
    mutated = data.draw(mutated_bytes(image_files[suffix].read_bytes(), head=64))
    path = tmp_path / f"image{suffix}"
    path.write_bytes(mutated)
    must_not_crash(lambda: image_size(path))


# ---------------------------------------------------------------------------------------------
# What the fuzzer found, pinned down (each was a traceback before its fix).


def test_xml_with_bytes_invalid_in_its_encoding_is_one_line(tmp_path: Path) -> None:
    """lxml reported these as OSError when reading a file, not as a syntax error."""
    path = tmp_path / "cameras.xml"
    path.write_bytes(XML_BASE.encode().replace(b"<?xml ", b"<?xml \x80", 1))
    with pytest.raises(EyefulError, match=r"malformed XML at line 1"):
        parse_metashape(path)
    path.write_bytes(XML_BASE.encode().replace(b"cam0_0000", b"cam0_\xff\xfe", 1))
    with pytest.raises(EyefulError, match=r"malformed XML at line \d+: Invalid bytes"):
        parse_metashape(path)


@pytest.mark.parametrize(
    ("cameras_txt", "images_txt", "message"),
    [
        # pycolmap keeps the size unsigned (2**64 - 64) or, without the blank line after the
        # image, skips the camera and fails on first use of the image
        ("1 PINHOLE -64 48 50 50 32 24\n", "1 1 0 0 0 0 0 0 1 a.jpg\n\n", "is not a size"),
        ("1 PINHOLE -64 48 50 50 32 24\n", "1 1 0 0 0 0 0 0 1 a.jpg\n", "cannot read the model"),
        # an image name that is not UTF-8 failed when read
        (COLMAP_CAMERAS, "1 1 0 0 0 0 0 0 1 \x80.jpg\n\n", "cannot read the model"),
    ],
    ids=["negative-width", "negative-width-skipped", "name-not-utf8"],
)
def test_broken_colmap_models_are_refused_when_read(
    tmp_path: Path, cameras_txt: str, images_txt: str, message: str
) -> None:
    model = tmp_path / "sparse"
    model.mkdir()
    (model / "cameras.txt").write_text(cameras_txt)
    (model / "images.txt").write_bytes(images_txt.encode("latin-1"))
    (model / "points3D.txt").write_text("")
    with pytest.raises(EyefulError, match=message):
        reconstruction, model_dir = read_reconstruction(model)
        reconstruction_to_scene(reconstruction, where=model_dir)


@pytest.mark.parametrize("cut", ["png-signature-only", "jpeg-inside-sof"])
def test_image_headers_cut_short_are_one_line(
    tmp_path: Path, image_files: dict[str, Path], cut: str
) -> None:
    if cut == "png-signature-only":
        data, path = b"\x89PNG", tmp_path / "image.png"
    else:
        jpeg = image_files[".jpg"].read_bytes()
        data, path = jpeg[: jpeg.index(b"\xff\xc0") + 6], tmp_path / "image.jpg"
    path.write_bytes(data)
    with pytest.raises(EyefulError, match="ends inside its header"):
        image_size(path)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("dw", [192], "dw/dh must be integers"), ("w", math.inf, "w/h must be integers")],
)
def test_record3d_sizes_that_are_not_integers(
    tmp_path: Path, exports: dict[str, Path], key: str, value: Any, message: str
) -> None:
    folder = _copy(exports["record3d"], tmp_path / "r3d")
    meta = json.loads((folder / "metadata.json").read_text())
    meta[key] = value
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(EyefulError, match=message):
        read_record3d(folder)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("\r, 0.0, 31.7\n0.0, 52.4, 24.6\n0.0, 0.0, 1.0", "expected 3 rows of 3"),  # csv.Error
        ('"52.0, 0.0, 31.7\n0.0, 52.4, 24.6\n0.0, 0.0, 1.0', "expected 3 rows of 3"),
    ],
    ids=["bare-carriage-return", "unclosed-quote"],
)
def test_stray_camera_matrix_with_odd_line_ends(
    tmp_path: Path, exports: dict[str, Path], text: str, message: str
) -> None:
    folder = _copy(exports["stray"], tmp_path / "stray")
    (folder / "camera_matrix.csv").write_text(text, newline="")
    with pytest.raises(EyefulError, match=message):
        read_stray(folder)
