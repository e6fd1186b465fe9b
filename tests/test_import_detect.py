"""``eyeful import auto`` and the importer table: each capture is recognised by what it holds
and imported as its own command would import it; when nothing matches, every importer says why."""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import ios_fixtures as fx
import numpy as np
import pytest

from eyeful_tools import importers
from eyeful_tools.cameras import Frame, Scene
from eyeful_tools.cli import load_commands, main
from eyeful_tools.cli._app import import_app
from eyeful_tools.errors import InputFormatError, UsageError
from eyeful_tools.imageio import write_image
from eyeful_tools.importer import Detection, Option, Row, defaults
from eyeful_tools.importers import IMPORTERS, detect

N_VIEWS = 4


@pytest.fixture(scope="module")
def views() -> dict[str, list[fx.PhoneView]]:
    return {
        "record3d": fx.make_views(fx.RECORD3D_CAMERA, N_VIEWS, fx.DEPTH_SIZE_PX),
        "polycam": fx.make_views(fx.POLYCAM_CAMERA, N_VIEWS, fx.POLYCAM_DEPTH_SIZE_PX),
        "stray": fx.make_views(fx.STRAY_CAMERA, N_VIEWS, fx.STRAY_DEPTH_SIZE_PX),
        "nerfcapture": fx.make_views(fx.NERFCAPTURE_CAMERA, N_VIEWS, fx.NERFCAPTURE_DEPTH_SIZE_PX),
    }


def _converted(capture: Path, tmp_path: Path) -> Path:
    """A converted copy (the session's synthetic capture stays as generated)."""
    copy = tmp_path / "capture"
    shutil.copytree(capture, copy, ignore=shutil.ignore_patterns("images-2k", "images-jpeg-2k"))
    assert main(["convert", str(copy), "--resolution", "jpeg_1k"]) == 0
    return copy / "images-jpeg-1k"


def test_phone_exports_are_told_apart(tmp_path: Path, views) -> None:
    record3d = fx.write_record3d_folder(tmp_path / "r3d_folder", views["record3d"])
    r3d = fx.write_r3d(tmp_path / "scan.r3d", views["record3d"])
    polycam = fx.write_polycam_folder(tmp_path / "polycam", views["polycam"])
    polycam_zip = fx.zip_folder(polycam, tmp_path / "polycam.zip", top_folder="room")
    stray = fx.write_stray_folder(tmp_path / "stray", views["stray"])
    stray_zip = fx.zip_folder(stray, tmp_path / "stray.zip", top_folder="desk")
    app = fx.write_nerfcapture_folder(tmp_path / "nc_app", views["nerfcapture"], flavour="app")
    ngp = fx.write_nerfcapture_folder(tmp_path / "nc_ngp", views["nerfcapture"], flavour="ngp")
    expected = {
        record3d: "record3d",
        r3d: "record3d",
        polycam: "polycam",
        polycam_zip: "polycam",
        stray: "stray",
        stray_zip: "stray",
        app: "nerfcapture",
        ngp: "nerfcapture",
    }
    assert {path: detect(path).name for path in expected} == expected


def test_videos_photos_models_and_datasets(tmp_path: Path, synth_v2: Path) -> None:
    video = tmp_path / "walk.MOV"
    video.write_bytes(b"\x00" * 16)  # detection goes by the suffix; the importer decodes
    photos = tmp_path / "photos"
    for i in range(3):
        write_image(photos / f"IMG_{i}.jpg", np.zeros((8, 8, 3), np.uint8))
    model = tmp_path / "project" / "sparse" / "0"
    model.mkdir(parents=True)
    for name in ("cameras.txt", "images.txt", "points3D.txt"):
        (model / name).write_text("# empty\n")
    assert detect(video).name == "video"
    assert detect(photos).name == "images"
    assert detect(tmp_path / "project").name == "colmap"
    assert detect(_converted(synth_v2, tmp_path)).name == "nerfstudio"
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    exr = tmp_path / "hdr"  # photos SfM cannot read (it takes JPEG and PNG) are not photos here
    for i in range(3):
        write_image(exr / f"{i}.exr", np.ones((8, 8, 3), np.float32))
    for folder in ("notes", "hdr"):
        with pytest.raises(InputFormatError, match="cannot tell what captured this"):
            detect(tmp_path / folder)


def test_cli_auto_imports_like_the_named_command(tmp_path: Path, views, capsys) -> None:
    stray = fx.write_stray_folder(tmp_path / "stray", views["stray"])
    auto, named = tmp_path / "auto" / "desk", tmp_path / "named" / "desk"  # same capture name
    assert main(["import", "auto", str(stray), "--out", str(auto)]) == 0
    assert "import auto (stray):" in capsys.readouterr().err
    assert main(["import", "stray", str(stray), "--out", str(named)]) == 0
    assert (auto / "transforms.json").read_text() == (named / "transforms.json").read_text()
    for folder in ("images", "depth"):
        files = [sorted(p.name for p in (root / folder).iterdir()) for root in (auto, named)]
        assert files[0] == files[1] and files[0]


def test_cli_auto_refuses_what_it_cannot_import(tmp_path: Path, synth_v2: Path, capsys) -> None:
    model = tmp_path / "sparse" / "0"
    model.mkdir(parents=True)
    (model / "cameras.bin").write_bytes(b"")
    (model / "images.bin").write_bytes(b"")
    assert main(["import", "auto", str(tmp_path / "sparse"), "--out", str(tmp_path / "o")]) == 1
    assert "use 'eyeful import colmap" in capsys.readouterr().err
    data = _converted(synth_v2, tmp_path)
    capsys.readouterr()
    assert main(["import", "auto", str(data), "--out", str(tmp_path / "o")]) == 1
    assert "already a nerfstudio dataset" in capsys.readouterr().err
    assert main(["import", "auto", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 1
    assert not (tmp_path / "o").exists()


def test_cli_auto_keeps_a_non_empty_out_for_photos_too(tmp_path: Path, capsys) -> None:
    photos = tmp_path / "photos"
    for i in range(3):
        write_image(photos / f"IMG_{i}.jpg", np.zeros((8, 8, 3), np.uint8))
    out = tmp_path / "dataset"
    out.mkdir()
    (out / "transforms.json").write_text("{}")
    assert main(["import", "auto", str(photos), "--out", str(out)]) == 1
    assert (
        "output folder already holds transforms.json (pass --overwrite)" in capsys.readouterr().err
    )
    assert (out / "transforms.json").read_text() == "{}"


#: what ``import auto`` says of a folder of notes and one photo: every importer's reason
DECLINED = (
    "cannot tell what captured this ("
    "record3d: no metadata.json beside rgb/, nor an .r3d's metadata beside rgbd/; "
    "polycam: no keyframes/ folder; stray: no odometry.csv; nerfcapture: no transforms.json; "
    "nerfstudio: no transforms.json; "
    "colmap: no cameras, images and points3D (.bin or .txt) in one folder; "
    "video: not a video file (.mp4, .mov, .m4v, .avi, .mkv, .webm); "
    "images: 1 photos (.jpg, .jpeg, .png), fewer than 3)"
)


def test_cli_auto_says_why_each_importer_declined(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("hello")
    write_image(folder / "cover.jpg", np.zeros((8, 8, 3), np.uint8))
    assert main(["import", "auto", str(folder), "--out", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err == f"error: {folder}: {DECLINED}\n"
    assert not (tmp_path / "o").exists()


def test_a_file_that_is_no_archive_is_declined_by_every_importer(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(InputFormatError) as caught:
        detect(notes)
    reasons = caught.value.reason.removeprefix("cannot tell what captured this (").split("; ")
    assert [r.split(":")[0] for r in reasons] == [i.name for i in IMPORTERS]
    assert reasons[:6] == [f"{i.name}: not a folder or a zip archive" for i in IMPORTERS[:6]]
    assert "\n" not in caught.value.reason


def test_import_commands_are_made_from_the_table() -> None:
    load_commands(["importers"])
    commands = {info.name: info.callback for info in import_app.registered_commands}
    runnable = [importer for importer in IMPORTERS if importer.runs]
    assert list(commands) == [importer.name for importer in runnable] + ["auto"]
    for importer in runnable:
        parameters = inspect.signature(commands[importer.name]).parameters
        assert list(parameters) == [importer.source_name, *(o.name for o in importer.options)]
        flags = [parameters[o.name].default.param_decls[0] for o in importer.options]
        assert flags == [o.flags for o in importer.options]


def test_auto_walks_the_table(tmp_path: Path, monkeypatch, capsys) -> None:
    """A new format is one row: auto detects it, runs it and reports its reason."""
    seen: list[tuple[Path, dict]] = []

    def run(source: Path, values, progress) -> str:
        seen.append((source, dict(values)))
        return "1 frame"

    row = Row(
        "notes",
        "Import notes.",
        "A folder of notes.",
        (Option("out", "--out", Path, ..., "Out."), Option("tidy", "--tidy", bool, True, "Tidy.")),
        lambda probe: Detection(probe.path.name == "notes", "not called notes"),
        run,
        progress="none",
    )
    monkeypatch.setattr(importers, "IMPORTERS", (row,))
    notes, other = tmp_path / "notes", tmp_path / "other"
    notes.mkdir()
    other.mkdir()
    assert main(["import", "auto", str(notes), "--out", str(tmp_path / "o")]) == 0
    assert capsys.readouterr().err == "import auto (notes): 1 frame\n"
    assert seen == [(notes, {"out": tmp_path / "o", "tidy": True})]
    assert main(["import", "auto", str(other), "--out", str(tmp_path / "o")]) == 1
    expected = f"error: {other}: cannot tell what captured this (notes: not called notes)\n"
    assert capsys.readouterr().err == expected


def test_phone_importers_read_into_the_canonical_scene(tmp_path: Path, views) -> None:
    """Every importer with poses of its own reads into a cameras.Scene of cameras.Frame (no
    second frame type): cameras for the stored images, the depth map and its encoding in the
    frame's extras; SfM and the refusals have nothing to read without running."""
    exports = {
        "record3d": fx.write_r3d(tmp_path / "scan.r3d", views["record3d"]),
        "polycam": fx.write_polycam_folder(tmp_path / "polycam", views["polycam"]),
        "stray": fx.write_stray_folder(tmp_path / "stray", views["stray"]),
        "nerfcapture": fx.write_nerfcapture_folder(
            tmp_path / "nc", views["nerfcapture"], flavour="ngp"
        ),
    }
    by_name = {importer.name: importer for importer in IMPORTERS}
    assert {name for name, importer in by_name.items() if importer.reads} == set(exports)
    for name, path in exports.items():
        importer = by_name[name]
        export = importer.read(path, {**defaults(importer), "out": tmp_path / "unused"})
        try:
            assert isinstance(export.scene, Scene) and len(export.scene.frames) == N_VIEWS
            for frame, view in zip(export.scene.frames, views[name], strict=True):
                assert type(frame) is Frame and frame.depth_path is not None
                assert frame.extras["depth_kind"] and frame.extras["name"]
                assert frame.camera.width_px > 0 and frame.camera.fx > 0
                assert np.allclose(frame.world_from_cam[:3, 3], view.world_from_cam[:3, 3])
        finally:
            export.source.close()
    assert not (tmp_path / "unused").exists()
    with pytest.raises(UsageError, match="no poses to read"):
        by_name["images"].read(tmp_path, {})
