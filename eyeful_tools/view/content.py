"""What ``eyeful view`` shows, as plain arrays: no viser here, so it is tested without a browser.

Everything is in the transforms.json world (z-up, metres, nerfstudio's). The capture's own world
is placed with the file's ``applied_transform`` (capture -> transforms world) and the trainer's
normalised world with the 4x4 similarity ``normalised_from_transforms`` (from a run's
``dataparser_transforms.json``, or computed by the caller with the trainer's rule).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eyeful_tools.cameras import COLMAP_MODEL_IN_DATASET, Camera, transforms_from_capture
from eyeful_tools.errors import EyefulError, InputFormatError, MissingFileError
from eyeful_tools.split import camera_of, position_of, split_key
from eyeful_tools.transforms import read_transforms, transforms_file, transforms_to_scene

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
#: most points drawn from a mesh or point cloud (a browser draws a few hundred thousand easily)
MAX_POINTS = 200_000
#: the trainer's scene box in its normalised world (Nerfacto: identity inside the unit cube)
SCENE_BOX_HALF_SIZE = 1.0


@dataclass(frozen=True)
class ViewCamera:
    """One image as drawn: a frustum at ``world_from_cam`` (OpenCV axes, transforms world)."""

    file_path: str  # as listed in the transforms file
    image_path: Path
    camera: Camera
    world_from_cam: np.ndarray  # [4, 4]
    splits: tuple[str, ...]  # the *_filenames lists naming it (none: not listed)
    camera_id: str | None
    rig_position: str
    held_out: bool  # its physical camera is in val or test and never in train

    @property
    def split(self) -> str:
        """The split it is coloured by: test before val before train (a held-out image
        is listed in both val and test), ``none`` when no list names it."""
        for name in ("test", "val", "train"):
            if name in self.splits:
                return name
        return "none"


@dataclass(frozen=True)
class ViewContent:
    transforms_path: Path
    cameras: list[ViewCamera]
    transforms_from_capture: np.ndarray  # [4, 4] the capture's own world in this one
    normalised_from_transforms: np.ndarray | None  # [4, 4] similarity, None: not known
    points: np.ndarray | None  # [N, 3] float32, transforms world
    point_colors: np.ndarray | None  # [N, 3] uint8
    points_source: Path | None


def find_transforms(path: str | Path) -> Path:
    """The transforms file behind ``PATH``: a ``transforms*.json``, a dataset folder, a run
    folder (its ``config.json`` names the data) or a capture folder (its first converted
    resolution folder, JPEG ones first)."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(path, "not found")
    if path.is_file():
        return transforms_file(path)
    if (path / "transforms.json").is_file():
        return path / "transforms.json"
    if (path / "config.json").is_file():
        return transforms_file(run_data(path))
    # 8-bit folders first (quick thumbnails), then by name: images-jpeg-1k before -2k
    converted = sorted(
        path.glob("*/transforms.json"), key=lambda p: ("jpeg" not in p.parent.name, p)
    )
    if converted:
        return converted[0]
    raise MissingFileError(
        path / "transforms.json",
        "not a dataset, run or converted capture (run `eyeful convert` on a capture first)",
    )


def run_data(run_dir: Path) -> Path:
    """The dataset a training run used: ``options.data.data`` in its ``config.json`` (``data``
    in the older layout)."""
    config = _read_json(run_dir / "config.json")
    options = config.get("options")
    group = options.get("data") if isinstance(options, dict) else None
    data = group.get("data") if isinstance(group, dict) else config.get("data")
    if not isinstance(data, str):
        raise InputFormatError(run_dir / "config.json", "no 'data' path")
    return Path(data)


def run_normalisation(run_dir: Path) -> np.ndarray:
    """4x4 similarity transforms world -> normalised world of a run, from the ``eyeful`` part
    of its ``dataparser_transforms.json``."""
    path = run_dir / "dataparser_transforms.json"
    ours = _read_json(path).get("eyeful") or {}
    try:
        transform = np.asarray(ours["transforms_json_to_normalised"], dtype=np.float64)
        scale = float(ours["transforms_json_scale"])
    except (KeyError, TypeError, ValueError) as error:
        raise InputFormatError(path, f"no usable eyeful transform ({error})") from error
    if transform.shape != (3, 4):
        raise InputFormatError(path, f"transforms_json_to_normalised is {transform.shape}, not 3x4")
    matrix = np.eye(4)
    matrix[:3] = transform * scale
    return matrix


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MissingFileError(path, "not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputFormatError(path, f"not JSON ({error})") from error
    if not isinstance(data, dict):
        raise InputFormatError(path, "not a JSON object")
    return data


def load_content(
    transforms_path: Path, normalised_from_transforms: np.ndarray | None = None
) -> ViewContent:
    """The cameras, splits and scene points of one transforms file."""
    transforms = read_transforms(transforms_path)
    scene = transforms_to_scene(transforms, transforms_path)
    if not scene.frames:
        raise InputFormatError(transforms_path, "no frames")
    lists = {name: {split_key(p) for p in scene.splits.get(name, ())} for name in SPLITS}
    in_splits = [
        tuple(name for name in SPLITS if split_key(item.file_path) in lists[name])
        for item in transforms.frames
    ]
    ids = [camera_of(item) for item in transforms.frames]
    trained = {c for c, s in zip(ids, in_splits, strict=True) if "train" in s}
    evaluated = {c for c, s in zip(ids, in_splits, strict=True) if {"val", "test"} & set(s)}
    held_out = evaluated - trained
    base = transforms_path.parent
    views = [
        ViewCamera(
            file_path=item.file_path,
            image_path=base / item.file_path,
            camera=frame.camera,
            world_from_cam=frame.world_from_cam,
            splits=splits,
            camera_id=camera_id,
            rig_position=position_of(item),
            held_out=camera_id in held_out,
        )
        for item, frame, splits, camera_id in zip(
            transforms.frames, scene.frames, in_splits, ids, strict=True
        )
    ]
    from_capture = transforms_from_capture(transforms.applied_transform, base)
    points, colors, source = _scene_points(transforms_path, transforms.ply_file_path, from_capture)
    return ViewContent(
        transforms_path=transforms_path,
        cameras=views,
        transforms_from_capture=from_capture,
        normalised_from_transforms=normalised_from_transforms,
        points=points,
        point_colors=colors,
        points_source=source,
    )


def _scene_points(
    transforms_path: Path, ply_file_path: str | None, transforms_from_capture: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray | None, Path | None]:
    """The file's point cloud (``ply_file_path``, in the transforms world), else COLMAP's
    points3D of ``colmap/sparse/0`` beside it (ns-process-data's layout) or the EyefulTower
    mesh's vertices (``mesh.obj`` of the capture), both in the capture's world. A source found
    by its place rather than named by the file is only decoration: if it cannot be read, one
    warning line, and the next one is tried."""
    if ply_file_path is not None:
        ply = transforms_path.parent / ply_file_path
        if not ply.is_file():
            raise MissingFileError(ply, f"ply_file_path of {transforms_path.name} not found")
        points, colors = read_points(ply)
        return points, colors, ply
    folder = transforms_path.parent
    readers: list[tuple[Path, Callable[[Path], tuple[np.ndarray, np.ndarray] | None]]] = [
        (folder / COLMAP_MODEL_IN_DATASET, read_colmap_points),
        (folder.parent / "mesh.obj", read_points),
        (folder / "mesh.obj", read_points),
    ]
    for source, reader in readers:
        try:
            found = reader(source) if source.exists() else None
        except EyefulError as error:  # found, not named by the file: decoration, not input
            log.warning("%s; no points shown from it", error.one_line())
            continue
        if found is not None:
            points, colors = found
            moved = points @ transforms_from_capture[:3, :3].T + transforms_from_capture[:3, 3]
            return moved.astype(np.float32), colors, source
    return None, None, None


def read_colmap_points(
    model_dir: Path, limit: int = MAX_POINTS
) -> tuple[np.ndarray, np.ndarray] | None:
    """COLMAP's points3D [N, 3] float32 and colours [N, 3] uint8 (pycolmap's reader, checked
    as ``eyeful import colmap`` checks it), at most ``limit``; None for a model without points."""
    from eyeful_tools.colmap_io import read_reconstruction

    reconstruction, _ = read_reconstruction(model_dir)
    points = reconstruction.points3D
    if not points:
        return None
    xyz = np.array([p.xyz for p in points.values()], dtype=np.float32)
    rgb = np.array([p.color for p in points.values()], dtype=np.uint8)
    return _at_most(xyz, rgb, limit)


def read_points(path: Path, limit: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Vertices [N, 3] float32 and colours [N, 3] uint8 of a PLY point cloud or a mesh, at most
    ``limit`` of them (an even random pick, the same every time)."""
    import trimesh  # comes with viser (the `view` extra)

    try:
        loaded = trimesh.load(path, process=False)
    except Exception as error:  # trimesh raises anything from its parsers
        raise InputFormatError(path, f"cannot read points ({error})") from error
    vertices = np.asarray(getattr(loaded, "vertices", np.empty((0, 3))), dtype=np.float32)
    if vertices.ndim != 2 or vertices.shape[0] == 0:
        raise InputFormatError(path, "no vertices")
    return _at_most(vertices, _vertex_colors(loaded, len(vertices)), limit)


def _at_most(points: np.ndarray, colors: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``limit`` points: an even random pick, the same every time."""
    if len(points) > limit:
        keep = np.sort(np.random.default_rng(0).choice(len(points), limit, replace=False))
        points, colors = points[keep], colors[keep]
    return points, colors


def _vertex_colors(loaded: object, count: int) -> np.ndarray:
    colors = getattr(loaded, "colors", None)
    if colors is None:
        visual = getattr(loaded, "visual", None)
        colors = getattr(visual, "vertex_colors", None)
    colors = None if colors is None else np.asarray(colors)
    if colors is None or colors.shape[:1] != (count,) or colors.ndim != 2:
        return np.full((count, 3), 160, dtype=np.uint8)
    return np.ascontiguousarray(colors[:, :3], dtype=np.uint8)


def scene_box_corners(normalised_from_transforms: np.ndarray) -> np.ndarray:
    """[8, 3] corners, in the transforms world, of the trainer's scene box."""
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    corners = np.concatenate([signs * SCENE_BOX_HALF_SIZE, np.ones((8, 1))], axis=1)
    return (corners @ np.linalg.inv(normalised_from_transforms).T)[:, :3]
