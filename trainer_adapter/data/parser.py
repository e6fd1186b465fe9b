"""Read a nerfstudio ``transforms.json`` into plain arrays once (gsplat's Parser), no torch.

What it mirrors from nerfstudio's ``nerfstudio-data`` dataparser (reference: eyeful.md §9):

* ``data`` is a folder holding ``transforms.json`` or an explicit ``transforms*.json`` file.
* Frames are sorted by resolved file name.
* ``downscale=N > 1`` reads ``<data>/images_N/<basename>`` (the subfolder is dropped) and masks
  from ``masks_N/<basename>``; cameras are rescaled to the size found in each image header, so
  sizes that are not exact fractions stay exact.
* Orientation ``up`` (mean camera up -> +z), centring ``poses`` (mean camera origin -> 0) or
  ``focus``, then auto-scale so that max |t| = 1, times ``scale_factor``. Computed over all
  frames, before splitting.
* Splits from ``{split}_filenames`` with nerfstudio's errors (a listed name that is not an
  image; a split missing while another is listed); otherwise the ``fraction`` rule (evenly spaced
  ceil(0.9 N) train images, the rest val and test).

Poses stay in the canonical convention (OpenCV camera axes, ``world_from_cam``); the geometry
comes from :mod:`eyeful_tools.cameras` and :mod:`eyeful_tools.transforms`.

``dataparser_transform`` [3, 4] and ``dataparser_scale`` map the transforms.json world (z-up,
metres) to the normalised world: ``p_norm = scale * (transform @ [p; 1])``. Unlike nerfstudio we
do not fold ``applied_transform`` into it; it is kept separately (``applied_transform``) and
written beside it, so ``transform @ applied_transform`` gives nerfstudio's composed value.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eyeful_tools import cameras
from eyeful_tools.cameras import Camera
from eyeful_tools.errors import InputFormatError, MissingFileError, SplitError, UsageError
from eyeful_tools.fsio import atomic_write_json
from eyeful_tools.imageio import image_size, is_exr
from eyeful_tools.transforms import read_transforms, transforms_to_scene

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
ORIENTATIONS = ("up", "none")
CENTERS = ("poses", "focus", "none")
#: nerfstudio's ``train_split_fraction`` default for the fallback ``fraction`` rule
TRAIN_SPLIT_FRACTION = 0.9


@dataclass(kw_only=True, eq=False)
class ParsedDataset:
    """Everything the loader and the trainer need, as arrays. Index i is one image.

    ``world_from_cam`` is [N, 4, 4] float64, OpenCV camera axes, in the normalised world.
    ``cameras`` are at the loaded (possibly downscaled) image size.
    """

    transforms_path: Path
    image_paths: list[Path]  # [N]
    cameras: list[Camera]  # [N]
    world_from_cam: np.ndarray  # [N, 4, 4] float64, normalised world
    dataparser_transform: np.ndarray  # [3, 4] transforms.json world -> normalised (before scale)
    dataparser_scale: float
    applied_transform: np.ndarray  # [3, 4] capture world -> transforms.json world (or identity)
    split_indices: dict[str, np.ndarray] = field(default_factory=dict)  # split -> [n] int64
    mask_paths: list[Path | None] = field(default_factory=list)  # [N]
    is_hdr: bool = False

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def has_masks(self) -> bool:
        return any(p is not None for p in self.mask_paths)

    def indices(self, split: str) -> np.ndarray:
        """Image indices of a split; nerfstudio's error when the file lists another split only."""
        if split not in SPLITS:
            raise UsageError(None, f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
        if split not in self.split_indices:
            raise SplitError(
                self.transforms_path,
                f"the dataset's list of filenames for split {split} is missing",
            )
        return self.split_indices[split]

    def normalised_from_transforms_world(self) -> np.ndarray:
        """4x4 similarity: transforms.json world (metres) -> normalised world."""
        matrix = np.eye(4)
        matrix[:3] = self.dataparser_transform
        matrix[:3] *= self.dataparser_scale
        return matrix

    def save_dataparser_transforms(self, path: str | Path) -> Path:
        """nerfstudio's ``dataparser_transforms.json`` (``transform`` 3x4, ``scale``), atomically.

        ``applied_transform`` is added so results can be mapped back to the capture's world.
        """
        path = Path(path)
        atomic_write_json(
            path,
            {
                "transform": self.dataparser_transform.tolist(),
                "scale": float(self.dataparser_scale),
                "applied_transform": self.applied_transform.tolist(),
            },
        )
        return path


def parse_dataset(
    data: str | Path,
    *,
    downscale: int = 1,
    orientation: str = "up",
    center: str = "poses",
    auto_scale: bool = True,
    scale_factor: float = 1.0,
) -> ParsedDataset:
    """Parse ``transforms.json`` (a folder or the file) into a :class:`ParsedDataset`."""
    if int(downscale) != downscale or downscale < 1:
        raise UsageError(None, f"downscale must be a positive integer, got {downscale}")
    if orientation not in ORIENTATIONS:
        raise UsageError(
            None, f"orientation {orientation!r} is not supported (use {' or '.join(ORIENTATIONS)})"
        )
    if center not in CENTERS:
        raise UsageError(None, f"center {center!r} is not supported (use {', '.join(CENTERS)})")
    downscale = int(downscale)
    transforms_path = Path(data)
    if transforms_path.is_dir():
        transforms_path = transforms_path / "transforms.json"
    transforms = read_transforms(transforms_path)  # raises MissingFileError when absent
    scene = transforms_to_scene(transforms, transforms_path)
    if not scene.frames:
        raise InputFormatError(transforms_path, "no frames")
    base = transforms_path.parent

    def image_file(file_path: str) -> Path:
        return _resolve(base, file_path, downscale, "images")

    # nerfstudio sorts frames by resolved file name
    frames = sorted(scene.frames, key=lambda f: str(image_file(f.image_path)))
    image_paths = [image_file(f.image_path) for f in frames]
    missing = [p for p in image_paths if not p.is_file()]
    if missing:
        raise MissingFileError(
            missing[0], f"image listed in {transforms_path.name} not found ({len(missing)} missing)"
        )
    hdr_flags = {is_exr(p) for p in image_paths}
    if len(hdr_flags) > 1:
        raise InputFormatError(transforms_path, "mixes EXR and 8-bit images; use one resolution")

    mask_paths: list[Path | None] = [
        None if f.mask_path is None else _resolve(base, f.mask_path, downscale, "masks")
        for f in frames
    ]
    if any(p is None for p in mask_paths) and any(p is not None for p in mask_paths):
        raise InputFormatError(transforms_path, "some frames have mask_path and others do not")
    for mask in mask_paths:
        if mask is not None and not mask.is_file():
            raise MissingFileError(mask, f"mask listed in {transforms_path.name} not found")

    frame_cameras = [f.camera for f in frames]
    if downscale > 1:
        frame_cameras = [
            cameras.rescale_camera(camera, *image_size(path))
            for camera, path in zip(frame_cameras, image_paths, strict=True)
        ]
    for camera in frame_cameras:
        if camera.model is cameras.CameraModel.EQUIRECTANGULAR:
            raise InputFormatError(transforms_path, "EQUIRECTANGULAR cameras are not supported")

    world_from_cam = np.stack([f.world_from_cam for f in frames])  # [N, 4, 4]
    transform = orient_and_center(world_from_cam, orientation=orientation, center=center)
    oriented = _apply(transform, world_from_cam)
    scale = 1.0
    if auto_scale:
        largest = float(np.max(np.abs(oriented[:, :3, 3])))
        scale = 1.0 / largest if largest > 0 else 1.0
    scale *= float(scale_factor)
    oriented[:, :3, 3] *= scale

    applied = (
        np.asarray(transforms.applied_transform, dtype=np.float64)
        if transforms.applied_transform is not None
        else np.eye(4)[:3]
    )
    split_indices = split_indices_of(
        transforms_path, scene.splits, [str(p) for p in image_paths], downscale
    )
    return ParsedDataset(
        transforms_path=transforms_path,
        image_paths=image_paths,
        cameras=frame_cameras,
        world_from_cam=oriented,
        dataparser_transform=transform,
        dataparser_scale=scale,
        applied_transform=applied,
        split_indices=split_indices,
        mask_paths=mask_paths,
        is_hdr=hdr_flags == {True},
    )


def _resolve(base: Path, file_path: str, downscale: int, folder: str) -> Path:
    """nerfstudio's ``_get_fname``: ``<base>/<folder>_N/<basename>`` when downscaled."""
    if downscale > 1:
        return (base / f"{folder}_{downscale}" / Path(file_path).name).resolve()
    path = Path(file_path)
    return path if path.is_absolute() else (base / path).resolve()


def _apply(transform: np.ndarray, world_from_cam: np.ndarray) -> np.ndarray:
    """Left-multiply [N, 4, 4] poses by a [3, 4] world transform."""
    matrix = np.eye(4)
    matrix[:3] = transform
    return matrix @ world_from_cam


def orient_and_center(world_from_cam: np.ndarray, *, orientation: str, center: str) -> np.ndarray:
    """nerfstudio's ``auto_orient_and_center_poses`` for methods up/none -> [3, 4] transform.

    ``up``: the mean camera up vector is rotated onto +z. nerfstudio averages the +y column of
    OpenGL camera-to-world matrices, so we take that column from the OpenGL view of our poses.
    """
    origins = world_from_cam[:, :3, 3]  # [N, 3]
    mean_origin = origins.mean(axis=0)
    if center == "poses":
        translation = mean_origin
    elif center == "focus":
        translation = focus_of_attention(world_from_cam, mean_origin)
    else:
        translation = np.zeros(3)
    if orientation == "up":
        opengl = cameras.opengl_from_opencv_pose(world_from_cam)
        up = opengl[:, :3, 1].mean(axis=0)
        rotation = rotation_between(up, np.array([0.0, 0.0, 1.0]))
    else:
        rotation = np.eye(3)
    return np.concatenate([rotation, (rotation @ -translation)[:, None]], axis=1)


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rodrigues rotation taking direction ``a`` onto ``b`` (nerfstudio's rotation_matrix_between)."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    axis = np.cross(a, b)
    if np.sum(np.abs(axis)) < 1e-6:  # parallel or opposite: any perpendicular axis
        helper = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 1e-6 else np.array([0.0, 1.0, 0.0])
        axis = np.cross(a, helper)
    axis = axis / np.linalg.norm(axis)
    skew = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    theta = math.acos(float(np.clip(np.dot(a, b), -1.0, 1.0)))
    return np.eye(3) + math.sin(theta) * skew + (1 - math.cos(theta)) * (skew @ skew)


def focus_of_attention(world_from_cam: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """The point nearest to the cameras' optical axes that face it (nerfstudio's algorithm).

    The optical axis is the +z column of an OpenCV ``world_from_cam``.
    """
    directions = world_from_cam[:, :3, 2]  # [N, 3] unit forward
    origins = world_from_cam[:, :3, 3]  # [N, 3]
    focus = np.asarray(initial, dtype=np.float64)
    active = np.sum(directions * (focus - origins), axis=-1) > 0
    while active.sum() > 1:
        directions, origins = directions[active], origins[active]
        projector = np.eye(3) - directions[:, :, None] * directions[:, None, :]  # [n, 3, 3]
        mt_m = np.swapaxes(projector, -1, -2) @ projector
        focus = np.linalg.inv(mt_m.mean(0)) @ (mt_m @ origins[:, :, None]).mean(0)[:, 0]
        active = np.sum(directions * (focus - origins), axis=-1) > 0
        if active.all():
            break
    return focus


def split_indices_of(
    transforms_path: Path,
    splits: dict[str, list[str]] | object,
    image_names: list[str],
    downscale: int,
) -> dict[str, np.ndarray]:
    """Split -> sorted image indices, from ``*_filenames`` or nerfstudio's fraction rule.

    Splits absent from a file that lists others are left out; :meth:`ParsedDataset.indices`
    raises nerfstudio's error for them when asked.
    """
    splits = dict(splits)  # type: ignore[call-overload]
    if not splits:
        count = len(image_names)
        train_count = math.ceil(count * TRAIN_SPLIT_FRACTION)
        train = np.linspace(0, count - 1, train_count, dtype=int)
        rest = np.setdiff1d(np.arange(count), train)
        return {"train": train.astype(np.int64), "val": rest.copy(), "test": rest.copy()}
    position = {name: i for i, name in enumerate(image_names)}
    base = transforms_path.parent
    result = {}
    for split, names in splits.items():
        if split not in SPLITS:
            continue
        resolved = {str(_resolve(base, name, downscale, "images")) for name in names}
        unmatched = sorted(resolved - position.keys())
        if unmatched:
            raise SplitError(
                transforms_path,
                f"some filenames for split {split} were not found: "
                f"{', '.join(unmatched[:3])}{' ...' if len(unmatched) > 3 else ''}",
            )
        result[split] = np.array(sorted(position[n] for n in resolved), dtype=np.int64)
    return result
