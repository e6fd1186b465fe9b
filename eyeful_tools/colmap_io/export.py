"""Scene -> pycolmap reconstruction (rigs included) and ``eyeful export colmap``."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pycolmap
from pydantic import BaseModel, ConfigDict, Field

from eyeful_tools import cameras, transforms
from eyeful_tools.cameras import Camera, Frame, Scene, WorldUp, natural_key
from eyeful_tools.colmap_io.models import (
    FisheyeExport,
    colmap_camera_params,
    rigid3d_from_matrix,
    without_fisheye_tangential,
)
from eyeful_tools.colmap_io.rig import (
    RIG_TOLERANCE,
    RigEstimate,
    RigMode,
    estimate_rig,
    rig_structure_problem,
)
from eyeful_tools.errors import InputFormatError, UnsupportedError
from eyeful_tools.fsio import atomic_dir, atomic_write_text, check_output_folder
from eyeful_tools.transforms import EyefulFrameExtras

log = logging.getLogger(__name__)

SIDECAR_NAME = "eyeful_colmap.json"
SIDECAR_VERSION = 1
#: the tower's rig id in exported models (per-camera trivial rigs take their camera's id)
TOWER_RIG_ID = 1

# ---------------------------------------------------------------------------------------------
# Sidecar: what COLMAP has no field for.


class _SidecarModel(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class SidecarImage(EyefulFrameExtras):
    """Per image: the ``eyeful`` extras of transforms.json, plus mask and depth paths."""

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
    #: with ``FisheyeExport.OPENCV``: images whose camera lost its p1/p2, and the largest pixel
    #: shift that caused inside a valid image circle
    fisheye_approximated: int = 0
    fisheye_max_shift_px: float = 0.0


def image_name(path: str) -> str:
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
    fisheye: FisheyeExport | str = FisheyeExport.EXACT,
) -> tuple[pycolmap.Reconstruction, ExportReport]:
    """A posed pycolmap reconstruction (no points) of ``scene`` in the scene's own world.

    Cameras are shared by images with equal intrinsics (and equal ``camera_id``); with a rig,
    one camera per ``camera_id``. Image ids follow the scene's frame order from 1.
    ``fisheye=OPENCV`` writes every fisheye as OPENCV_FISHEYE, dropping p1/p2 (the report says
    how far that moves pixels); ``EXACT`` keeps them (THIN_PRISM_FISHEYE).
    """
    rig = RigMode(rig)
    frames = scene.frames
    approximated, max_shift_px = 0, 0.0
    if FisheyeExport(fisheye) is FisheyeExport.OPENCV:
        frames, approximated, max_shift_px = _drop_fisheye_tangential(frames)
    names = [image_name(f.image_path) for f in frames]
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
                note = (
                    f"rig of {len(estimate.sensor_from_rig)} cameras, reference "
                    f"{estimate.reference_camera} (max deviation "
                    f"{math.degrees(estimate.max_rotation_error_rad):.2g} deg, "
                    f"{estimate.max_translation_error:.2g} units)"
                )
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
        fisheye_approximated=approximated,
        fisheye_max_shift_px=max_shift_px,
    )
    return reconstruction, report


def _drop_fisheye_tangential(frames: Sequence[Frame]) -> tuple[tuple[Frame, ...], int, float]:
    """Frames whose fisheye cameras lost p1/p2; how many frames changed; the max shift."""
    approximations: dict[Camera, tuple[Camera, float]] = {}
    for frame in frames:
        if frame.camera not in approximations:
            approximations[frame.camera] = without_fisheye_tangential(frame.camera)
    changed = [f for f in frames if approximations[f.camera][0] is not f.camera]
    new_frames = tuple(dataclasses.replace(f, camera=approximations[f.camera][0]) for f in frames)
    max_shift_px = max((approximations[f.camera][1] for f in changed), default=0.0)
    return new_frames, len(changed), max_shift_px


def _add_cameras(
    reconstruction: pycolmap.Reconstruction, frames: Sequence[Frame], *, with_rig: bool
) -> list[int]:
    """Add one pycolmap camera per distinct (camera_id, intrinsics); return each frame's id.

    Without a rig every camera also gets its trivial rig (rig_id = camera_id)."""
    ids: dict[tuple[str | None, Camera], int] = {}
    keys = [(f.camera_id, f.camera) for f in frames]
    # first-appearance order within a camera_id (a stable sort); no keys.index scan per key
    order = sorted(dict.fromkeys(keys), key=lambda k: natural_key(k[0] or ""))
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
        image_name(f.image_path): SidecarImage(
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
    splits = {k: [image_name(p) for p in v] for k, v in scene.splits.items()}
    return Sidecar(
        world=scene.world_up,
        capture=scene.name,
        applied_transform=applied_transform,
        reference_camera=reference,
        images=images,
        splits=splits,
    )


def _input_files(scene: Scene, transforms_path: Path) -> list[Path]:
    """transforms.json and every image, mask and depth map it lists."""
    base = transforms_path.parent
    named = [(f.image_path, f.mask_path, f.depth_path) for f in scene.frames]
    return [transforms_path, *(base / name for names in named for name in names if name)]


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
    fisheye: FisheyeExport | str = FisheyeExport.EXACT,
    overwrite: bool = False,
) -> ExportResult:
    """Export a transforms.json dataset to a COLMAP model in ``out_dir/sparse/0``.

    The model is in the transforms' z-up world; image names are the ``file_path`` values, so
    COLMAP's ``--image_path`` is the data folder. Nothing is written if anything is refused: a
    model already at ``sparse/0`` (an EyefulTower ``colmap/`` download's reconstruction) is
    replaced only with ``overwrite``, and never when the folder holds the dataset's own files.
    """
    transforms_path = transforms.transforms_file(data_dir)
    parsed = transforms.read_transforms(transforms_path)
    scene = transforms.transforms_to_scene(parsed, transforms_path)
    model_dir = Path(out_dir) / "sparse" / "0"
    check_output_folder(model_dir, overwrite, inputs=_input_files(scene, transforms_path))
    try:
        reconstruction, report = scene_to_reconstruction(
            scene,
            rig=rig,
            rig_tolerance=rig_tolerance,
            reference_camera=reference_camera,
            fisheye=fisheye,
        )
        sidecar = sidecar_for(
            scene,
            applied_transform=parsed.applied_transform,
            reference=report.rig.reference_camera if report.rig else None,
        )
    except (UnsupportedError, InputFormatError) as error:
        raise type(error)(transforms_path, error.reason) from error
    with atomic_dir(model_dir) as tmp:
        if binary:
            reconstruction.write_binary(str(tmp))
        else:
            reconstruction.write_text(str(tmp))
        atomic_write_text(
            tmp / SIDECAR_NAME, sidecar.model_dump_json(indent=2, exclude_none=True) + "\n"
        )
    return ExportResult(model_dir, report)
