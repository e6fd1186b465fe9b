"""``eyeful split`` and :mod:`eyeful_tools.split`: official splits, hold-out rules, subsets.

Runs on the synthetic v2 capture converted once per module (cameras 10..17, held-out 17).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from helpers import ground_truth, random_pose

from eyeful_tools import catalog, split
from eyeful_tools.cameras import Camera, CameraModel, Frame, Scene, WorldUp
from eyeful_tools.cli import main
from eyeful_tools.convert import convert_capture
from eyeful_tools.errors import InputFormatError, SplitError, UsageError
from eyeful_tools.transforms import read_transforms, scene_to_transforms, write_transforms

CAMERA = Camera(model=CameraModel.OPENCV, width_px=8, height_px=6, fx=5, fy=5, cx=4, cy=3)


@pytest.fixture(scope="module")
def converted(synth_v2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A converted copy of the synthetic capture (read-only for tests; copy to modify)."""
    capture = tmp_path_factory.mktemp("split") / "synth-v2"
    shutil.copytree(synth_v2, capture)
    convert_capture(capture, resolutions=["jpeg_1k"])
    return capture


@pytest.fixture()
def folder(converted: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the converted capture; returns its jpeg_1k folder."""
    capture = tmp_path / "synth-v2"
    shutil.copytree(converted, capture, ignore=shutil.ignore_patterns("images-2k", "*-2k"))
    return capture / "images-jpeg-1k"


def _truth(capture: Path) -> dict:
    return ground_truth(capture)


def _cameras(files: Iterable[str]) -> Counter:
    return Counter(name.split("/")[0] for name in files)


def test_official_split_puts_held_out_camera_in_val_and_test(converted: Path) -> None:
    truth = _truth(converted)
    tf = read_transforms(converted / "images-jpeg-1k" / "transforms.json")
    splits = split.read_splits(converted / "splits.json")
    result, rule = split.official_split(tf, splits)
    held = truth["holdout_camera"]
    positions = truth["positions"]
    assert _cameras(result.val_filenames) == {held: positions}
    assert result.test_filenames == result.val_filenames
    assert len(result.train_filenames) == len(tf.frames) - positions
    assert held not in _cameras(result.train_filenames)
    assert f"official splits.json (held-out camera {held})" in rule
    assert result.applied_transform == tf.applied_transform  # untouched keys survive
    assert result.frames[0].eyeful == tf.frames[0].eyeful


def test_holdout_rules_without_a_splits_file(converted: Path) -> None:
    tf = read_transforms(converted / "images-jpeg-1k" / "transforms.json")
    by_catalog, rule = split.official_split(tf, None, rig=catalog.RIG_V2)
    assert set(_cameras(by_catalog.val_filenames)) == {"17"} and "rig v2" in rule
    chosen, rule = split.official_split(tf, None, holdout_cameras=["11", "14"])
    assert set(_cameras(chosen.val_filenames)) == {"11", "14"} and "as requested" in rule
    # the synthetic capture is no catalog capture, whatever its camera folders are called:
    # nerfstudio's every-8th rule, said out loud
    assert split.catalog_rig(tf) is None
    every8, rule = split.official_split(tf, None)
    names = sorted(f.file_path for f in tf.frames)
    assert sorted(every8.val_filenames) == names[::8] and "every 8th image" in rule
    with pytest.raises(SplitError, match=r"unknown camera id\(s\) 99; cameras are 10, 11, "):
        split.official_split(tf, None, holdout_cameras=["99"])
    with pytest.raises(UsageError, match="either a splits file or --holdout-camera"):
        split.official_split(tf, {"train": [], "test": []}, holdout_cameras=["11"])


def test_subsample_by_image_is_nerfstudios_even_pick(converted: Path) -> None:
    tf, _ = split.official_split(
        read_transforms(converted / "images-jpeg-1k" / "transforms.json"), None, rig=catalog.RIG_V2
    )
    subset = split.subsample(tf, 10)
    indices = np.round(np.linspace(0, len(tf.frames) - 1, 10)).astype(int)
    assert [f.file_path for f in subset.frames] == [tf.frames[i].file_path for i in indices]
    kept = {f.file_path for f in subset.frames}
    assert set(subset.train_filenames) == kept & set(tf.train_filenames)
    assert subset.val_filenames and set(subset.val_filenames) <= kept
    half = split.subsample(tf, "half")
    assert len(half.frames) == len(tf.frames) // 2


def test_subsample_by_position_keeps_whole_positions(converted: Path) -> None:
    truth = _truth(converted)
    tf, _ = split.official_split(
        read_transforms(converted / "images-jpeg-1k" / "transforms.json"), None, rig=catalog.RIG_V2
    )
    cameras_per_position = len(truth["camera_ids"])
    subset = split.subsample(tf, 2 * cameras_per_position, by="position")
    positions = Counter(f.eyeful.rig_position_id for f in subset.frames)
    assert len(positions) == 2 and set(positions.values()) == {cameras_per_position}
    assert _cameras(subset.val_filenames) == {truth["holdout_camera"]: 2}
    random_a = split.subsample(tf, 2 * cameras_per_position, by="position", seed=3)
    random_b = split.subsample(tf, 2 * cameras_per_position, by="position", seed=3)
    assert [f.file_path for f in random_a.frames] == [f.file_path for f in random_b.frames]


def test_held_out_camera_is_never_emptied(converted: Path) -> None:
    tf, _ = split.official_split(
        read_transforms(converted / "images-jpeg-1k" / "transforms.json"), None, ["12"]
    )
    tiny = split.subsample(tf, 2)  # evenly spaced: first and last frame, cameras 10 and 17
    assert _cameras(f.file_path for f in tiny.frames)["12"] == 1  # one held-out frame added
    assert _cameras(tiny.val_filenames) == {"12": 1} and tiny.test_filenames == tiny.val_filenames
    assert len(tiny.train_filenames) == 2


def test_cli_writes_position_subset_with_official_split(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["split", str(folder / "transforms.json"), "--subsample", "16", "--by", "position"])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 0, err
    out = folder / "transforms_16_by_position.json"
    assert f"wrote {out}: 16 frames, train 14, val/test 2" in err
    assert "official splits.json (held-out camera 17)" in err  # found one folder up
    assert len(read_transforms(out).frames) == 16


def test_cli_errors_missing_files_and_unknown_camera(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = sorted(folder.glob("1*/*.jpg"))[0]
    victim.unlink()
    before = (folder / "transforms.json").read_bytes()
    assert main(["split", str(folder / "transforms.json"), "--holdout-camera", "12"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {folder / 'transforms.json'}: 1 listed files are missing: ")
    assert victim.relative_to(folder).as_posix() in err
    assert (folder / "transforms.json").read_bytes() == before  # nothing written
    assert main(["split", str(folder), "--holdout-camera", "99"]) == 1
    assert "unknown camera id(s) 99" in capsys.readouterr().err
    assert main(["split", str(folder), "--subsample", "zero"]) == 1
    assert "--subsample must be a positive integer or 'half'" in capsys.readouterr().err
    splits = folder.parent / "splits.json"
    assert main(["split", str(folder), "--splits", str(splits), "--holdout-camera", "12"]) == 1
    assert "not both" in capsys.readouterr().err  # not one of them silently ignored


def test_cli_in_place_with_holdout_camera(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["split", str(folder), "--holdout-camera", "12", "--holdout-camera", "15"]) == 0
    tf = read_transforms(folder / "transforms.json")
    assert set(_cameras(tf.val_filenames)) == {"12", "15"} == set(_cameras(tf.test_filenames))
    assert tf.eyeful["split"].startswith("held-out camera(s) 12, 15")
    capsys.readouterr()


def test_read_splits_validates_with_the_schema_model(tmp_path: Path) -> None:
    """splits.json is read through the same model its schema comes from: ``val`` is known,
    a bad entry is named."""
    path = tmp_path / "splits.json"
    path.write_text('{"train": ["10/10_DSC0001"], "val": ["17/17_DSC0001"]}')
    assert split.read_splits(path) == {
        "train": ["10/10_DSC0001"],
        "test": [],
        "val": ["17/17_DSC0001"],
    }
    path.write_text('{"train": ["10/10_DSC0001", 7]}')
    with pytest.raises(InputFormatError, match=r"splits.json: field train\.1: "):
        split.read_splits(path)


@pytest.mark.parametrize("source", ["stale-lists", "splits-json"])
def test_empty_val_and_test_are_refused_unless_asked_for(
    folder: Path, capsys: pytest.CaptureFixture[str], source: str
) -> None:
    """#15: val/test lists kept from the file that name none of its frames were written empty,
    exit 0. Now one line, exit 1, nothing written; ``--allow-empty-eval`` writes them."""
    path = folder / "transforms.json"
    data = json.loads(path.read_text())
    (folder.parent / "splits.json").unlink()
    if source == "stale-lists":
        data["val_filenames"] = data["test_filenames"] = ["images/gone.jpg"]
    else:
        (folder / "splits.json").write_text(json.dumps({"train": [], "test": []}))
    path.write_text(json.dumps(data))
    before = path.read_bytes()
    assert main(["split", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: val_filenames and test_filenames would be empty (")
    assert err.rstrip().endswith("; pass --allow-empty-eval to train on every frame")
    assert len(err.strip().splitlines()) == 1 and path.read_bytes() == before
    assert main(["split", str(path), "--allow-empty-eval"]) == 0
    tf = read_transforms(path)
    assert tf.val_filenames == tf.test_filenames == []
    assert len(tf.train_filenames) == len(tf.frames) > 0
    capsys.readouterr()


def test_generic_cameras_named_like_a_rig_get_the_every_8th_rule(tmp_path: Path) -> None:
    """Six generic cameras "0".."5" (camera 5 is v1's held-out one) are no EyefulTower rig: no
    catalog rule is guessed from their ids, by the library or by the command."""
    scene = Scene(
        frames=tuple(
            Frame(
                image_path=f"{cam}/{cam}_{i:03d}.jpg",
                camera=CAMERA,
                world_from_cam=random_pose(10 * cam + i),
                camera_id=str(cam),
            )
            for cam in range(6)
            for i in range(4)
        ),
        world_up=WorldUp.Z_UP,
    )
    tf = scene_to_transforms(scene)
    result, rule = split.official_split(tf, None)
    names = sorted(f.file_path for f in tf.frames)
    assert sorted(result.val_filenames) == names[::8]
    assert "every 8th image" in rule and "held-out camera" not in rule
    for name in names:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    write_transforms(tmp_path / "transforms.json", tf)
    assert "every 8th image" in split.split_transforms_file(tmp_path / "transforms.json")
