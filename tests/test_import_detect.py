"""``eyeful import auto``: each capture is recognised by what it holds and imported as its own
command would import it."""

from __future__ import annotations

import shutil
from pathlib import Path

import ios_fixtures as fx
import numpy as np
import pytest

from eyeful_tools.cli import main
from eyeful_tools.errors import InputFormatError
from eyeful_tools.imageio import write_image
from eyeful_tools.import_detect import ImportFormat, detect_format

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
        record3d: ImportFormat.RECORD3D,
        r3d: ImportFormat.RECORD3D,
        polycam: ImportFormat.POLYCAM,
        polycam_zip: ImportFormat.POLYCAM,
        stray: ImportFormat.STRAY,
        stray_zip: ImportFormat.STRAY,
        app: ImportFormat.NERFCAPTURE,
        ngp: ImportFormat.NERFCAPTURE,
    }
    assert {path: detect_format(path) for path in expected} == expected


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
    assert detect_format(video) is ImportFormat.VIDEO
    assert detect_format(photos) is ImportFormat.IMAGES
    assert detect_format(tmp_path / "project") is ImportFormat.COLMAP
    assert detect_format(_converted(synth_v2, tmp_path)) is ImportFormat.NERFSTUDIO
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    exr = tmp_path / "hdr"  # photos SfM cannot read (it takes JPEG and PNG) are not photos here
    for i in range(3):
        write_image(exr / f"{i}.exr", np.ones((8, 8, 3), np.float32))
    for folder in ("notes", "hdr"):
        with pytest.raises(InputFormatError, match="cannot tell what captured this"):
            detect_format(tmp_path / folder)


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
