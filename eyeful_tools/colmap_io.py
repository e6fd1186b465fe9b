"""COLMAP interop through pycolmap: canonical scenes <-> ``pycolmap.Reconstruction``, rigs included.

No COLMAP file is parsed or written by hand: pycolmap reads and writes the model (binary or
text, with ``rigs`` and ``frames``). Conventions (see ``docs/colmap.md``):

* **Camera axes**: COLMAP's camera frame is OpenCV's (x right, y down, z forward), the same as
  our :class:`~eyeful_tools.cameras.Frame`; COLMAP stores ``cam_from_world``, we keep
  ``world_from_cam``; the two are exact rigid inverses, no axis change.
* **Pixels**: COLMAP puts the upper-left pixel centre at (0.5, 0.5) (``colmap/sensor/models.h``),
  exactly our corner-origin convention, so ``cx, cy`` pass through unchanged.
* **World**: an export is written in the transforms' z-up output world (what
  :func:`~eyeful_tools.transforms.transforms_to_scene` returns). A sidecar ``eyeful_colmap.json``
  beside the model records that, the capture's ``applied_transform`` and our per-image extras
  (camera ids, rig positions, splits, crop radius); COLMAP ignores it. On import a model with
  the sidecar is ``WorldUp.Z_UP``; any other model is ``WorldUp.COLMAP`` (nerfstudio's mapping).
* **Rigs**: frames with ``camera_id`` + ``rig_position_id`` become one pycolmap ``Rig`` (the
  tower) whose reference sensor is the master camera, with constant ``sensor_from_rig`` (= the
  camera's pose relative to the master) and one pycolmap ``Frame`` per position
  (``rig_from_world`` = the master's ``cam_from_world``).

Camera models (each mapping checked against pycolmap's own projection in the tests): PINHOLE
<-> PINHOLE; OPENCV <-> OPENCV, or FULL_OPENCV when k3 != 0 (a pinhole k4 has no COLMAP
equivalent and is refused); OPENCV_FISHEYE <-> OPENCV_FISHEYE, or THIN_PRISM_FISHEYE (the same
equidistant model plus p1, p2, with sx1 = sy1 = 0) when p1 or p2 != 0, as for EyefulTower v1.
Import also accepts SIMPLE_PINHOLE, SIMPLE_RADIAL, RADIAL (-> OPENCV) and SIMPLE_RADIAL_FISHEYE,
RADIAL_FISHEYE (-> OPENCV_FISHEYE), which are special cases of ours.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pycolmap
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eyeful_tools import cameras, catalog, split, transforms
from eyeful_tools.cameras import Camera, CameraModel, Frame, Scene, WorldUp
from eyeful_tools.errors import InputFormatError, MissingFileError, UnsupportedError, UsageError
from eyeful_tools.fsio import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

SIDECAR_NAME = "eyeful_colmap.json"
SIDECAR_VERSION = 1
#: COLMAP model files, in either format; a folder holding one of these sets is a model
_MODEL_FILES = (("cameras.bin", "images.bin"), ("cameras.txt", "images.txt"))
#: the tower's rig id in exported models (per-camera trivial rigs take their camera's id)
TOWER_RIG_ID = 1
#: default tolerance for "the positions form a rigid rig": radians, and scene units (metres)
RIG_TOLERANCE = 1e-6

# ---------------------------------------------------------------------------------------------
# Camera models: one table, read in both directions.

#: COLMAP model -> (our model, its parameters in our names). ``f`` is fx = fy; ``0`` marks a
#: parameter ours cannot express, which must be zero (FULL_OPENCV's rational denominator k4..k6,
#: THIN_PRISM_FISHEYE's sx1, sy1).
COLMAP_MODELS: dict[str, tuple[CameraModel, tuple[str, ...]]] = {
    "SIMPLE_PINHOLE": (CameraModel.PINHOLE, ("f", "cx", "cy")),
    "PINHOLE": (CameraModel.PINHOLE, ("fx", "fy", "cx", "cy")),
    "SIMPLE_RADIAL": (CameraModel.OPENCV, ("f", "cx", "cy", "k1")),
    "RADIAL": (CameraModel.OPENCV, ("f", "cx", "cy", "k1", "k2")),
    "OPENCV": (CameraModel.OPENCV, ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2")),
    "FULL_OPENCV": (
        CameraModel.OPENCV,
        ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "0", "0", "0"),
    ),
    "OPENCV_FISHEYE": (
        CameraModel.OPENCV_FISHEYE,
        ("fx", "fy", "cx", "cy", "k1", "k2", "k3", "k4"),
    ),
    "SIMPLE_RADIAL_FISHEYE": (CameraModel.OPENCV_FISHEYE, ("f", "cx", "cy", "k1")),
    "RADIAL_FISHEYE": (CameraModel.OPENCV_FISHEYE, ("f", "cx", "cy", "k1", "k2")),
    # equidistant fisheye + tangential (+ thin prism sx1, sy1, which we do not have)
    "THIN_PRISM_FISHEYE": (
        CameraModel.OPENCV_FISHEYE,
        ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "0", "0"),
    ),
}

#: what an export writes for each of our models, most specific first
_EXPORT_CANDIDATES: dict[CameraModel, tuple[str, ...]] = {
    CameraModel.PINHOLE: ("PINHOLE",),
    CameraModel.OPENCV: ("OPENCV", "FULL_OPENCV"),
    CameraModel.OPENCV_FISHEYE: ("OPENCV_FISHEYE", "THIN_PRISM_FISHEYE"),
}


def colmap_model_name(camera: Camera) -> str:
    """The COLMAP model that represents ``camera`` exactly; raises UnsupportedError if none."""
    candidates = _EXPORT_CANDIDATES.get(camera.model, ())
    values = camera.distortion_dict() if camera.model is not CameraModel.PINHOLE else {}
    used = {name for name, value in values.items() if value != 0.0}
    for name in candidates:
        if used <= set(COLMAP_MODELS[name][1]):
            return name
    if not candidates:
        raise UnsupportedError(None, f"camera model {camera.model.value} has no COLMAP equivalent")
    widest = candidates[-1]
    extra = sorted(used - set(COLMAP_MODELS[widest][1]))
    has = [name for name in COLMAP_MODELS[widest][1][4:] if name != "0"]
    raise UnsupportedError(
        None,
        f"{camera.model.value} camera with nonzero {', '.join(extra)} has no COLMAP equivalent "
        f"(COLMAP {widest} has {', '.join(has)})",
    )


def colmap_camera_params(camera: Camera) -> tuple[str, list[float]]:
    """(COLMAP model name, parameter vector) for ``camera``; pixel values pass through as-is."""
    name = colmap_model_name(camera)
    values: dict[str, float] = {
        "fx": camera.fx,
        "fy": camera.fy,
        "cx": camera.cx,
        "cy": camera.cy,
        "0": 0.0,
        **camera.distortion_dict(),
    }
    return name, [values[key] for key in COLMAP_MODELS[name][1]]


def camera_from_colmap(colmap_camera: pycolmap.Camera) -> Camera:
    """Our camera for a pycolmap one (at the model's image size); refuses what we cannot model."""
    name = colmap_camera.model.name
    if name not in COLMAP_MODELS:
        supported = ", ".join(COLMAP_MODELS)
        raise UnsupportedError(
            None, f"COLMAP camera {colmap_camera.camera_id} uses {name}; supported: {supported}"
        )
    model, names = COLMAP_MODELS[name]
    params = [float(v) for v in colmap_camera.params]
    if len(params) != len(names):
        raise InputFormatError(
            None, f"COLMAP camera {colmap_camera.camera_id}: {name} needs {len(names)} parameters"
        )
    values = dict(zip(names, params, strict=True))
    colmap_names = [part.strip() for part in colmap_camera.params_info.split(",")]
    inexpressible = [
        colmap_name
        for colmap_name, key, value in zip(colmap_names, names, params, strict=False)
        if key == "0" and value != 0.0
    ]
    if inexpressible:
        raise UnsupportedError(
            None,
            f"COLMAP camera {colmap_camera.camera_id}: {name} with nonzero "
            f"{', '.join(inexpressible)} has no equivalent in our camera models",
        )
    fx = values.get("fx", values.get("f"))
    fy = values.get("fy", values.get("f"))
    return Camera(
        model=model,
        width_px=int(colmap_camera.width),
        height_px=int(colmap_camera.height),
        fx=float(fx),  # type: ignore[arg-type]
        fy=float(fy),  # type: ignore[arg-type]
        cx=values["cx"],
        cy=values["cy"],
        distortion=cameras.distortion_from_dict(values),
    )


# ---------------------------------------------------------------------------------------------
# Rigid transforms <-> pycolmap.


def rigid3d_from_matrix(a_from_b: np.ndarray) -> pycolmap.Rigid3d:
    """pycolmap ``Rigid3d`` from a 4x4 (or 3x4) rigid matrix."""
    return pycolmap.Rigid3d(np.asarray(a_from_b, dtype=np.float64)[:3, :4])


def matrix_from_rigid3d(a_from_b: pycolmap.Rigid3d) -> np.ndarray:
    """4x4 float64 matrix of a pycolmap ``Rigid3d``."""
    matrix = np.eye(4)
    matrix[:3, :4] = a_from_b.matrix()
    return matrix


def rotation_angle_rad(a: np.ndarray, b: np.ndarray) -> float:
    """Angle of the rotation between the 3x3 blocks of ``a`` and ``b``."""
    cosine = (np.trace(np.asarray(a)[:3, :3].T @ np.asarray(b)[:3, :3]) - 1.0) / 2.0
    return math.acos(max(-1.0, min(1.0, cosine)))


def _mean_rigid(samples: Sequence[np.ndarray]) -> np.ndarray:
    """Chordal L2 mean of rigid transforms [k, 4, 4]: SVD-projected mean rotation, mean translation."""
    stack = np.asarray(samples, dtype=np.float64)
    u, _, vt = np.linalg.svd(stack[:, :3, :3].sum(axis=0))
    rotation = u @ vt
    if np.linalg.det(rotation) < 0:  # reflection: flip the weakest singular direction
        u[:, -1] = -u[:, -1]
        rotation = u @ vt
    mean = np.eye(4)
    mean[:3, :3] = rotation
    mean[:3, 3] = stack[:, :3, 3].mean(axis=0)
    return mean


# ---------------------------------------------------------------------------------------------
# Rig estimation: a tower is rigid when every camera keeps its pose relative to the master.


class RigMode(str, Enum):
    """How an export uses rig positions."""

    AUTO = "auto"  # a rig when the positions are rigid within tolerance, else one frame per image
    ON = "on"  # always a rig (offsets averaged), error if frames carry no rig positions
    OFF = "off"  # one trivial frame per image


@dataclass(frozen=True)
class RigEstimate:
    """A tower: reference camera, ``sensor_from_rig`` per camera (rig frame = reference camera)
    and ``rig_from_world`` per position, with how far the input deviates from that rigid model."""

    reference_camera: str
    sensor_from_rig: dict[str, np.ndarray]  # camera_id -> [4, 4]
    rig_from_world: dict[int, np.ndarray]  # rig_position_id -> [4, 4]
    max_rotation_error_rad: float
    max_translation_error: float  # camera centres, scene units


def natural_key(text: str) -> tuple[int, int | str]:
    """Sort key putting numeric ids in numeric order ("2" < "10") before other strings."""
    return (0, int(text)) if text.isdigit() else (1, text)


def rig_structure_problem(frames: Sequence[Frame]) -> str | None:
    """Why ``frames`` cannot form one rig (``None`` if they can)."""
    if not frames:
        return "no frames"
    if any(f.camera_id is None or f.rig_position_id is None for f in frames):
        return "not every frame has camera_id and rig_position_id"
    intrinsics: dict[str, set[Camera]] = defaultdict(set)
    seen: set[tuple[int, str]] = set()
    for frame in frames:
        intrinsics[frame.camera_id].add(frame.camera)  # type: ignore[index]
        key = (frame.rig_position_id, frame.camera_id)
        if key in seen:
            return f"camera {frame.camera_id} appears twice at rig position {frame.rig_position_id}"
        seen.add(key)  # type: ignore[arg-type]
    varying = sorted((c for c, s in intrinsics.items() if len(s) > 1), key=natural_key)
    if varying:
        return f"camera {varying[0]} has more than one set of intrinsics"
    if len(intrinsics) < 2:
        return "only one camera"
    return None


def choose_reference_camera(frames: Sequence[Frame]) -> str:
    """The master camera: a catalog rig's master when present, else the camera seen at the most
    positions (first in natural order on ties)."""
    counts = Counter(f.camera_id for f in frames if f.camera_id is not None)
    for rig in catalog.RIGS.values():
        if rig.master_sensor in counts:
            return rig.master_sensor
    return min(counts, key=lambda c: (-counts[c], natural_key(c)))


def estimate_rig(frames: Sequence[Frame], reference_camera: str | None = None) -> RigEstimate:
    """Fit a rigid tower to posed frames (see :func:`rig_structure_problem` for requirements).

    ``sensor_from_rig`` of camera c is the mean over positions of ``cam_c_from_world @
    world_from_ref``; ``rig_from_world`` is the reference image's ``cam_from_world`` (or, where
    the reference is missing, derived from the first camera present).
    """
    problem = rig_structure_problem(frames)
    if problem:
        raise UnsupportedError(None, f"cannot build a rig: {problem}")
    reference = reference_camera or choose_reference_camera(frames)
    by_position: dict[int, dict[str, Frame]] = defaultdict(dict)
    for frame in frames:
        by_position[frame.rig_position_id][frame.camera_id] = frame  # type: ignore[index]
    if all(reference not in group for group in by_position.values()):
        raise UnsupportedError(None, f"cannot build a rig: reference camera {reference} never seen")
    samples: dict[str, list[np.ndarray]] = defaultdict(list)
    for group in by_position.values():
        if reference not in group:
            continue
        world_from_ref = group[reference].world_from_cam
        for camera_id, frame in group.items():
            samples[camera_id].append(cameras.cam_from_world(frame.world_from_cam) @ world_from_ref)
    lonely = sorted(
        {f.camera_id for f in frames} - set(samples),  # type: ignore[arg-type]
        key=natural_key,
    )
    if lonely:
        raise UnsupportedError(
            None, f"cannot build a rig: camera {lonely[0]} is never seen with camera {reference}"
        )
    sensor_from_rig = {c: _mean_rigid(s) for c, s in samples.items()}
    sensor_from_rig[reference] = np.eye(4)
    rig_from_world: dict[int, np.ndarray] = {}
    worst_rotation = worst_translation = 0.0
    for position, group in by_position.items():
        anchor = reference if reference in group else min(group, key=natural_key)
        rig_from_world[position] = cameras.invert_rigid(sensor_from_rig[anchor]) @ (
            cameras.cam_from_world(group[anchor].world_from_cam)
        )
        for camera_id, frame in group.items():
            predicted = cameras.world_from_cam(
                sensor_from_rig[camera_id] @ rig_from_world[position]
            )
            worst_rotation = max(
                worst_rotation, rotation_angle_rad(predicted, frame.world_from_cam)
            )
            worst_translation = max(
                worst_translation,
                float(np.linalg.norm(predicted[:3, 3] - frame.world_from_cam[:3, 3])),
            )
    return RigEstimate(
        reference, sensor_from_rig, rig_from_world, worst_rotation, worst_translation
    )


# ---------------------------------------------------------------------------------------------
# Sidecar: what COLMAP has no field for.


class _SidecarModel(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class SidecarImage(_SidecarModel):
    camera_id: str | None = None
    rig_position_id: int | None = None
    sensor_id: str | None = None
    exposure: float | None = None
    color_space: str | None = None
    fisheye_crop_radius: float | None = None
    mask_path: str | None = None
    depth_path: str | None = None


class Sidecar(_SidecarModel):
    """``eyeful_colmap.json``: written beside an exported model, read back on import."""

    format_version: int = SIDECAR_VERSION
    world: WorldUp = WorldUp.Z_UP
    capture: str | None = None
    applied_transform: list[list[float]] | None = None
    reference_camera: str | None = None
    images: dict[str, SidecarImage] = Field(default_factory=dict)
    splits: dict[str, list[str]] = Field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Export: scene -> reconstruction.


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote (or would write)."""

    num_images: int
    num_cameras: int
    num_frames: int
    rig: RigEstimate | None
    rig_note: str  # why there is (no) rig


def _image_name(path: str) -> str:
    """COLMAP image name for a ``file_path`` (relative, posix, inside the data folder)."""
    pure = PurePosixPath(path.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise UnsupportedError(
            path, "image path must be relative and inside the data folder for a COLMAP model"
        )
    return str(pure)


def scene_to_reconstruction(
    scene: Scene,
    *,
    rig: RigMode | str = RigMode.AUTO,
    rig_tolerance: float = RIG_TOLERANCE,
    reference_camera: str | None = None,
) -> tuple[pycolmap.Reconstruction, ExportReport]:
    """A posed pycolmap reconstruction (no points) of ``scene`` in the scene's own world.

    Cameras are shared by images with equal intrinsics (and equal ``camera_id``); with a rig,
    one camera per ``camera_id``. Image ids follow the scene's frame order from 1.
    """
    rig = RigMode(rig)
    frames = scene.frames
    names = [_image_name(f.image_path) for f in frames]
    duplicates = [n for n, count in Counter(names).items() if count > 1]
    if duplicates:
        raise InputFormatError(scene.name, f"image {duplicates[0]} appears more than once")
    estimate: RigEstimate | None = None
    note = "rig: off"
    if rig is not RigMode.OFF:
        problem = rig_structure_problem(frames)
        if problem and rig is RigMode.ON:
            raise UnsupportedError(scene.name, f"cannot build a rig: {problem}")
        if problem:
            note = f"no rig ({problem})"
        else:
            estimate = estimate_rig(frames, reference_camera)
            error = max(estimate.max_rotation_error_rad, estimate.max_translation_error)
            if rig is RigMode.AUTO and error > rig_tolerance:
                note = (
                    f"no rig (positions not rigid: {math.degrees(estimate.max_rotation_error_rad):.3g}"
                    f" deg, {estimate.max_translation_error:.3g} units > {rig_tolerance:g})"
                )
                log.warning("%s: %s; writing one frame per image", scene.name or "scene", note)
                estimate = None
            else:
                note = f"rig of {len(estimate.sensor_from_rig)} cameras, reference {estimate.reference_camera}"
    reconstruction = pycolmap.Reconstruction()
    camera_ids = _add_cameras(reconstruction, frames, with_rig=estimate is not None)
    if estimate is None:
        for index, (frame, name) in enumerate(zip(frames, names, strict=True), start=1):
            image = pycolmap.Image(name=name, camera_id=camera_ids[index - 1], image_id=index)
            cam_from_world = cameras.cam_from_world(frame.world_from_cam)
            reconstruction.add_image_with_trivial_frame(image, rigid3d_from_matrix(cam_from_world))
    else:
        _add_rig(reconstruction, frames, names, camera_ids, estimate)
    report = ExportReport(
        num_images=len(frames),
        num_cameras=reconstruction.num_cameras(),
        num_frames=reconstruction.num_frames(),
        rig=estimate,
        rig_note=note,
    )
    return reconstruction, report


def _add_cameras(
    reconstruction: pycolmap.Reconstruction, frames: Sequence[Frame], *, with_rig: bool
) -> list[int]:
    """Add one pycolmap camera per distinct (camera_id, intrinsics); return each frame's id.

    Without a rig every camera also gets its trivial rig (rig_id = camera_id)."""
    ids: dict[tuple[str | None, Camera], int] = {}
    keys = [(f.camera_id, f.camera) for f in frames]
    order = sorted(set(keys), key=lambda k: (natural_key(k[0] or ""), keys.index(k)))
    for colmap_id, key in enumerate(order, start=1):
        model_name, params = colmap_camera_params(key[1])
        camera = pycolmap.Camera(
            camera_id=colmap_id,
            model=model_name,
            width=key[1].width_px,
            height=key[1].height_px,
            params=params,
        )
        if with_rig:
            reconstruction.add_camera(camera)
        else:
            reconstruction.add_camera_with_trivial_rig(camera)
        ids[key] = colmap_id
    return [ids[key] for key in keys]


def _add_rig(
    reconstruction: pycolmap.Reconstruction,
    frames: Sequence[Frame],
    names: Sequence[str],
    camera_ids: Sequence[int],
    estimate: RigEstimate,
) -> None:
    sensor_of = {f.camera_id: camera_ids[i] for i, f in enumerate(frames)}
    tower = pycolmap.Rig(rig_id=TOWER_RIG_ID)
    tower.add_ref_sensor(reconstruction.camera(sensor_of[estimate.reference_camera]).sensor_id)
    for camera_id in sorted(estimate.sensor_from_rig, key=natural_key):
        if camera_id == estimate.reference_camera:
            continue
        tower.add_sensor(
            reconstruction.camera(sensor_of[camera_id]).sensor_id,
            rigid3d_from_matrix(estimate.sensor_from_rig[camera_id]),
        )
    reconstruction.add_rig(tower)
    positions = sorted(estimate.rig_from_world)
    frame_ids = {position: index for index, position in enumerate(positions, start=1)}
    members: dict[int, list[pycolmap.Image]] = defaultdict(list)
    for index, (frame, name) in enumerate(zip(frames, names, strict=True), start=1):
        frame_id = frame_ids[frame.rig_position_id]  # type: ignore[index]
        image = pycolmap.Image(
            name=name, camera_id=camera_ids[index - 1], image_id=index, frame_id=frame_id
        )
        members[frame_id].append(image)
    for position in positions:
        colmap_frame = pycolmap.Frame(
            frame_id=frame_ids[position],
            rig_id=TOWER_RIG_ID,
            rig_from_world=rigid3d_from_matrix(estimate.rig_from_world[position]),
        )
        for image in members[frame_ids[position]]:
            colmap_frame.add_data_id(image.data_id)
        reconstruction.add_frame(colmap_frame)
    for frame_id in sorted(members):
        for image in members[frame_id]:
            reconstruction.add_image(image)


def sidecar_for(
    scene: Scene, *, applied_transform: Any = None, reference: str | None = None
) -> Sidecar:
    """Our per-image extras keyed by COLMAP image name."""
    images = {
        _image_name(f.image_path): SidecarImage(
            camera_id=f.camera_id,
            rig_position_id=f.rig_position_id,
            sensor_id=f.sensor_id,
            exposure=f.exposure,
            color_space=f.color_space,
            fisheye_crop_radius=f.camera.fisheye_crop_radius_px,
            mask_path=f.mask_path,
            depth_path=f.depth_path,
        )
        for f in scene.frames
    }
    splits = {k: [_image_name(p) for p in v] for k, v in scene.splits.items()}
    return Sidecar(
        world=scene.world_up,
        capture=scene.name,
        applied_transform=applied_transform,
        reference_camera=reference,
        images=images,
        splits=splits,
    )


@contextlib.contextmanager
def _atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temp folder beside ``path``; on success it replaces ``path`` (old one removed).

    Readers see either the old model or the complete new one, never a mix of the two.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@dataclass(frozen=True)
class ExportResult:
    model_dir: Path
    report: ExportReport


def export_colmap(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    binary: bool = True,
    rig: RigMode | str = RigMode.AUTO,
    rig_tolerance: float = RIG_TOLERANCE,
    reference_camera: str | None = None,
) -> ExportResult:
    """Export a transforms.json dataset to a COLMAP model in ``out_dir/sparse/0``.

    The model is in the transforms' z-up world; image names are the ``file_path`` values, so
    COLMAP's ``--image_path`` is the data folder. Nothing is written if anything is refused.
    """
    data_path = Path(data_dir)
    transforms_path = data_path if data_path.suffix == ".json" else data_path / "transforms.json"
    parsed = transforms.read_transforms(transforms_path)
    scene = transforms.transforms_to_scene(parsed, transforms_path)
    try:
        reconstruction, report = scene_to_reconstruction(
            scene, rig=rig, rig_tolerance=rig_tolerance, reference_camera=reference_camera
        )
        sidecar = sidecar_for(
            scene,
            applied_transform=parsed.applied_transform,
            reference=report.rig.reference_camera if report.rig else None,
        )
    except (UnsupportedError, InputFormatError) as error:
        raise type(error)(transforms_path, error.reason) from error
    model_dir = Path(out_dir) / "sparse" / "0"
    with _atomic_dir(model_dir) as tmp:
        if binary:
            reconstruction.write_binary(str(tmp))
        else:
            reconstruction.write_text(str(tmp))
        atomic_write_text(
            tmp / SIDECAR_NAME, sidecar.model_dump_json(indent=2, exclude_none=True) + "\n"
        )
    return ExportResult(model_dir, report)


# ---------------------------------------------------------------------------------------------
# Import: reconstruction -> scene.


def find_model_dir(sparse_dir: str | Path) -> Path:
    """The folder holding a COLMAP model: ``sparse_dir`` itself, or its ``0`` (or only) subfolder."""
    root = Path(sparse_dir)
    if not root.is_dir():
        raise MissingFileError(root, "COLMAP model folder not found")

    def is_model(path: Path) -> bool:
        return any(all((path / name).is_file() for name in names) for names in _MODEL_FILES)

    if is_model(root):
        return root
    models = sorted(
        (p for p in root.iterdir() if p.is_dir() and is_model(p)), key=lambda p: natural_key(p.name)
    )
    if not models:
        raise MissingFileError(
            root, "no COLMAP model (cameras.bin/images.bin or .txt) here or in a subfolder"
        )
    if len(models) > 1:
        log.warning("%s holds %d models; reading %s", root, len(models), models[0].name)
    return models[0]


def read_reconstruction(sparse_dir: str | Path) -> tuple[pycolmap.Reconstruction, Path]:
    """pycolmap's reader on the model folder; errors name the folder."""
    model_dir = find_model_dir(sparse_dir)
    try:
        return pycolmap.Reconstruction(str(model_dir)), model_dir
    except Exception as error:  # pycolmap raises plain RuntimeError/ValueError on bad files
        raise InputFormatError(model_dir, f"pycolmap cannot read the model ({error})") from error


def read_sidecar(model_dir: Path) -> Sidecar | None:
    path = model_dir / SIDECAR_NAME
    if not path.is_file():
        return None
    try:
        return Sidecar.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValidationError, UnicodeDecodeError) as error:
        raise InputFormatError(
            path, f"not a valid {SIDECAR_NAME} ({str(error).splitlines()[0]})"
        ) from error


def _unify_models(frames: list[Frame], where: Path | None) -> list[Frame]:
    """One camera model per scene: PINHOLE cameras become OPENCV when any camera is OPENCV."""
    models = {f.camera.model for f in frames}
    if models == {CameraModel.PINHOLE, CameraModel.OPENCV}:
        return [
            f.with_(camera=replace(f.camera, model=CameraModel.OPENCV))
            if f.camera.model is CameraModel.PINHOLE
            else f
            for f in frames
        ]
    if len(models) > 1:
        names = ", ".join(sorted(m.value for m in models))
        raise UnsupportedError(where, f"mixed fisheye and pinhole cameras ({names})")
    return frames


def _folder_camera_ids(
    reconstruction: pycolmap.Reconstruction, image_ids: Sequence[int]
) -> dict[int, str]:
    """EyefulTower-style camera names: the image folder, when each COLMAP camera has one folder."""
    folders: dict[int, set[str]] = defaultdict(set)
    for image_id in image_ids:
        image = reconstruction.image(image_id)
        parent = str(PurePosixPath(image.name).parent)
        folders[image.camera_id].add(parent)
    names = {cid: next(iter(f)) for cid, f in folders.items() if len(f) == 1}
    if (
        len(names) == len(folders)
        and len(set(names.values())) == len(names)
        and "." not in names.values()
    ):
        return names
    return {cid: str(cid) for cid in folders}


def reconstruction_to_scene(
    reconstruction: pycolmap.Reconstruction,
    *,
    image_path_of: Any = None,
    sidecar: Sidecar | None = None,
    name: str | None = None,
    where: Path | None = None,
) -> Scene:
    """Canonical frames for the registered images (in image id order, which an export keeps).

    ``image_path_of(name) -> str`` maps a COLMAP image name to the ``image_path`` to record
    (default: the name). With a ``sidecar`` the world is z-up and our extras come back;
    otherwise the world is COLMAP's, ``camera_id`` is the image folder (or COLMAP camera id),
    ``rig_position_id`` the COLMAP frame id where that frame holds more than one image, and
    there are no splits (:func:`import_reconstruction` fills them).
    """
    path_of = image_path_of or (lambda image_name: image_name)
    registered = sorted(reconstruction.reg_image_ids())
    if not registered:
        raise InputFormatError(where, "the COLMAP model has no registered images")
    intrinsics: dict[int, Camera] = {}
    for camera_id, colmap_camera in reconstruction.cameras.items():
        try:
            intrinsics[camera_id] = camera_from_colmap(colmap_camera)
        except (UnsupportedError, InputFormatError) as error:
            raise type(error)(where, error.reason) from error
    folder_ids = _folder_camera_ids(reconstruction, registered)
    extras = sidecar.images if sidecar else {}
    frames: list[Frame] = []
    for image_id in registered:
        image = reconstruction.image(image_id)
        colmap_frame = reconstruction.frame(image.frame_id)
        extra = extras.get(image.name, SidecarImage())
        camera = intrinsics[image.camera_id]
        if camera.model is CameraModel.OPENCV_FISHEYE and extra.fisheye_crop_radius is not None:
            camera = replace(camera, fisheye_crop_radius_px=extra.fisheye_crop_radius)
        position = extra.rig_position_id
        if position is None and sidecar is None and colmap_frame.num_data_ids() > 1:
            position = int(image.frame_id)
        frames.append(
            Frame(
                image_path=path_of(image.name),
                camera=camera,
                world_from_cam=cameras.world_from_cam(matrix_from_rigid3d(image.cam_from_world())),
                camera_id=extra.camera_id if sidecar else folder_ids[image.camera_id],
                rig_position_id=position,
                sensor_id=extra.sensor_id,
                mask_path=extra.mask_path,
                depth_path=extra.depth_path,
                color_space=extra.color_space,
                exposure=extra.exposure,
            )
        )
    frames = _unify_models(frames, where)
    splits: dict[str, list[str]] = {}
    if sidecar is not None:
        kept = {reconstruction.image(i).name for i in registered}
        splits = {
            split: [path_of(n) for n in names if n in kept]
            for split, names in sidecar.splits.items()
        }
    return Scene(
        frames=tuple(frames),
        world_up=sidecar.world if sidecar else WorldUp.COLMAP,
        name=(sidecar.capture if sidecar else None) or name,
        splits=splits,
    )


class ImageMode(str, Enum):
    """Where the imported transforms.json finds its images."""

    REFERENCE = "reference"  # file paths relative to the output folder, pointing at --images
    SYMLINK = "symlink"  # links under out/images/
    COPY = "copy"  # copies under out/images/


@dataclass(frozen=True)
class ImportResult:
    transforms_path: Path
    scene: Scene
    num_unregistered: int
    model_dir: Path
    ply_path: Path | None = None


def image_paths(
    names: Sequence[str], images_dir: Path, out_dir: Path, mode: ImageMode | str
) -> dict[str, str]:
    """name -> ``file_path`` to record (relative to ``out_dir``); checks every image exists."""
    mode = ImageMode(mode)
    missing = [n for n in names if not (images_dir / n).is_file()]
    if missing:
        raise MissingFileError(
            images_dir / missing[0], f"image not found ({len(missing)} of {len(names)} missing)"
        )
    if mode is ImageMode.REFERENCE:
        base = out_dir.resolve()
        return {
            n: Path(os.path.relpath((images_dir / n).resolve(), base)).as_posix() for n in names
        }
    return {n: f"images/{_image_name(n)}" for n in names}


def place_images(
    paths: dict[str, str], images_dir: Path, out_dir: Path, mode: ImageMode | str
) -> None:
    """Copy or link each image to ``out_dir / paths[name]`` (nothing to do for REFERENCE)."""
    mode = ImageMode(mode)
    if mode is ImageMode.REFERENCE:
        return
    for name, relative in paths.items():
        source = (images_dir / name).resolve()
        with atomic_path(out_dir / relative) as tmp:
            if mode is ImageMode.COPY:
                shutil.copyfile(source, tmp)
            else:
                tmp.unlink()
                tmp.symlink_to(source)


def write_points_ply(
    reconstruction: pycolmap.Reconstruction, output_from_source: np.ndarray, path: Path
) -> Path | None:
    """The sparse points in the output world as PLY (for splatting initialisation), if any."""
    if reconstruction.num_points3D() == 0:
        return None
    moved = pycolmap.Reconstruction(reconstruction)
    moved.transform(pycolmap.Sim3d(np.asarray(output_from_source, dtype=np.float64)[:3, :4]))
    with atomic_path(path) as tmp:
        moved.export_PLY(str(tmp))
    return path


def import_reconstruction(
    reconstruction: pycolmap.Reconstruction,
    images_dir: str | Path,
    out_dir: str | Path,
    *,
    sidecar: Sidecar | None = None,
    image_mode: ImageMode | str = ImageMode.REFERENCE,
    name: str | None = None,
    where: Path | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[Path, Scene, Path | None]:
    """Write ``out_dir/transforms.json`` (and ``sparse_pc.ply`` when the model has points).

    Everything is checked (cameras, images present) before the first file is written.
    """
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    if not images_dir.is_dir():
        raise MissingFileError(images_dir, "images folder not found")
    names = sorted(reconstruction.image(i).name for i in reconstruction.reg_image_ids())
    paths = image_paths(names, images_dir, out_dir, image_mode)
    scene = reconstruction_to_scene(
        reconstruction, image_path_of=paths.__getitem__, sidecar=sidecar, name=name, where=where
    )
    transforms_file = transforms.scene_to_transforms(scene, extra=extra)
    if sidecar is None:  # the catalog's held-out camera for EyefulTower names, else every 8th
        transforms_file, rule = split.official_split(transforms_file, None)
        log.info("splits: %s", rule)
    if sidecar is not None and sidecar.applied_transform is not None:
        # the same z-up world as the exported transforms: keep its map back to the capture
        transforms_file = transforms_file.model_copy(
            update={"applied_transform": sidecar.applied_transform}
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    place_images(paths, images_dir, out_dir, image_mode)
    ply_path = write_points_ply(
        reconstruction, cameras.output_world_from_source(scene.world_up), out_dir / "sparse_pc.ply"
    )
    if ply_path is not None:
        transforms_file = transforms_file.model_copy(update={"ply_file_path": ply_path.name})
    path = transforms.write_transforms(out_dir / "transforms.json", transforms_file)
    return path, scene, ply_path


def import_colmap(
    sparse_dir: str | Path,
    images_dir: str | Path,
    out_dir: str | Path,
    *,
    image_mode: ImageMode | str = ImageMode.REFERENCE,
) -> ImportResult:
    """A COLMAP model (ours, EyefulTower's ``colmap/sparse``, or any) -> ``out_dir/transforms.json``."""
    reconstruction, model_dir = read_reconstruction(sparse_dir)
    sidecar = read_sidecar(model_dir)
    if Path(out_dir).resolve() == model_dir.resolve():
        raise UsageError(out_dir, "--out must differ from the COLMAP model folder")
    path, scene, ply = import_reconstruction(
        reconstruction,
        images_dir,
        out_dir,
        sidecar=sidecar,
        image_mode=image_mode,
        name=Path(sparse_dir).resolve().parent.name,
        where=model_dir,
        extra={"source": "colmap"},
    )
    unregistered = reconstruction.num_images() - reconstruction.num_reg_images()
    if unregistered:
        log.warning("%s: %d images have no pose and were left out", model_dir, unregistered)
    return ImportResult(path, scene, unregistered, model_dir, ply)
