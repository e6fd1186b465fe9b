"""``eyeful convert``: a capture folder -> ``transforms.json`` (+ nerfstudio's subsets) per
resolution folder.

Pipeline: read the calibration once (``cameras.json`` KRT, or Metashape ``cameras.xml``), full
resolution, in the capture's y-up world -> for each resolution folder, match every posed camera
to an image file (KRT: by ``cameraId`` path; Metashape: by file stem, recursively) -> read each
image's size from its header and rescale the intrinsics to it, x and y separately -> one
:class:`~eyeful_tools.cameras.Scene` -> :func:`~eyeful_tools.transforms.scene_to_transforms`
(the one writer: OpenGL camera, z-up world, ``applied_transform``) -> the official split ->
``transforms.json``, ``transforms_300.json``, ``transforms_half.json``.

Everything is computed before the first file is written, so bad input writes nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np

from eyeful_tools import cameras, catalog, split
from eyeful_tools.cameras import (
    Camera,
    Frame,
    Scene,
    default_fisheye_crop_radius_px,
    is_downscaled_folder,
    rescale_camera,
)
from eyeful_tools.errors import InputFormatError, MissingFileError, SplitError, UsageError
from eyeful_tools.imageio import IMAGE_SUFFIXES, image_size, is_exr
from eyeful_tools.readers import krt, metashape
from eyeful_tools.transforms import (
    TransformsFile,
    check_scene,
    scene_to_transforms,
    write_transforms,
)

log = logging.getLogger(__name__)

SOURCES = ("auto", "krt", "metashape")

ProgressCallback = Callable[[str, int, int], None]


@dataclass
class FolderResult:
    """One resolution folder: what was matched and written."""

    folder: Path
    frames: int = 0
    train: int = 0
    held_out: int = 0
    poses_without_image: int = 0
    images_without_pose: int = 0
    split_rule: str = ""
    written: list[Path] = field(default_factory=list)


@dataclass
class CheckResult:
    """KRT vs Metashape poses of the same images (``--check``)."""

    cameras: int
    max_position_m: float
    max_rotation_deg: float
    worst_position: str
    worst_rotation: str
    only_in_krt: int
    only_in_xml: int

    def line(self) -> str:
        return (
            f"check: {self.cameras} cameras in both, max position difference "
            f"{self.max_position_m:.3g} m ({self.worst_position}), max rotation difference "
            f"{self.max_rotation_deg:.3g} deg ({self.worst_rotation}); only in cameras.json "
            f"{self.only_in_krt}, only in cameras.xml {self.only_in_xml}"
        )


@dataclass
class ConvertReport:
    capture_dir: Path
    source: str
    folders: list[FolderResult] = field(default_factory=list)
    disabled: int = 0
    no_pose: int = 0
    no_calibration: int = 0
    rig_slaves_posed: int = 0
    warnings: list[str] = field(default_factory=list)
    check: CheckResult | None = None

    @property
    def written(self) -> list[Path]:
        return [path for folder in self.folders for path in folder.written]

    def summary(self) -> str:
        """One line for the CLI."""
        parts = [
            f"{f.folder.name}: {f.frames} frames (train {f.train}, val/test {f.held_out})"
            + (f", {f.poses_without_image} poses without image" if f.poses_without_image else "")
            + (f", {f.images_without_pose} unmatched" if f.images_without_pose else "")
            for f in self.folders
        ]
        skipped = [
            f"{n} {what}"
            for n, what in (
                (self.disabled, "disabled"),
                (self.no_pose, "without pose"),
                (self.no_calibration, "without calibration"),
            )
            if n
        ]
        rules = sorted({f.split_rule for f in self.folders})
        text = f"converted {self.capture_dir.name} from {self.source}: " + "; ".join(parts)
        if self.rig_slaves_posed:
            text += f"; {self.rig_slaves_posed} rig cameras posed from their master"
        if skipped:
            text += f"; skipped {', '.join(skipped)} cameras"
        text += f"; split: {' | '.join(rules)}; wrote {len(self.written)} files"
        if self.check is not None:
            text += f"; {self.check.line()}"
        return text


def convert_capture(
    capture_dir: Path,
    resolutions: list[str] | None = None,
    source: str = "auto",
    rig: bool = True,
    images_dir: Path | None = None,
    check: bool = False,
    on_progress: ProgressCallback | None = None,
) -> ConvertReport:
    """Convert a capture folder; writes ``<folder>/transforms.json`` and subsets per resolution.

    EyefulTower's own rules (the per-capture fisheye crop fraction, the held-out camera) apply
    only to a capture whose ``cameras.json`` matches its catalog entry
    (:func:`krt.catalog_capture`), whatever the folder is called.

    ``source``: ``krt`` (``cameras.json``), ``metashape`` (``cameras.xml``) or ``auto`` (KRT when
    present). ``resolutions``: catalog names (``jpeg_2k``) or folder names; default (and
    ``all``) every resolution folder present, else ``images/``. ``images_dir``: one folder of
    images to use instead (output goes there). ``check``: compare KRT and Metashape poses of the
    same images. ``on_progress(folder, done, total)`` is called while matching images.
    """
    capture_dir = Path(capture_dir)
    if not capture_dir.is_dir():
        raise MissingFileError(capture_dir, "capture folder not found")
    source = _pick_source(capture_dir, source)
    folders = _image_folders(capture_dir, resolutions, images_dir)
    folder_name = capture_dir.resolve().name
    report = ConvertReport(capture_dir=capture_dir, source=source)

    calibration = capture_dir / ("cameras.json" if source == "krt" else "cameras.xml")
    scene, known = _read_calibration(capture_dir, calibration, source, rig, report)
    fraction = None if known is None else known.fisheye_crop_fraction
    check_scene(scene, calibration)  # before any image is read: a bad K or T names its file
    splits_path = capture_dir / "splits.json"
    splits = split.read_splits(splits_path) if splits_path.is_file() else None

    pending: list[tuple[Path, TransformsFile]] = []
    for folder in folders:
        result = FolderResult(folder=folder)
        frames = _match_folder(scene, folder, source, fraction, result, on_progress)
        frames.sort(key=lambda frame: frame.image_path)
        matched = Scene(
            frames=tuple(frames),
            world_up=scene.world_up,
            name=folder_name,
        )
        extra = {"source": source, "images": folder.name}
        if known is not None:
            extra["catalog"] = known.name  # what split's catalog rules are for
        tf = scene_to_transforms(matched, extra=extra, source=calibration)
        pending.extend(_split_outputs(tf, folder, splits, splits_path, known, result))
        report.folders.append(result)
        if result.poses_without_image:
            warning = f"{folder}: {result.poses_without_image} posed cameras have no image"
            report.warnings.append(warning)
            log.warning("%s", warning)

    if check:
        report.check = cross_check(capture_dir, rig=rig)
    for path, tf in pending:
        write_transforms(path, tf)
        next(f for f in report.folders if f.folder == path.parent).written.append(path)
    return report


def _read_calibration(
    capture_dir: Path, calibration: Path, source: str, rig: bool, report: ConvertReport
) -> tuple[Scene, catalog.Capture | None]:
    """The posed scene of ``calibration`` and the EyefulTower capture it is (None: not one),
    with what the Metashape reader skipped counted in ``report``. The catalog entry comes first
    because its fisheye crop fraction shapes the Metashape cameras."""
    if source == "krt":
        scene = krt.read_krt(calibration)  # per folder, the radius is set from ``fraction``
        return scene, krt.catalog_capture(scene)
    known = _catalog_capture(capture_dir)
    fraction = None if known is None else known.fisheye_crop_fraction
    document = metashape.parse_metashape(calibration, rig=rig, crop_fraction=fraction)
    report.disabled = len(document.report.disabled)
    report.no_pose = len(document.report.no_pose)
    report.no_calibration = len(document.report.no_calibration)
    report.rig_slaves_posed = document.report.rig_slaves_posed
    report.warnings.extend(document.report.warnings)  # the reader has logged these
    if not document.scene.frames:
        raise InputFormatError(capture_dir / "cameras.xml", "no posed camera to convert")
    return document.scene, known


def _split_outputs(
    tf: TransformsFile,
    folder: Path,
    splits: dict[str, list[str]] | None,
    splits_path: Path,
    known: catalog.Capture | None,
    result: FolderResult,
) -> list[tuple[Path, TransformsFile]]:
    """The folder's ``transforms.json`` with its official split applied, plus one file per
    split subset, as (path, content) to write once every folder has matched; the counts go to
    ``result``. A split error names ``splits.json`` when there is one, else the folder."""
    try:
        tf, result.split_rule = split.official_split(
            tf, splits, rig=None if known is None else known.rig
        )
    except SplitError as error:
        raise SplitError(splits_path if splits else folder, error.reason) from error
    tf.eyeful = {**(tf.eyeful or {}), "split": result.split_rule}
    result.frames = len(tf.frames)
    result.train = len(tf.train_filenames or [])
    result.held_out = len(tf.val_filenames or [])
    outputs = [(folder / "transforms.json", tf)]
    outputs.extend((folder / name, subset) for name, subset in split.subsets(tf).items())
    return outputs


# ---------------------------------------------------------------------------------------------
# Inputs.


def _catalog_capture(capture_dir: Path) -> catalog.Capture | None:
    """The EyefulTower capture in ``capture_dir``, recognised by its ``cameras.json`` (the
    catalog's crop radius and held-out camera apply to it only); None without one."""
    path = capture_dir / "cameras.json"
    return krt.catalog_capture(krt.read_krt(path)) if path.is_file() else None


def _pick_source(capture_dir: Path, source: str) -> str:
    if source not in SOURCES:
        raise UsageError(None, f"--from must be one of {', '.join(SOURCES)}, not {source!r}")
    if source == "auto":
        if (capture_dir / "cameras.json").is_file():
            return "krt"
        if (capture_dir / "cameras.xml").is_file():
            return "metashape"
        raise MissingFileError(capture_dir, "neither cameras.json nor cameras.xml found")
    name = "cameras.json" if source == "krt" else "cameras.xml"
    if not (capture_dir / name).is_file():
        raise MissingFileError(capture_dir / name, f"needed for --from {source}")
    return source


def _image_folders(
    capture_dir: Path, resolutions: Sequence[str] | None, images_dir: Path | None
) -> list[Path]:
    if images_dir is not None:
        images_dir = Path(images_dir)
        if not images_dir.is_dir():
            raise MissingFileError(images_dir, "images folder not found")
        return [images_dir]
    if resolutions and "all" not in resolutions:
        folders = []
        for name in catalog.expand(
            [r for r in resolutions if r not in catalog.RESOLUTION_BY_FOLDER],
            catalog.RESOLUTIONS,
            "resolution",
        ):
            folders.append(capture_dir / catalog.RESOLUTIONS[name].folder)
        folders += [capture_dir / r for r in resolutions if r in catalog.RESOLUTION_BY_FOLDER]
        for folder in folders:
            if not folder.is_dir():
                raise MissingFileError(folder, "resolution folder not found")
        return list(dict.fromkeys(folders))
    folders = [
        capture_dir / r.folder
        for r in catalog.RESOLUTIONS.values()
        if (capture_dir / r.folder).is_dir()
    ]
    if not folders and (capture_dir / "images").is_dir():
        folders = [capture_dir / "images"]  # a plain Metashape project
    if not folders:
        raise MissingFileError(
            capture_dir,
            "no image folder found (expected images-jpeg-2k/ or another resolution folder, or "
            "images/; or give --images DIR)",
        )
    return folders


def _index_images(folder: Path) -> list[str]:
    """Image paths under ``folder``, relative and POSIX, skipping hidden and derived folders."""
    found = []
    for root, dirs, files in os.walk(folder):
        relative_root = Path(root).relative_to(folder)
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and not (relative_root == Path(".") and is_downscaled_folder(d))  # copies
        )
        for name in files:
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                found.append((relative_root / name).as_posix())
    return sorted(found)


# ---------------------------------------------------------------------------------------------
# Matching frames to images and rescaling.


def _match_folder(
    scene: Scene,
    folder: Path,
    source: str,
    fraction: float | None,
    result: FolderResult,
    on_progress: ProgressCallback | None,
) -> list[Frame]:
    images = _index_images(folder)
    by_key: dict[str, list[str]] = {}
    for relative in images:
        key = split.split_key(relative) if source == "krt" else PurePosixPath(relative).stem
        by_key.setdefault(key, []).append(relative)
    preferred = catalog.RESOLUTION_BY_FOLDER.get(folder.name)
    used: dict[str, str] = {}
    frames: list[Frame] = []
    cache: dict[tuple[Camera, int, int], Camera] = {}
    total = len(scene.frames)
    for number, frame in enumerate(scene.frames, 1):
        candidates = by_key.get(frame.image_path, [])
        if len(candidates) > 1 and preferred is not None:
            wanted = [c for c in candidates if c.lower().endswith("." + preferred.extension)]
            candidates = wanted or candidates
        if not candidates:
            result.poses_without_image += 1
            continue
        if len(candidates) > 1:
            raise InputFormatError(
                folder,
                f"camera {frame.image_path!r} matches several images: {', '.join(candidates)}",
            )
        relative = candidates[0]
        if relative in used:
            raise InputFormatError(
                folder / relative,
                f"image matches two cameras ({used[relative]!r} and {frame.image_path!r})",
            )
        used[relative] = frame.image_path
        width, height = image_size(folder / relative)
        shape = (frame.camera, width, height)
        if shape not in cache:
            _check_shape(folder / relative, frame.camera, width, height)
            camera = rescale_camera(frame.camera, width, height)
            if camera.is_fisheye:
                camera = replace(
                    camera, fisheye_crop_radius_px=default_fisheye_crop_radius_px(camera, fraction)
                )
            cache[shape] = camera
        frames.append(
            frame.with_(
                image_path=relative,
                camera=cache[shape],
                camera_id=_camera_id(frame, relative, source),
                color_space="linear" if is_exr(relative) else "srgb",
            )
        )
        if on_progress is not None and (number % 256 == 0 or number == total):
            on_progress(folder.name, number, total)
    result.images_without_pose = len(images) - len(used)
    if not frames:
        raise InputFormatError(
            folder,
            f"no image matches a camera of the {'cameras.json' if source == 'krt' else 'cameras.xml'}"
            f" ({len(images)} images, {total} cameras)",
        )
    return frames


def _camera_id(frame: Frame, relative: str, source: str) -> str | None:
    """EyefulTower layout ``<cam>/<cam>_<NAME>``: the folder is the camera; otherwise keep the
    reader's id (KRT: cameraId folder; Metashape: sensor id)."""
    parts = PurePosixPath(relative).parts
    if source == "metashape" and len(parts) > 1 and parts[-1].startswith(parts[0] + "_"):
        return parts[0]
    return frame.camera_id


def _check_shape(path: Path, camera: Camera, width: int, height: int) -> None:
    """The image must be the calibrated image, scaled: same orientation, same aspect."""
    full_w, full_h = camera.width_px, camera.height_px

    def orientation(w: int, h: int) -> str:
        return "portrait" if h > w else "landscape" if w > h else "square"

    if orientation(width, height) != orientation(full_w, full_h):
        raise InputFormatError(
            path,
            f"image is {width}x{height} ({orientation(width, height)}) but its calibration is "
            f"{full_w}x{full_h} ({orientation(full_w, full_h)})",
        )
    expected_width = full_w * height / full_h
    if abs(width - expected_width) > max(1.0, 0.005 * width):
        raise InputFormatError(
            path,
            f"image is {width}x{height}, which is not the calibrated {full_w}x{full_h} scaled "
            f"(aspect {width / height:.4f} vs {full_w / full_h:.4f})",
        )


# ---------------------------------------------------------------------------------------------
# Cross-check of the two calibrations.


def cross_check(capture_dir: Path, rig: bool = True) -> CheckResult:
    """Per image, the pose difference between ``cameras.json`` and ``cameras.xml`` (both are
    in the capture's y-up metric world; they come from the same Metashape alignment)."""
    capture_dir = Path(capture_dir)
    for name in ("cameras.json", "cameras.xml"):
        if not (capture_dir / name).is_file():
            raise MissingFileError(capture_dir / name, "--check needs both cameras.json and .xml")
    from_krt = {
        PurePosixPath(f.image_path).name: f
        for f in krt.read_krt(capture_dir / "cameras.json").frames
    }
    from_xml = {
        f.image_path: f for f in metashape.read_metashape(capture_dir / "cameras.xml", rig).frames
    }
    common = sorted(set(from_krt) & set(from_xml))
    if not common:
        raise InputFormatError(
            capture_dir / "cameras.xml", "no camera label matches a cameraId of cameras.json"
        )
    a = np.stack([from_krt[n].world_from_cam for n in common])  # [N, 4, 4]
    b = np.stack([from_xml[n].world_from_cam for n in common])  # [N, 4, 4]
    position = np.linalg.norm(a[:, :3, 3] - b[:, :3, 3], axis=-1)
    angle = np.degrees(cameras.rotation_angle_rad(a, b))
    return CheckResult(
        cameras=len(common),
        max_position_m=float(position.max()),
        max_rotation_deg=float(angle.max()),
        worst_position=common[int(position.argmax())],
        worst_rotation=common[int(angle.argmax())],
        only_in_krt=len(set(from_krt) - set(from_xml)),
        only_in_xml=len(set(from_xml) - set(from_krt)),
    )
