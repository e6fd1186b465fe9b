"""nerfstudio ``transforms.json``: pydantic models, the one reader and the one writer.

This is the only module that knows nerfstudio's key names (``fl_x``, ``transform_matrix``,
``applied_transform``, ``*_filenames``). Geometry goes through :mod:`eyeful_tools.cameras`:
the writer turns canonical frames (OpenCV axes, source world) into OpenGL camera-to-world
matrices in the z-up output world, row-major; the reader does the inverse.

Our own per-frame keys live under ``"eyeful"``, which nerfstudio ignores.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from eyeful_tools import cameras
from eyeful_tools.cameras import Camera, CameraModel, Frame, Scene, WorldUp
from eyeful_tools.errors import InputFormatError, field_error
from eyeful_tools.fsio import atomic_write_text, read_json

SPLIT_KEYS = ("train_filenames", "val_filenames", "test_filenames")
FORMAT_VERSION = 1


class _Strict(BaseModel):
    # NaN/inf serialise as JSON constants, so the writer's read-back check rejects them
    model_config = ConfigDict(
        extra="allow", allow_inf_nan=False, populate_by_name=True, ser_json_inf_nan="constants"
    )


def _check_matrix(value: list[list[float]], rows: int, name: str) -> list[list[float]]:
    if len(value) != rows or any(len(row) != 4 for row in value):
        raise ValueError(f"{name} must be {rows}x4")
    return value


class EyefulFrameExtras(_Strict):
    """Per-frame keys of ours (nerfstudio ignores the whole ``eyeful`` object)."""

    camera_id: str | None = None
    rig_position_id: int | None = None
    sensor_id: str | None = None
    exposure: float | None = None
    color_space: str | None = None
    fisheye_crop_radius: float | None = None


class TransformsFrame(_Strict):
    file_path: str
    w: int | None = None
    h: int | None = None
    fl_x: float | None = None
    fl_y: float | None = None
    cx: float | None = None
    cy: float | None = None
    k1: float | None = None
    k2: float | None = None
    k3: float | None = None
    k4: float | None = None
    p1: float | None = None
    p2: float | None = None
    transform_matrix: list[list[float]]
    mask_path: str | None = None
    depth_file_path: str | None = None
    eyeful: EyefulFrameExtras | None = None

    @field_validator("transform_matrix")
    @classmethod
    def _four_by_four(cls, value: list[list[float]]) -> list[list[float]]:
        return _check_matrix(value, 4, "transform_matrix")


class TransformsFile(_Strict):
    """Top level of ``transforms.json`` (the keys nerfstudio's dataparser reads, plus ours)."""

    camera_model: CameraModel = CameraModel.OPENCV
    fl_x: float | None = None
    fl_y: float | None = None
    cx: float | None = None
    cy: float | None = None
    w: int | None = None
    h: int | None = None
    k1: float | None = None
    k2: float | None = None
    k3: float | None = None
    k4: float | None = None
    p1: float | None = None
    p2: float | None = None
    fisheye_crop_radius: float | None = Field(
        default=None, description="pixels (nerfstudio >= 1.0.3)"
    )
    frames: list[TransformsFrame]
    applied_transform: list[list[float]] | None = None
    applied_scale: float | None = None
    orientation_override: str | None = None
    ply_file_path: str | None = None
    train_filenames: list[str] | None = None
    val_filenames: list[str] | None = None
    test_filenames: list[str] | None = None
    eyeful: dict[str, Any] | None = None

    @field_validator("applied_transform")
    @classmethod
    def _three_by_four(cls, value: list[list[float]] | None) -> list[list[float]] | None:
        return None if value is None else _check_matrix(value, 3, "applied_transform")


# ---------------------------------------------------------------------------------------------
# Reading and writing files.


def transforms_file(data: str | Path) -> Path:
    """A dataset folder's ``transforms.json``, or the ``transforms*.json`` path given (as
    nerfstudio's ``--data`` takes either)."""
    data = Path(data)
    if data.is_dir() or data.suffix.lower() != ".json":  # a folder, even a missing one
        return data / "transforms.json"
    return data


def read_transforms(path: str | Path) -> TransformsFile:
    """Parse and validate a transforms.json (or a folder's); errors name the file and field."""
    path = transforms_file(path)
    return parse_transforms(read_json(path, "transforms file"), path)


def parse_transforms(data: Any, path: str | Path | None = None) -> TransformsFile:
    """Validate the structure, then the values (:func:`check_transforms`)."""
    try:
        transforms = TransformsFile.model_validate(data)
    except ValidationError as error:
        raise field_error(error, path) from error
    check_transforms(transforms, path)
    return transforms


def dump_transforms(transforms: TransformsFile) -> str:
    """JSON text with nerfstudio's indent of 4, ``None`` fields left out, trailing newline.

    Serialised by pydantic's compiled encoder: 10x faster than ``json.dumps(indent=4)`` on
    20,000 frames, same values (floats may print as ``0.00001`` rather than ``1e-05``).
    """
    return transforms.model_dump_json(indent=4, exclude_none=True) + "\n"


def write_transforms(path: str | Path, transforms: TransformsFile) -> Path:
    """Validate (finite numbers, shapes) and write atomically."""
    path = Path(path)
    check_transforms(transforms, path)
    text = dump_transforms(transforms)
    try:  # never write what we could not read back
        TransformsFile.model_validate_json(text)
    except ValidationError as error:
        raise field_error(error, path) from error
    atomic_write_text(path, text)
    return path


# ---------------------------------------------------------------------------------------------
# Values that would make a model wrong: refused on every read and write, naming file and frame.

#: the repair for a fraction crop radius, with ``{capture}`` filled in where it can be found
FRACTION_RADIUS_FIX = (
    "nerfstudio writes this as a fraction; run `eyeful convert {capture}` to repair it"
)


def check_transforms(transforms: TransformsFile, path: str | Path | None) -> None:
    """Refuse intrinsics that are not finite or not > 0, poses that are not rigid, and crop
    radii that are negative or (on a fisheye file) plainly nerfstudio's 0-1 fraction.

    The rules live in :mod:`eyeful_tools.cameras`; this applies them with nerfstudio's
    precedence (top-level values override per-frame ones). Frames missing a value are left to
    the reader that needs it.
    """
    frames = transforms.frames
    if not frames:
        return
    fisheye = transforms.camera_model is CameraModel.OPENCV_FISHEYE
    if transforms.fisheye_crop_radius is not None:
        _check_radius(path, frames[0].file_path, transforms.fisheye_crop_radius, fisheye, True)
    checked: set[tuple[Any, ...]] = set()
    for item in frames:
        radius = item.eyeful.fisheye_crop_radius if item.eyeful else None
        if radius is not None:
            _check_radius(path, item.file_path, radius, fisheye, False)
        values = tuple(_intrinsic(transforms, item, key) for key in _INTRINSICS)
        if values in checked or None in values:
            continue
        checked.add(values)
        fx, fy, cx, cy, w, h = values
        camera = Camera(
            model=CameraModel.PINHOLE, width_px=w, height_px=h, fx=fx, fy=fy, cx=cx, cy=cy
        )
        problem = cameras.camera_problem(camera)
        if problem is not None:
            raise InputFormatError(path, f"frame {item.file_path}: {problem}")
    bad = cameras.first_bad_pose(np.asarray([item.transform_matrix for item in frames]))
    if bad is not None:
        raise InputFormatError(path, f"frame {frames[bad[0]].file_path}: transform_matrix {bad[1]}")


def check_scene(scene: Scene, path: str | Path | None) -> None:
    """:func:`check_transforms`'s rules on canonical frames (a reader's output), so a bad
    calibration is refused naming its source file (``cameras.json``, ``cameras.xml``, ...)."""
    first_of: dict[Camera, Frame] = {}
    for frame in scene.frames:
        first_of.setdefault(frame.camera, frame)
    for camera, frame in first_of.items():
        problem = cameras.camera_problem(camera)
        if problem is not None:
            raise InputFormatError(path, f"frame {frame.image_path}: {problem}")
    if scene.frames:
        bad = cameras.first_bad_pose(np.stack([frame.world_from_cam for frame in scene.frames]))
        if bad is not None:
            raise InputFormatError(path, f"frame {scene.frames[bad[0]].image_path}: pose {bad[1]}")


_INTRINSICS = ("fl_x", "fl_y", "cx", "cy", "w", "h")


def _intrinsic(transforms: TransformsFile, item: TransformsFrame, key: str) -> Any:
    """nerfstudio's precedence: a top-level value applies to every frame."""
    value = getattr(transforms, key)
    return getattr(item, key) if value is None else value


def _check_radius(
    path: str | Path | None, file_path: str, radius: float, fisheye: bool, top_level: bool
) -> None:
    where = " (top level: every frame)" if top_level else ""
    if fisheye and cameras.is_fraction_radius(radius):
        fix = FRACTION_RADIUS_FIX.format(capture=capture_folder(path))
        raise InputFormatError(
            path, f"frame {file_path}: fisheye_crop_radius is {radius:g}{where}, not pixels: {fix}"
        )
    if not radius > 0:
        raise InputFormatError(
            path,
            f"frame {file_path}: fisheye_crop_radius is {radius:g}{where} (must be a positive "
            "number of pixels)",
        )


def capture_folder(transforms_path: str | Path | None) -> str:
    """The capture folder a transforms.json was converted from (the folder above, or its own,
    holding ``cameras.json`` or ``cameras.xml``), else ``<capture>``."""
    if transforms_path is None:
        return "<capture>"
    folder = Path(transforms_path).parent
    for candidate in (folder.parent, folder):
        if any((candidate / name).is_file() for name in ("cameras.json", "cameras.xml")):
            return str(candidate)
    return "<capture>"


# ---------------------------------------------------------------------------------------------
# Canonical scene <-> transforms.


def scene_to_transforms(
    scene: Scene, *, extra: dict[str, Any] | None = None, source: str | Path | None = None
) -> TransformsFile:
    """The nerfstudio view of a scene: OpenGL c2w in the z-up output world, per-frame intrinsics.

    ``applied_transform`` records ``output_world_from_source`` (3x4) so users can map results
    back to the capture's coordinates. Bad calibration is refused naming ``source`` (default:
    the scene's name).
    """
    if not scene.frames:
        raise InputFormatError(scene.name, "no frames to write")
    check_scene(scene, source or scene.name)
    models = {frame.camera.model for frame in scene.frames}
    model = cameras.common_camera_model(models)
    if model is None:
        names = ", ".join(sorted(m.value for m in models))
        raise InputFormatError(scene.name, f"mixed camera models in one scene ({names})")
    output_from_source = cameras.output_world_from_source(scene.world_up)
    radii = [
        f.camera.fisheye_crop_radius_px for f in scene.frames if f.camera.fisheye_crop_radius_px
    ]
    frames = [
        _frame_to_transforms(frame, output_from_source, len(set(radii)) > 1)
        for frame in scene.frames
    ]
    splits: dict[str, Any] = {f"{n}_filenames": list(files) for n, files in scene.splits.items()}
    return TransformsFile(
        camera_model=model,
        fisheye_crop_radius=min(radii) if radii and model is CameraModel.OPENCV_FISHEYE else None,
        frames=frames,
        applied_transform=output_from_source[:3].tolist(),
        eyeful={"format_version": FORMAT_VERSION, "capture": scene.name, **(extra or {})},
        **splits,
    )


def _frame_to_transforms(
    frame: Frame, output_from_source: np.ndarray, per_frame_radius: bool
) -> TransformsFrame:
    camera = frame.camera
    world_from_cam_gl = cameras.opengl_from_opencv_pose(output_from_source @ frame.world_from_cam)
    extras = EyefulFrameExtras(
        camera_id=frame.camera_id,
        rig_position_id=frame.rig_position_id,
        sensor_id=frame.sensor_id,
        exposure=frame.exposure,
        color_space=frame.color_space,
        fisheye_crop_radius=camera.fisheye_crop_radius_px if per_frame_radius else None,
    )
    return TransformsFrame(
        file_path=frame.image_path,
        w=camera.width_px,
        h=camera.height_px,
        fl_x=camera.fx,
        fl_y=camera.fy,
        cx=camera.cx,
        cy=camera.cy,
        **camera.distortion_dict(),
        transform_matrix=world_from_cam_gl.tolist(),
        mask_path=frame.mask_path,
        depth_file_path=frame.depth_path,
        eyeful=extras if extras.model_dump(exclude_none=True) else None,
    )


def transforms_to_scene(transforms: TransformsFile, path: str | Path | None = None) -> Scene:
    """Canonical frames from a transforms file, following nerfstudio's precedence rules:
    top-level intrinsics override per-frame ones; distortion is shared when any of
    ``k1 k2 k3 p1 p2`` is top-level. Poses come back in the output (z-up) world, OpenCV axes.
    """
    shared_distortion = any(
        getattr(transforms, key) is not None for key in ("k1", "k2", "k3", "p1", "p2")
    )
    frames = []
    for index, item in enumerate(transforms.frames):
        camera = _camera_of(transforms, item, shared_distortion, index, path)
        extras = item.eyeful or EyefulFrameExtras()
        matrix = np.asarray(item.transform_matrix, dtype=np.float64)
        frames.append(
            Frame(
                image_path=item.file_path,
                camera=camera,
                world_from_cam=cameras.opencv_from_opengl_pose(matrix),
                camera_id=extras.camera_id,
                rig_position_id=extras.rig_position_id,
                sensor_id=extras.sensor_id,
                mask_path=item.mask_path,
                depth_path=item.depth_file_path,
                color_space=extras.color_space,
                exposure=extras.exposure,
            )
        )
    splits = {
        key.removesuffix("_filenames"): list(getattr(transforms, key))
        for key in SPLIT_KEYS
        if getattr(transforms, key) is not None
    }
    name = (transforms.eyeful or {}).get("capture")
    return Scene(frames=tuple(frames), world_up=WorldUp.Z_UP, name=name, splits=splits)


def _camera_of(
    transforms: TransformsFile,
    item: TransformsFrame,
    shared_distortion: bool,
    index: int,
    path: str | Path | None,
) -> Camera:
    values: dict[str, Any] = {}
    for key in ("fl_x", "fl_y", "cx", "cy", "w", "h"):
        value = getattr(transforms, key)
        if value is None:
            value = getattr(item, key)
        if value is None:
            raise InputFormatError(path, f"field frames.{index}.{key}: missing (and not top-level)")
        values[key] = value
    source = transforms if shared_distortion else item
    distortion = cameras.distortion_from_dict(
        {name: getattr(source, name) for name in cameras.DISTORTION_NAMES}
    )
    radius = (
        item.eyeful.fisheye_crop_radius if item.eyeful else None
    ) or transforms.fisheye_crop_radius
    is_fisheye = transforms.camera_model is CameraModel.OPENCV_FISHEYE
    return Camera(
        model=transforms.camera_model,
        width_px=int(values["w"]),
        height_px=int(values["h"]),
        fx=float(values["fl_x"]),
        fy=float(values["fl_y"]),
        cx=float(values["cx"]),
        cy=float(values["cy"]),
        distortion=distortion,
        fisheye_crop_radius_px=radius if is_fisheye else None,
    )


def resolve_image_paths(transforms_path: str | Path, file_paths: Iterable[str]) -> list[Path]:
    """Absolute image paths; ``file_path`` values are relative to the transforms file's folder."""
    base = Path(transforms_path).parent
    return [(base / p).resolve() if not Path(p).is_absolute() else Path(p) for p in file_paths]


def missing_files(transforms_path: str | Path, file_paths: Sequence[str]) -> list[str]:
    return [
        p
        for p, full in zip(
            file_paths, resolve_image_paths(transforms_path, file_paths), strict=True
        )
        if not full.is_file()
    ]
