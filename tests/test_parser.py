"""nerfstudio dataparser parity in the trainer's parser: orientations ``pca`` and ``vertical``
(as nerfstudio 1.1.5's ``auto_orient_and_center_poses``), ``orientation_override``, the eval
modes ``fraction``/``filename``/``interval``/``all``, and the train/eval/CLI plumbing that keeps
a run's normalisation and split.

The numbers against nerfstudio itself come from the peer tool (see docs/train.md); these tests
check properties only a correct implementation has, on rigs whose answer is known."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import random_rotation

from eyeful_tools import cameras
from eyeful_tools.cameras import Camera, CameraModel, Frame, Scene, WorldUp
from eyeful_tools.cli import main
from eyeful_tools.errors import InputFormatError, SplitError, UsageError
from eyeful_tools.imageio import write_image
from eyeful_tools.transforms import read_transforms, scene_to_transforms, write_transforms
from trainer_adapter.data.parser import (
    EVAL_INTERVAL,
    eval_split,
    half_turn,
    orient_and_center,
    parse_dataset,
    resolve_downscale,
)

E_X, E_Z = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread on the shared 2-core runner (see tests/test_train.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def opencv_pose(world_from_cam_opengl: np.ndarray) -> np.ndarray:
    return cameras.opencv_from_opengl_pose(world_from_cam_opengl)


def rotation_about(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues: rotation by ``angle`` radians about the unit ``axis`` [3, 3]."""
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    skew = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * skew + (1 - math.cos(angle)) * (skew @ skew)


def random_rig(seed: int, count: int = 25) -> np.ndarray:
    """[N, 4, 4] OpenCV ``world_from_cam``: random orientations, anisotropic origins."""
    rng = np.random.default_rng(seed)
    poses = np.tile(np.eye(4), (count, 1, 1))
    for pose in poses:
        pose[:3, :3] = random_rotation(rng)
    spread = rng.uniform(0.3, 3.0, size=3)
    poses[:, :3, 3] = (rng.normal(size=(count, 3)) * spread) @ random_rotation(rng).T + 2.0
    return poses


def make_dataset(
    root: Path,
    names: list[str],
    *,
    splits: dict[str, list[int]] | None = None,
    extra: dict | None = None,
    size: tuple[int, int] = (20, 16),
    tilt_deg: float = 0.0,
) -> Path:
    """Tiny images on a ring of outward cameras (z-up world; the whole ring rotated by
    ``tilt_deg`` about world x) and their transforms.json."""
    rng = np.random.default_rng(0)
    width, height = size
    camera = Camera(
        model=CameraModel.PINHOLE, width_px=width, height_px=height,
        fx=0.8 * width, fy=0.8 * width, cx=width / 2, cy=height / 2,
    )  # fmt: skip
    frames = []
    tilt = np.eye(4)
    tilt[:3, :3] = rotation_about(E_X, math.radians(tilt_deg))
    for i, name in enumerate(names):
        angle = 2 * math.pi * i / len(names)
        opengl = np.eye(4)  # OpenGL camera: +y up = world +z, looking outwards
        opengl[:3, :3] = rotation_about(E_Z, angle) @ rotation_about(E_X, math.pi / 2)
        opengl[:3, 3] = [2 * math.cos(angle), 2 * math.sin(angle), 1.0]
        write_image(root / name, rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        pose = opencv_pose(tilt @ opengl)
        frames.append(Frame(image_path=name, camera=camera, world_from_cam=pose))
    split_names = {k: [names[i] for i in v] for k, v in (splits or {}).items()}
    scene = Scene(frames=tuple(frames), world_up=WorldUp.Z_UP, name="ring", splits=split_names)
    write_transforms(root / "transforms.json", scene_to_transforms(scene))
    if extra:
        document = json.loads((root / "transforms.json").read_text())
        document.update(extra)
        (root / "transforms.json").write_text(json.dumps(document))
    return root


# ---------------------------------------------------------------------------------------------
# pca


@pytest.mark.parametrize("seed", range(12))
def test_pca_is_nerfstudios_eigenvector_rotation(seed: int) -> None:
    """nerfstudio's definition: the rotation's columns are the eigenvectors of the centred
    origins' scatter matrix, largest eigenvalue first, signed as torch.linalg.eigh (float32)
    returns them with the last one reversed if needed for det +1; then a half-turn about x
    when the mean camera up (OpenGL +y) would point down."""
    poses = random_rig(seed)
    transform = orient_and_center(poses, orientation="pca", center="poses")
    rotation = transform[:, :3]
    assert cameras.is_rotation(rotation, atol=1e-12)
    origins = poses[:, :3, 3]
    np.testing.assert_allclose(transform[:, 3], -rotation @ origins.mean(0), atol=1e-12)
    centred = origins - origins.mean(0)
    scatter = centred.T @ centred
    descending = np.linalg.eigvalsh(scatter)[::-1]
    mean_up = cameras.opengl_from_opencv_pose(poses)[:, :3, 1].mean(0)
    assert (rotation @ mean_up)[2] > 0  # cameras look along the up it chooses
    tolerance = 1e-5 * descending[0]
    candidates = {"kept": rotation, "flipped": half_turn(E_X) @ rotation}
    eigen = [
        k for k, m in candidates.items() if np.abs(scatter @ m - m * descending).max() < tolerance
    ]
    assert len(eigen) == 1  # exactly one of the two has the eigenvectors as columns
    eigvec = candidates[eigen[0]]
    assert (eigen[0] == "flipped") == ((eigvec @ mean_up)[2] < 0)  # flipped only when needed
    # the signs: torch's float32 eigenvectors, largest first, det fixed on the last column
    tensor = torch.from_numpy(cameras.opengl_from_opencv_pose(poses).astype(np.float32))
    t32 = tensor[..., :3, 3] - tensor[..., :3, 3].mean(0)
    reference = torch.linalg.eigh(t32.T @ t32)[1].flip(-1).double().numpy()
    signs = np.sign(np.sum(reference * eigvec, axis=0))
    assert signs[0] == signs[1] == 1 and signs[2] == np.sign(np.linalg.det(reference))


def test_pca_on_axis_aligned_spreads_has_a_known_answer() -> None:
    """Origins on a box: spread 5 along world z, 2 along x, 0.3 along y, so the eigenvectors
    are exactly +-z, +-x, +-y (largest first). nerfstudio uses that eigenvector matrix V itself
    (not V^T) as the rotation, so new x = +-old y, new y = +-old z, new z = +-old x; with camera
    up along world +x the up lands on +z exactly, whatever the eigenvector signs."""
    corners = np.array(
        [[x, y, z] for x in (-2.0, 2.0) for y in (-0.3, 0.3) for z in (-5.0, 5.0)]
    )  # [8, 3]
    opengl = np.tile(np.eye(4), (len(corners), 1, 1))
    for i, pose in enumerate(opengl):  # OpenGL +y (camera up) = world +x, yawed about it
        pose[:3, :3] = rotation_about(E_X, 0.7 * i) @ rotation_about(E_Z, -math.pi / 2)
        pose[:3, 3] = corners[i] + [1.0, -2.0, 3.0]
    np.testing.assert_allclose(opengl[:, :3, 1], np.tile(E_X, (8, 1)), atol=1e-12)
    transform = orient_and_center(opencv_pose(opengl), orientation="pca", center="poses")
    rotation = transform[:, :3]
    np.testing.assert_allclose(np.abs(rotation), [[0, 1, 0], [0, 0, 1], [1, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(rotation[2], E_X, atol=1e-6)  # camera up -> +z
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    moved = (rotation @ (corners - corners.mean(0)).T).T
    np.testing.assert_allclose(np.abs(moved).max(0), [0.3, 5.0, 2.0], atol=1e-5)


# ---------------------------------------------------------------------------------------------
# vertical


def level_rig(up: np.ndarray, count: int = 30, pitch_deg: float = 25.0, seed: int = 3):
    """Cameras whose x axes are all perpendicular to ``up`` (level), with varied yaw about
    ``up`` and pitch about their own x axes. [N, 4, 4] OpenCV ``world_from_cam``."""
    rng = np.random.default_rng(seed)
    to_up = rotation_about(np.cross(E_Z, up), math.acos(float(np.dot(E_Z, up))))
    poses = np.tile(np.eye(4), (count, 1, 1))
    for pose in poses:
        yaw = rotation_about(E_Z, rng.uniform(0, 2 * math.pi))
        pitch = rotation_about(E_X, math.radians(90 + rng.uniform(-pitch_deg, 2 * pitch_deg)))
        pose[:3, :3] = to_up @ yaw @ pitch  # OpenGL columns: x level, y up-ish
        pose[:3, 3] = rng.normal(size=3)
    return opencv_pose(poses)


def test_vertical_recovers_the_tilted_up_that_up_misses() -> None:
    up = np.array([0.3, -0.2, 0.9])
    up /= np.linalg.norm(up)
    poses = level_rig(up)
    x_axes = poses[:, :3, 0]
    assert np.abs(x_axes @ up).max() < 1e-12  # every camera level about ``up``
    vertical = orient_and_center(poses, orientation="vertical", center="poses")
    assert cameras.is_rotation(vertical[:, :3], atol=1e-12)
    np.testing.assert_allclose(vertical[:, :3] @ up, E_Z, atol=1e-9)
    mean_up = orient_and_center(poses, orientation="up", center="poses")
    tilt = math.degrees(math.acos(float((mean_up[:, :3] @ up)[2])))
    assert tilt > 2.0  # the pitched cameras' mean up is not the true vertical


def test_vertical_is_signed_by_the_mean_up() -> None:
    """The singular vector's sign is arbitrary; nerfstudio picks the one along the mean camera
    up, even when that points down in the file's world (a sign taken from world z would not)."""
    up = np.array([0.0, 0.6, -0.8])
    poses = level_rig(up, pitch_deg=5)
    vertical = orient_and_center(poses, orientation="vertical", center="none")
    np.testing.assert_allclose(vertical[:, :3] @ up, E_Z, atol=1e-9)


def test_vertical_falls_back_to_the_projected_up_for_a_forward_facing_array() -> None:
    """All x axes equal (a camera array): the smallest singular vector is arbitrary, so
    nerfstudio projects the mean up off the shared x axis; here that is the mean up itself."""
    opengl = np.tile(np.eye(4), (9, 1, 1))
    for i, pose in enumerate(opengl):
        pose[:3, :3] = rotation_about(E_X, math.radians(60 + 4 * i))
        pose[:3, 3] = [0.1 * i, 0.0, 0.02 * i * i]
    poses = opencv_pose(opengl)
    vertical = orient_and_center(poses, orientation="vertical", center="poses")
    upright = orient_and_center(poses, orientation="up", center="poses")
    np.testing.assert_allclose(vertical, upright, atol=1e-12)


def test_orientations_agree_with_each_other_on_a_level_ring(tmp_path: Path) -> None:
    """Upright cameras on a horizontal ring: up and vertical keep z; every method's poses are
    the transform applied to the file's poses, with proper rotations."""
    data = make_dataset(tmp_path, [f"images/{i:02d}.png" for i in range(8)])
    raw = opencv_pose(np.array([f.transform_matrix for f in read_transforms(data).frames]))
    results = {}
    for orientation in ("up", "pca", "vertical", "none"):
        dataset = parse_dataset(data, orientation=orientation)
        mapped = dataset.normalised_from_transforms_world() @ raw  # similarity: scaled R
        poses = dataset.world_from_cam
        np.testing.assert_allclose(mapped[:, :3, 3], poses[:, :3, 3], atol=1e-12)
        rotations = dataset.dataparser_transform[:, :3] @ raw[:, :3, :3]
        np.testing.assert_allclose(rotations, poses[:, :3, :3], atol=1e-12)
        assert all(cameras.is_rotation(p) for p in dataset.world_from_cam)
        results[orientation] = dataset.dataparser_transform[:, :3]
    np.testing.assert_allclose(results["up"], np.eye(3), atol=1e-9)
    np.testing.assert_allclose(results["vertical"], np.eye(3), atol=1e-9)
    np.testing.assert_allclose(results["pca"][2], E_Z, atol=1e-6)  # ring plane stays level


def test_orientation_override_in_the_file_wins(tmp_path: Path) -> None:
    names = [f"images/{i:02d}.png" for i in range(6)]
    data = make_dataset(tmp_path / "a", names, extra={"orientation_override": "none"}, tilt_deg=30)
    dataset = parse_dataset(data, orientation="up")
    np.testing.assert_allclose(dataset.dataparser_transform[:, :3], np.eye(3))
    plain = make_dataset(tmp_path / "c", names, tilt_deg=30)  # without the override: levelled
    levelled = parse_dataset(plain, orientation="up").dataparser_transform[:, :3]
    np.testing.assert_allclose(levelled, rotation_about(E_X, math.radians(-30)), atol=1e-12)
    bad = make_dataset(tmp_path / "b", names, extra={"orientation_override": "sideways"})
    with pytest.raises(InputFormatError, match="orientation_override 'sideways'") as error:
        parse_dataset(bad)
    assert error.value.path == str(bad / "transforms.json")


# ---------------------------------------------------------------------------------------------
# eval modes


NAMES = [f"images/frame_{i:02d}.png" for i in range(10)]


def test_eval_modes_on_ten_names() -> None:
    path = Path("transforms.json")
    # fraction: ceil(0.9 * 10) = 9 of linspace(0, 9, 9) = 0, 1.125, ... 7.875, 9 -> int
    train, held = eval_split(path, NAMES, eval_mode="fraction")
    assert train.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 9] and held.tolist() == [8]
    train, held = eval_split(path, NAMES, eval_mode="interval")  # default 8: 0 and 8 held out
    assert EVAL_INTERVAL == 8 and held.tolist() == [0, 8]
    assert train.tolist() == [1, 2, 3, 4, 5, 6, 7, 9]
    train, held = eval_split(path, NAMES, eval_mode="interval", eval_interval=3)
    assert held.tolist() == [0, 3, 6, 9] and train.tolist() == [1, 2, 4, 5, 7, 8]
    train, held = eval_split(path, NAMES, eval_mode="all")
    assert train.tolist() == held.tolist() == list(range(10))
    for arrays in (train, held):
        assert arrays.dtype == np.int64


def test_eval_mode_filename_rule_and_error() -> None:
    path = Path("data/transforms.json")
    names = ["a/x_train.png", "a/y_eval.png", "train_and_eval.png", "eval_dir/training.jpg"]
    train, held = eval_split(path, names, eval_mode="filename")
    # the basename decides; "train" is tested first, then "eval"
    assert train.tolist() == [0, 2, 3] and held.tolist() == [1]
    with pytest.raises(SplitError, match="image frame_00.png has neither 'train' nor 'eval'") as e:
        eval_split(path, ["eval/frame_00.png"], eval_mode="filename")
    assert e.value.path == str(path)


def test_parse_dataset_applies_eval_modes_only_without_file_lists(tmp_path: Path) -> None:
    names = [f"images/{i:02d}_{'eval' if i % 4 == 1 else 'train'}.png" for i in range(12)]
    data = make_dataset(tmp_path / "plain", names)
    expected = {
        # ceil(10.8) = 11 of linspace(0, 11, 11) = 0, 1.1, ... 9.9, 11 -> int
        "fraction": ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11], [10]),
        "interval": ([1, 2, 4, 5, 7, 8, 10, 11], [0, 3, 6, 9]),
        "filename": ([0, 2, 3, 4, 6, 7, 8, 10, 11], [1, 5, 9]),
        "all": (list(range(12)), list(range(12))),
    }
    for mode, (train, held) in expected.items():
        dataset = parse_dataset(data, eval_mode=mode, eval_interval=3)
        assert dataset.indices("train").tolist() == train, mode
        assert dataset.indices("val").tolist() == dataset.indices("test").tolist() == held, mode
    listed = make_dataset(
        tmp_path / "listed", names, splits={"train": [0, 1, 2], "val": [3], "test": [4]}
    )
    dataset = parse_dataset(listed, eval_mode="interval", eval_interval=3)
    assert dataset.indices("train").tolist() == [0, 1, 2]  # the lists win, as in nerfstudio
    assert dataset.indices("test").tolist() == [4]


def test_bad_options_are_usage_errors(tmp_path: Path) -> None:
    data = make_dataset(tmp_path, NAMES[:4])
    cases = [
        ({"orientation": "sideways"}, "--orientation: 'sideways' is not supported"),
        ({"center": "middle"}, "--center: 'middle' is not supported"),
        ({"eval_mode": "sometimes"}, "--eval-mode: 'sometimes' is not supported"),
        ({"eval_interval": 0}, "--eval-interval: must be a positive integer, got 0"),
        ({"eval_interval": 2.5}, "--eval-interval: must be a positive integer, got 2.5"),
    ]
    for options, message in cases:
        with pytest.raises(UsageError, match=message):
            parse_dataset(data, **options)
    with pytest.raises(SplitError, match="neither 'train' nor 'eval'"):
        parse_dataset(data, eval_mode="filename")


# ---------------------------------------------------------------------------------------------
# train / eval / CLI


def test_cli_train_stores_the_options_and_eval_uses_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainer_adapter.evaluate import load_run

    monkeypatch.setenv("COLUMNS", "400")  # the help's choices on one line each, whatever wraps
    assert main(["train", "--help"]) == 0
    help_text = capsys.readouterr().out
    for option in ("--orientation", "--center", "--eval-mode", "--eval-interval"):
        assert option in help_text
    assert "up | pca | vertical | none" in help_text
    assert "fraction | filename | interval | all" in help_text

    data = make_dataset(tmp_path / "ring", [f"images/{i:02d}.png" for i in range(12)])
    out = tmp_path / "out"
    rc = main(["train", str(data), "--preset", "tiny", "--max-steps", "2", "--device", "cpu",
               "--output-dir", str(out), "--orientation", "pca", "--center", "focus",
               "--eval-mode", "interval", "--eval-interval", "4"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    run_dir = next((out / "ring" / "tiny").iterdir())
    config = json.loads((run_dir / "config.json").read_text())
    stored = config["options"]["data"]
    assert (stored["orientation"], stored["center"]) == ("pca", "focus")
    assert (stored["eval_mode"], stored["eval_interval"]) == ("interval", 4)
    assert config["facts"]["num_train_images"] == 9  # 12 images, 0, 4 and 8 held out
    saved = json.loads((run_dir / "dataparser_transforms.json").read_text())
    expected = parse_dataset(data, orientation="pca", center="focus")
    np.testing.assert_allclose(
        saved["eyeful"]["transforms_json_to_normalised"], expected.dataparser_transform, atol=1e-12
    )
    run = load_run(run_dir, device="cpu")
    np.testing.assert_allclose(
        run.dataset.nerfstudio_dataparser_transform()[0],
        saved["transform"],
        atol=1e-12,
    )
    assert run.dataset.indices("test").tolist() == [0, 4, 8]
    metrics = tmp_path / "metrics.json"
    assert main(["eval", str(run_dir), "--output", str(metrics), "--device", "cpu"]) == 0
    assert json.loads(metrics.read_text())["num_images"] == 3

    # a run written in the old flat layout, before these keys existed, evaluates with the
    # defaults it was trained with
    legacy = {
        "preset": "tiny",
        "data": stored["data"],
        "downscale": 1,
        "num_train_images": 9,
        "config": {k: v for g in ("model", "optim") for k, v in config["options"][g].items()},
    }
    (run_dir / "config.json").write_text(json.dumps(legacy))
    old = load_run(run_dir, device="cpu")
    default = parse_dataset(data)
    np.testing.assert_allclose(old.dataset.dataparser_transform, default.dataparser_transform)
    assert old.dataset.indices("test").tolist() == default.indices("test").tolist() == [10]


def test_cli_train_rejects_bad_options_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_dataset(tmp_path / "ring", NAMES[:3])
    out = tmp_path / "out"
    for flag, value, message in [
        ("--orientation", "sideways", "'sideways' is not supported (use up, pca, vertical, none)"),
        ("--center", "middle", "'middle' is not supported (use poses, focus, none)"),
        ("--eval-mode", "sometimes", "'sometimes' is not supported (use fraction, filename, "
         "interval, all)"),
        ("--eval-interval", "0", "must be a positive integer, got 0"),
    ]:  # fmt: skip
        assert main(["train", str(data), "--output-dir", str(out), flag, value]) == 1
        assert capsys.readouterr().err.strip() == f"error: {flag}: {message}"
    assert not out.exists()


def test_resume_keeps_the_runs_dataparser_options(tmp_path: Path) -> None:
    """``--load-dir`` continues in the normalised world and split of the run it resumes."""
    from trainer_adapter.trainer import train

    data = make_dataset(tmp_path / "ring", [f"images/{i:02d}.png" for i in range(12)])
    small = {"train_num_rays_per_batch": 32}
    first = train(data, preset="tiny", max_steps=1, output_dir=tmp_path / "out", device="cpu",
                  timestamp="a", orientation="vertical", center="none", eval_mode="interval",
                  eval_interval=5, overrides=small)  # fmt: skip
    second = train(data, preset="tiny", max_steps=2, output_dir=tmp_path / "out", device="cpu",
                   timestamp="b", load_dir=first.run_dir, overrides=small)  # fmt: skip
    config = json.loads((second.run_dir / "config.json").read_text())
    stored = config["options"]["data"]
    assert (stored["orientation"], stored["center"]) == ("vertical", "none")
    assert (stored["eval_mode"], stored["eval_interval"], config["facts"]["num_train_images"]) == (
        "interval", 5, 9,  # 12 images, 0, 5 and 10 held out
    )  # fmt: skip
    assert second.last_step == 1


# ---------------------------------------------------------------------------------------------
# dataparser_transforms.json: nerfstudio's meaning


def test_saved_dataparser_transform_starts_from_the_capture_world(tmp_path: Path) -> None:
    """nerfstudio saves ``transform @ applied_transform`` and ``scale * applied_scale``; the
    poses themselves do not see ``applied_scale``. A file without ``applied_transform`` next
    to ``colmap/sparse/0`` gets nerfstudio's legacy COLMAP matrix."""
    names = [f"images/{i:02d}.png" for i in range(6)]
    plain = parse_dataset(make_dataset(tmp_path / "plain", names))
    scaled = parse_dataset(make_dataset(tmp_path / "scaled", names, extra={"applied_scale": 2.5}))
    np.testing.assert_allclose(scaled.world_from_cam, plain.world_from_cam, atol=1e-12)
    saved = json.loads(scaled.save_dataparser_transforms(tmp_path / "s.json").read_text())
    assert saved["scale"] == pytest.approx(2.5 * plain.dataparser_scale)
    assert saved["eyeful"]["transforms_json_scale"] == pytest.approx(plain.dataparser_scale)

    # the ring's transforms.json records applied_transform = identity (z-up scene); drop it
    legacy = make_dataset(tmp_path / "legacy", names)
    document = json.loads((legacy / "transforms.json").read_text())
    del document["applied_transform"]
    (legacy / "transforms.json").write_text(json.dumps(document))
    assert np.allclose(parse_dataset(legacy).nerfstudio_dataparser_transform()[0][:, :3],
                       plain.dataparser_transform[:, :3])  # fmt: skip
    (legacy / "colmap" / "sparse" / "0").mkdir(parents=True)
    dataset = parse_dataset(legacy)
    transform, _ = dataset.nerfstudio_dataparser_transform()
    expected = np.eye(4)
    expected[:3] = dataset.dataparser_transform
    expected = expected @ cameras.legacy_colmap_applied_transform()
    np.testing.assert_allclose(transform, expected[:3], atol=1e-12)
    assert not np.allclose(transform, dataset.dataparser_transform)


# ---------------------------------------------------------------------------------------------
# --downscale auto


def test_auto_downscale_follows_nerfstudio(tmp_path: Path, capsys) -> None:
    """Halve while the first image's largest side is over 1600 px and images_<2f>/ has it."""
    names = [f"images/{i:02d}.jpg" for i in range(4)]
    data = make_dataset(tmp_path / "big", names)
    first = data / names[0]
    write_image(first, np.zeros((2100, 3300, 3), np.uint8))  # only its header is read
    assert resolve_downscale(data, "auto") == 1  # no copies: nerfstudio trains full size
    for factor in (2, 4, 8):
        write_image(data / f"images_{factor}" / first.name, np.zeros((4, 4, 3), np.uint8))
    assert resolve_downscale(data, "auto") == 4  # 3300 / 4 = 825 <= 1600: images_8 unused
    (data / "images_4" / first.name).unlink()
    assert resolve_downscale(data, "auto") == 2  # 1650 > 1600, but images_4 lacks the image
    assert resolve_downscale(data, 8) == 8
    small = make_dataset(tmp_path / "small", names)
    write_image(small / "images_2" / "00.jpg", np.zeros((4, 4, 3), np.uint8))
    assert resolve_downscale(small, "auto") == 1  # 20 px: already small enough
    with pytest.raises(UsageError, match="must be 'auto' or a positive integer"):
        resolve_downscale(small, "half")
    rc = main(["train", str(small), "--downscale", "half", "--device", "cpu",
               "--output-dir", str(tmp_path / "out")])  # fmt: skip
    assert (
        rc == 1 and "--downscale: must be 'auto' or a positive integer" in capsys.readouterr().err
    )
    assert not (tmp_path / "out").exists()
