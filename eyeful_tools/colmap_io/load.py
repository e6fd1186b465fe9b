"""COLMAP model -> scene -> transforms.json (``eyeful import colmap``, and the SfM import's last step)."""

from __future__ import annotations

import logging
import os
import shutil
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pycolmap
from pydantic import ValidationError

from eyeful_tools import cameras, split, transforms
from eyeful_tools.cameras import Camera, CameraModel, Frame, Scene, WorldUp, natural_key
from eyeful_tools.colmap_io.binary_check import check_binary_model
from eyeful_tools.colmap_io.export import SIDECAR_NAME, Sidecar, SidecarImage, image_name
from eyeful_tools.colmap_io.models import camera_from_colmap, matrix_from_rigid3d
from eyeful_tools.errors import (
    InputFormatError,
    MissingFileError,
    UnsupportedError,
    UsageError,
    field_error,
)
from eyeful_tools.fsio import (
    atomic_dir,
    atomic_path,
    check_output_folder,
    refuse_overlap,
    require_free_space,
)

log = logging.getLogger(__name__)

#: COLMAP model files, in either format; a folder holding one of these sets is a model
MODEL_FILES = (("cameras.bin", "images.bin"), ("cameras.txt", "images.txt"))

# ---------------------------------------------------------------------------------------------
# Import: reconstruction -> scene.


def find_model_dir(sparse_dir: str | Path) -> Path:
    """The folder holding a COLMAP model: ``sparse_dir`` itself, or its ``0`` (or only) subfolder."""
    root = Path(sparse_dir)
    if not root.is_dir():
        raise MissingFileError(root, "COLMAP model folder not found")

    def is_model(path: Path) -> bool:
        return any(all((path / name).is_file() for name in names) for names in MODEL_FILES)

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
    """pycolmap's reader on the model folder; errors name the folder.

    pycolmap loads some broken models without complaint (an image whose camera line it skipped,
    a name that is not UTF-8) and raises only when they are used, so every registered image's
    name, camera and frame are looked up here, where the error can still name the model.
    """
    model_dir = find_model_dir(sparse_dir)
    check_binary_model(model_dir)  # pycolmap loops for minutes on a damaged binary file
    try:
        reconstruction = pycolmap.Reconstruction(str(model_dir))
        for image_id in reconstruction.reg_image_ids():
            image = reconstruction.image(image_id)
            _ = image.name
            reconstruction.camera(image.camera_id)
            reconstruction.frame(image.frame_id)
    except Exception as error:  # pycolmap raises plain RuntimeError/ValueError on bad files
        reason = str(error).split("\n")[0]
        raise InputFormatError(model_dir, f"pycolmap cannot read the model ({reason})") from error
    return reconstruction, model_dir


def read_sidecar(model_dir: Path) -> Sidecar | None:
    path = model_dir / SIDECAR_NAME
    if not path.is_file():
        return None
    try:
        return Sidecar.model_validate_json(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise InputFormatError(path, f"not a valid {SIDECAR_NAME} ({error})") from error
    except ValidationError as error:
        raise field_error(error, path, f"not a valid {SIDECAR_NAME}: ") from error


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
    models = {f.camera.model for f in frames}
    if cameras.common_camera_model(models) is None:  # refused by the writer too; say where
        names = ", ".join(sorted(m.value for m in models))
        raise UnsupportedError(where, f"mixed fisheye and pinhole cameras ({names})")
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
    return {n: f"images/{image_name(n)}" for n in names}


def place_images(
    paths: dict[str, str], images_dir: Path, out_dir: Path, mode: ImageMode | str
) -> None:
    """Copy or link each image to ``out_dir / paths[name]`` (nothing to do for REFERENCE).

    ``out_dir/images`` is built beside and swapped in whole, so a replaced dataset's images
    never mix with the new ones.
    """
    mode = ImageMode(mode)
    if mode is ImageMode.REFERENCE:
        return
    with atomic_dir(out_dir / "images") as build:
        for name, relative in paths.items():
            source = (images_dir / name).resolve()
            target = build / PurePosixPath(relative).relative_to("images")
            target.parent.mkdir(parents=True, exist_ok=True)
            if mode is ImageMode.COPY:
                shutil.copyfile(source, target)
            else:
                target.symlink_to(source)


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
    if sidecar is None:  # no catalog capture: nerfstudio's every 8th image
        transforms_file, rule = split.official_split(transforms_file, None)
        transforms_file.eyeful = {**(transforms_file.eyeful or {}), "split": rule}
        log.info("splits: %s", rule)
    if sidecar is not None and sidecar.applied_transform is not None:
        # the same z-up world as the exported transforms: keep its map back to the capture
        transforms_file = transforms_file.model_copy(
            update={"applied_transform": sidecar.applied_transform}
        )
    if ImageMode(image_mode) is ImageMode.COPY:
        needed = sum((images_dir / name).stat().st_size for name in paths)
        require_free_space(out_dir, needed, f"copying {len(paths)} images")
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
    overwrite: bool = False,
) -> ImportResult:
    """A COLMAP model (ours, EyefulTower's ``colmap/sparse``, or any) -> ``out_dir/transforms.json``.

    ``out_dir`` may hold the model and the images (nerfstudio's layout); a transforms.json,
    sparse_pc.ply or (when copying or linking) images/ already there is replaced only with
    ``overwrite``, and never when it is the model or the images themselves.
    """
    reconstruction, model_dir = read_reconstruction(sparse_dir)
    sidecar = read_sidecar(model_dir)
    if Path(out_dir).resolve() == model_dir.resolve():
        raise UsageError(out_dir, "--out must differ from the COLMAP model folder")
    outputs = ["transforms.json", "sparse_pc.ply"]
    if ImageMode(image_mode) is not ImageMode.REFERENCE:
        outputs.append("images")
    images = [
        Path(images_dir) / reconstruction.image(i).name for i in reconstruction.reg_image_ids()
    ]
    for name in outputs:  # an output that is, or holds, the model or an image: never replaced
        refuse_overlap(Path(out_dir) / name, [model_dir, *images])
    check_output_folder(Path(out_dir), overwrite, outputs, inputs=[])
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
