"""Read a nerfstudio ``transforms.json`` into plain arrays once (gsplat's Parser); numpy only,
except ``pca``'s eigenvectors (torch, to take nerfstudio's signs).

What it mirrors from nerfstudio's ``nerfstudio-data`` dataparser (reference: eyeful.md §9):

* ``data`` is a folder holding ``transforms.json`` or an explicit ``transforms*.json`` file.
* Frames are sorted by resolved file name.
* ``downscale=N > 1`` reads ``<data>/images_N/<basename>`` (the subfolder is dropped) and masks
  from ``masks_N/<basename>``; cameras are rescaled to the size found in each image header, so
  sizes that are not exact fractions stay exact.
* Orientation ``up`` (mean camera up -> +z), ``pca`` (principal axes of the camera origins),
  ``vertical`` (the direction most perpendicular to every camera's x axis -> +z) or ``none``;
  a file's ``orientation_override`` replaces the option. Centring ``poses`` (mean camera origin
  -> 0), ``focus`` or ``none``, then auto-scale so that max |t| = 1, times ``scale_factor``.
  Computed over all frames, before splitting.
* Splits from ``{split}_filenames`` with nerfstudio's errors (a listed name that is not an
  image; a split missing while another is listed). Only a file without any such list uses
  ``eval_mode``: ``fraction`` (evenly spaced ceil(0.9 N) train images, the rest val and test),
  ``filename`` (``train`` or ``eval`` in the basename), ``interval`` (every ``eval_interval``-th
  image, from 0, is val and test) or ``all`` (every image in every split).

Poses stay in the canonical convention (OpenCV camera axes, ``world_from_cam``); the geometry
comes from :mod:`eyeful_tools.cameras` and :mod:`eyeful_tools.transforms`.

``dataparser_transform`` [3, 4] and ``dataparser_scale`` map the transforms.json world (z-up,
metres) to the normalised world: ``p_norm = scale * (transform @ [p; 1])``. The run's
``dataparser_transforms.json`` holds nerfstudio's values instead, which start from the capture's
own world: ``transform @ applied_transform`` and ``scale * applied_scale`` (nerfstudio's
fallback ``applied_transform`` for old COLMAP-derived files included), so scripts written for
nerfstudio runs (mesh or point-cloud alignment) work unchanged on ours.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eyeful_tools import cameras
from eyeful_tools.cameras import Camera
from eyeful_tools.errors import InputFormatError, MissingFileError, SplitError, UsageError
from eyeful_tools.fsio import atomic_write_json
from eyeful_tools.imageio import image_size, is_exr
from eyeful_tools.transforms import (
    TransformsFile,
    read_transforms,
    transforms_file,
    transforms_to_scene,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
ORIENTATIONS = ("up", "pca", "vertical", "none")
CENTERS = ("poses", "focus", "none")
#: nerfstudio's ``eval_mode`` choices; they apply only to files without ``*_filenames`` lists
EVAL_MODES = ("fraction", "filename", "interval", "all")
#: nerfstudio's ``train_split_fraction`` default for the ``fraction`` rule
TRAIN_SPLIT_FRACTION = 0.9
#: ``downscale="auto"``: nerfstudio's target for the largest image side, in pixels
MAX_AUTO_RESOLUTION = 1600
AUTO_DOWNSCALE = "auto"
#: nerfstudio's ``eval_interval`` default for the ``interval`` rule
EVAL_INTERVAL = cameras.EVAL_INTERVAL
#: ``vertical``: nerfstudio's threshold on the second singular value of the stacked camera x
#: axes, as an RMS cosine (cos 80 deg); below it the rig is degenerate and ``up`` is projected
VERTICAL_DEGENERATE_COSINE = 0.17


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
    applied_scale: float = 1.0  # capture units -> transforms.json units (nerfstudio's key)
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

    def nerfstudio_dataparser_transform(self) -> tuple[np.ndarray, float]:
        """nerfstudio's ([3, 4] transform, scale) from the capture's own world (before
        ``applied_transform``) to the normalised world."""
        composed = np.eye(4)
        composed[:3] = self.dataparser_transform
        applied = np.eye(4)
        applied[:3] = self.applied_transform
        return (composed @ applied)[:3], self.dataparser_scale * self.applied_scale

    def save_dataparser_transforms(self, path: str | Path) -> Path:
        """nerfstudio's ``dataparser_transforms.json`` (``transform`` 3x4, ``scale``, the same
        meaning as nerfstudio's), atomically; ``eyeful`` adds the parts they are made of."""
        transform, scale = self.nerfstudio_dataparser_transform()
        path = Path(path)
        atomic_write_json(
            path,
            {
                "transform": transform.tolist(),
                "scale": float(scale),
                "eyeful": {
                    "transforms_json_to_normalised": self.dataparser_transform.tolist(),
                    "transforms_json_scale": float(self.dataparser_scale),
                    "applied_transform": self.applied_transform.tolist(),
                    "applied_scale": float(self.applied_scale),
                },
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
    eval_mode: str = "fraction",
    eval_interval: int = EVAL_INTERVAL,
) -> ParsedDataset:
    """Parse ``transforms.json`` (a folder or the file) into a :class:`ParsedDataset`.

    The options are nerfstudio's ``nerfstudio-data`` ones: ``orientation_method``,
    ``center_method``, ``auto_scale_poses``, ``scale_factor``, ``eval_mode``, ``eval_interval``.
    """
    check_options(
        downscale=downscale,
        orientation=orientation,
        center=center,
        eval_mode=eval_mode,
        eval_interval=eval_interval,
    )
    downscale = int(downscale)
    transforms_path = transforms_file(data)
    transforms = read_transforms(transforms_path)  # raises MissingFileError when absent
    orientation = _effective_orientation(transforms, transforms_path, orientation)
    scene = transforms_to_scene(transforms, transforms_path)
    if not scene.frames:
        raise InputFormatError(transforms_path, "no frames")
    base = transforms_path.parent

    def image_file(file_path: str) -> Path:
        return _resolve(base, file_path, downscale, "images")

    # nerfstudio sorts frames by resolved file name
    frames = sorted(scene.frames, key=lambda f: str(image_file(f.image_path)))
    image_paths = [image_file(f.image_path) for f in frames]
    is_hdr = _check_images(transforms_path, image_paths)
    mask_paths = _mask_paths(transforms_path, frames, downscale)
    frame_cameras = _frame_cameras(transforms_path, frames, image_paths, downscale)

    world_from_cam = np.stack([f.world_from_cam for f in frames])  # [N, 4, 4]
    transform = orient_and_center(world_from_cam, orientation=orientation, center=center)
    oriented = _apply(transform, world_from_cam)
    scale = 1.0
    if auto_scale:
        largest = float(np.max(np.abs(oriented[:, :3, 3])))
        scale = 1.0 / largest if largest > 0 else 1.0
    scale *= float(scale_factor)
    oriented[:, :3, 3] *= scale

    split_indices = split_indices_of(
        transforms_path,
        scene.splits,
        [str(p) for p in image_paths],
        downscale,
        eval_mode=eval_mode,
        eval_interval=int(eval_interval),
    )
    # nerfstudio's applied_transform rule, legacy COLMAP fallback included
    from_capture = cameras.transforms_from_capture(transforms.applied_transform, Path(data))
    return ParsedDataset(
        transforms_path=transforms_path,
        image_paths=image_paths,
        cameras=frame_cameras,
        world_from_cam=oriented,
        dataparser_transform=transform,
        dataparser_scale=scale,
        applied_transform=from_capture[:3],
        applied_scale=1.0 if transforms.applied_scale is None else float(transforms.applied_scale),
        split_indices=split_indices,
        mask_paths=mask_paths,
        is_hdr=is_hdr,
    )


def _effective_orientation(
    transforms: TransformsFile, transforms_path: Path, orientation: str
) -> str:
    """The orientation method to use: as in nerfstudio, the file's ``orientation_override``
    wins over the option (with a warning when they differ)."""
    override = transforms.orientation_override
    if override is None:
        return orientation
    if override not in ORIENTATIONS:
        raise InputFormatError(
            transforms_path,
            f"orientation_override {override!r} is not one of {', '.join(ORIENTATIONS)}",
        )
    if override != orientation:
        log.warning(
            "%s: orientation_override %r replaces orientation %r",
            transforms_path,
            override,
            orientation,
        )
    return override


def _check_images(transforms_path: Path, image_paths: list[Path]) -> bool:
    """Refuse missing images and a mix of EXR and 8-bit ones (the model is trained in one colour
    space); returns whether the images are HDR (EXR)."""
    missing = [p for p in image_paths if not p.is_file()]
    if missing:
        raise MissingFileError(
            missing[0], f"image listed in {transforms_path.name} not found ({len(missing)} missing)"
        )
    hdr_flags = {is_exr(p) for p in image_paths}
    if len(hdr_flags) > 1:
        raise InputFormatError(transforms_path, "mixes EXR and 8-bit images; use one resolution")
    return hdr_flags == {True}


def _mask_paths(
    transforms_path: Path, frames: Sequence[cameras.Frame], downscale: int
) -> list[Path | None]:
    """Each frame's mask file (None: no mask); masks are all-or-none so that a batch never mixes
    masked and unmasked pixels, and every listed one must exist."""
    base = transforms_path.parent
    mask_paths: list[Path | None] = [
        None if f.mask_path is None else _resolve(base, f.mask_path, downscale, "masks")
        for f in frames
    ]
    if any(p is None for p in mask_paths) and any(p is not None for p in mask_paths):
        raise InputFormatError(transforms_path, "some frames have mask_path and others do not")
    for mask in mask_paths:
        if mask is not None and not mask.is_file():
            raise MissingFileError(mask, f"mask listed in {transforms_path.name} not found")
    return mask_paths


def _frame_cameras(
    transforms_path: Path,
    frames: Sequence[cameras.Frame],
    image_paths: list[Path],
    downscale: int,
) -> list[Camera]:
    """Each frame's camera, rescaled to the size in its downscaled image's header (so sizes that
    are not exact fractions stay exact); equirectangular cameras are refused."""
    frame_cameras = [f.camera for f in frames]
    if downscale > 1:
        frame_cameras = [
            cameras.rescale_camera(camera, *image_size(path))
            for camera, path in zip(frame_cameras, image_paths, strict=True)
        ]
    for camera in frame_cameras:
        if camera.model is cameras.CameraModel.EQUIRECTANGULAR:
            raise InputFormatError(transforms_path, "EQUIRECTANGULAR cameras are not supported")
    return frame_cameras


def check_options(
    *,
    downscale: int | str = 1,
    orientation: str = "up",
    center: str = "poses",
    eval_mode: str = "fraction",
    eval_interval: int = EVAL_INTERVAL,
) -> None:
    """Raise :class:`UsageError` (naming the ``eyeful train`` flag) for an option
    :func:`parse_dataset` does not accept; the CLI calls it before it shows or writes anything."""
    if downscale != AUTO_DOWNSCALE and not _positive_int(downscale):
        raise UsageError("--downscale", f"must be 'auto' or a positive integer, got {downscale!r}")
    for flag, value, choices in (
        ("--orientation", orientation, ORIENTATIONS),
        ("--center", center, CENTERS),
        ("--eval-mode", eval_mode, EVAL_MODES),
    ):
        if value not in choices:
            raise UsageError(flag, f"{value!r} is not supported (use {', '.join(choices)})")
    if not _positive_int(eval_interval):
        raise UsageError("--eval-interval", f"must be a positive integer, got {eval_interval}")


def resolve_downscale(data: str | Path, downscale: int | str) -> int:
    """``downscale`` itself, or for ``"auto"`` nerfstudio 1.1.5's rule: the first listed
    image's largest side is halved while it exceeds 1600 px **and** ``images_<2f>/`` holds that
    image (it never makes copies; ``eyeful downscale`` does), so a folder trains on the copies
    ``ns-train`` would use."""
    check_options(downscale=downscale)
    if downscale != AUTO_DOWNSCALE:
        return int(downscale)
    transforms_path = transforms_file(data)
    transforms = read_transforms(transforms_path)
    if not transforms.frames:
        raise InputFormatError(transforms_path, "no frames")
    base, first = transforms_path.parent, transforms.frames[0].file_path
    largest = max(image_size(_resolve(base, first, 1, "images")))
    factor = 1
    while (
        largest / factor > MAX_AUTO_RESOLUTION
        and _resolve(base, first, 2 * factor, "images").exists()
    ):
        factor *= 2
    return factor


def _positive_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool) and bool(value >= 1)


def _resolve(base: Path, file_path: str, downscale: int, folder: str) -> Path:
    """nerfstudio's ``_get_fname``: ``<base>/<folder>_N/<basename>`` when downscaled."""
    if downscale > 1:
        return (base / cameras.downscaled_file(file_path, downscale, folder)).resolve()
    path = Path(file_path)
    return path if path.is_absolute() else (base / path).resolve()


def _apply(transform: np.ndarray, world_from_cam: np.ndarray) -> np.ndarray:
    """Left-multiply [N, 4, 4] poses by a [3, 4] world transform."""
    matrix = np.eye(4)
    matrix[:3] = transform
    return matrix @ world_from_cam


def orient_and_center(world_from_cam: np.ndarray, *, orientation: str, center: str) -> np.ndarray:
    """nerfstudio's ``auto_orient_and_center_poses`` -> [3, 4] transform (rotation | -R t).

    ``world_from_cam`` is [N, 4, 4], OpenCV camera axes. nerfstudio works on OpenGL
    camera-to-world matrices (its camera up is their +y column, its camera right the +x column),
    so each method reads those columns from the OpenGL view of our poses.

    * ``up``: the mean camera up is rotated onto +z.
    * ``vertical``: the direction closest to perpendicular to every camera's x axis (the last
      right singular vector of the stacked x axes), signed by the mean up, is rotated onto +z;
      for a degenerate rig (x axes nearly all parallel: second singular value below
      ``0.17 sqrt(N)``) the mean up with its component along the shared x axis removed.
    * ``pca``: see :func:`pca_rotation`.
    * ``none``: no rotation.
    """
    world_from_cam = np.asarray(world_from_cam, dtype=np.float64)
    origins = world_from_cam[:, :3, 3]  # [N, 3]
    mean_origin = origins.mean(axis=0)
    if center == "poses":
        translation = mean_origin
    elif center == "focus":
        translation = focus_of_attention(world_from_cam, mean_origin)
    else:
        translation = np.zeros(3)
    opengl = cameras.opengl_from_opencv_pose(world_from_cam)  # nerfstudio's pose convention
    if orientation == "pca":
        rotation = pca_rotation(opengl)
    elif orientation in ("up", "vertical"):
        up = opengl[:, :3, 1].mean(axis=0)
        up = up / np.linalg.norm(up)
        if orientation == "vertical":
            up = vertical_up(opengl[:, :3, 0], up)
        rotation = rotation_between(up, np.array([0.0, 0.0, 1.0]))
    else:
        rotation = np.eye(3)
    return np.concatenate([rotation, (rotation @ -translation)[:, None]], axis=1)


def vertical_up(x_axes: np.ndarray, up: np.ndarray) -> np.ndarray:
    """nerfstudio's ``vertical`` estimate: the unit u minimising ||X u|| for the [N, 3] camera
    x axes X (total least squares by SVD), with the sign of the unit mean ``up``.

    When the second singular value is below ``0.17 sqrt(N)`` (RMS cosine < cos 80 deg: the x
    axes nearly share one direction, e.g. a forward-facing array) u is ill-defined, and ``up``
    projected onto the plane of the last two singular vectors is returned instead. With fewer
    than 3 cameras nerfstudio can fail with an IndexError; we use the full SVD's last vector.
    """
    _, singular, vh = np.linalg.svd(x_axes, full_matrices=True)  # vh [3, 3]
    count = x_axes.shape[0]
    if singular.size > 1 and singular[1] > VERTICAL_DEGENERATE_COSINE * math.sqrt(count):
        candidate = vh[2]
        return candidate if float(np.dot(candidate, up)) > 0 else -candidate
    projected = up - vh[0] * float(np.dot(up, vh[0]))
    return projected / np.linalg.norm(projected)


def pca_rotation(world_from_cam_opengl: np.ndarray) -> np.ndarray:
    """nerfstudio's ``pca`` rotation for [N, 4, 4] OpenGL camera-to-world poses -> [3, 3].

    As nerfstudio 1.1.5: ``V`` = eigenvectors of ``D^T D`` (``D`` = camera origins minus their
    mean, whatever the centring), as columns, largest eigenvalue first; the last column negated
    when ``det V < 0``; then ``V`` itself (not ``V^T``) is the rotation, so the principal axes
    land on the coordinate axes only when ``V`` is symmetric. Finally a half-turn about x when
    the mean camera up (OpenGL +y) would point down (negative z).

    Eigenvector signs are LAPACK's choice and change the result, so they are taken from
    ``torch.linalg.eigh`` on the same float32 data nerfstudio decomposes (torch is imported
    here only; numpy's LAPACK picked other signs for ~15% of random rigs); the vectors are then
    made exactly orthonormal in float64.

    One deliberate difference: when the half-turn is taken, nerfstudio 1.1.5 returns it in the
    transform it saves but trains on the poses from before it, with poses 1 and 2 negated as
    whole 3x4 matrices (``oriented_poses[1:3, :]`` indexes the batch axis). The caller applies
    the returned rotation to every pose, i.e. the saved transform.
    """
    eigvec = _nerfstudio_eigenvectors(world_from_cam_opengl)[:, ::-1]  # [3, 3] largest first
    if np.linalg.det(eigvec) < 0:  # a reflection: reverse the least principal direction
        eigvec = eigvec.copy()
        eigvec[:, 2] = -eigvec[:, 2]
    u, _, vt = np.linalg.svd(eigvec)  # nearest rotation: float32 round-off removed
    rotation = u @ vt
    mean_up = world_from_cam_opengl[:, :3, 1].mean(axis=0)
    if float((rotation @ mean_up)[2]) < 0:
        rotation = half_turn(np.array([1.0, 0.0, 0.0])) @ rotation
    return rotation


def _nerfstudio_eigenvectors(world_from_cam_opengl: np.ndarray) -> np.ndarray:
    """Eigenvectors (columns, ascending eigenvalues) of the centred origins' scatter matrix,
    computed with nerfstudio's exact torch float32 operations so the signs match it."""
    import torch  # the parser is otherwise numpy-only

    poses = torch.from_numpy(np.asarray(world_from_cam_opengl).astype(np.float32))  # [N, 4, 4]
    origins = poses[..., :3, 3]
    translation_diff = origins - torch.mean(origins, dim=0)
    _, eigvec = torch.linalg.eigh(translation_diff.T @ translation_diff)
    return eigvec.double().numpy()


def half_turn(axis: np.ndarray) -> np.ndarray:
    """The rotation by 180 degrees about a unit ``axis``: ``2 a a^T - I`` [3, 3]."""
    axis = np.asarray(axis, dtype=np.float64)
    return 2.0 * np.outer(axis, axis) - np.eye(3)


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
    splits: Mapping[str, Sequence[str]],
    image_names: list[str],
    downscale: int,
    *,
    eval_mode: str = "fraction",
    eval_interval: int = EVAL_INTERVAL,
) -> dict[str, np.ndarray]:
    """Split -> sorted image indices, from ``*_filenames`` or nerfstudio's ``eval_mode`` rule.

    Splits absent from a file that lists others are left out; :meth:`ParsedDataset.indices`
    raises nerfstudio's error for them when asked. ``image_names`` are in dataset order.
    """
    splits = dict(splits)
    if not splits:
        train, evaluation = eval_split(
            transforms_path, image_names, eval_mode=eval_mode, eval_interval=eval_interval
        )
        return {"train": train, "val": evaluation.copy(), "test": evaluation.copy()}
    if eval_mode != "fraction":
        log.warning(
            "%s lists its splits; eval mode %r is not used (as nerfstudio)",
            transforms_path,
            eval_mode,
        )
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


def eval_split(
    transforms_path: Path,
    image_names: list[str],
    *,
    eval_mode: str = "fraction",
    eval_interval: int = EVAL_INTERVAL,
) -> tuple[np.ndarray, np.ndarray]:
    """nerfstudio's ``get_train_eval_split_*`` -> (train, eval) int64 index arrays.

    ``fraction``: ceil(0.9 N) evenly spaced train images (linspace, first and last included),
    the rest eval. ``filename``: basenames containing ``train`` are train, else those containing
    ``eval`` are eval, any other name is an error. ``interval``: every ``eval_interval``-th
    image from the first is eval (:func:`cameras.held_out_every`), the rest train. ``all``:
    every image in both.
    """
    check_options(eval_mode=eval_mode, eval_interval=eval_interval)
    count = len(image_names)
    every = np.arange(count, dtype=np.int64)
    if eval_mode == "fraction":
        train_count = math.ceil(count * TRAIN_SPLIT_FRACTION)
        train = np.linspace(0, count - 1, train_count, dtype=int).astype(np.int64)
        return train, np.setdiff1d(every, train)
    if eval_mode == "filename":
        train_list, eval_list = [], []
        for index, name in enumerate(image_names):
            basename = Path(name).name
            if "train" in basename:
                train_list.append(index)
            elif "eval" in basename:
                eval_list.append(index)
            else:
                raise SplitError(
                    transforms_path,
                    f"eval mode filename: image {basename} has neither 'train' nor 'eval' "
                    "in its name",
                )
        return np.array(train_list, dtype=np.int64), np.array(eval_list, dtype=np.int64)
    if eval_mode == "interval":
        held = cameras.held_out_every(count, eval_interval)
        return every[~held], every[held]
    log.warning(  # "all"
        "eval mode all: every image is in train, val and test; with camera optimisation "
        "the cameras may diverge (nerfstudio's warning)"
    )
    return every, every.copy()
