"""The shared iOS import pipeline: select frames, copy images, convert depth, write transforms.

Readers (:mod:`eyeful_tools.readers.record3d`, :mod:`eyeful_tools.readers.polycam`,
:mod:`eyeful_tools.readers.stray`, :mod:`eyeful_tools.readers.nerfcapture`) parse an
app's export into a :class:`PhoneExport`: a canonical :class:`~eyeful_tools.cameras.Scene`
(``world_from_cam`` with OpenCV camera axes in the ARKit y-up world, cameras for the images as
stored, ``image_path`` and ``depth_path`` naming members of the export) whose frames carry
their depth encoding, confidence map and the app's sharpness score in ``Frame.extras``
(:func:`phone_frame`). This module then, in order:

1. decodes images (a corrupt one is reported by name and skipped), scores sharpness when a blur
   filter is given (variance of the Laplacian, or the app's own score when every frame has one)
   and drops the blurry frames;
2. evenly subsamples the survivors to ``max_frames`` (``round(linspace)``, first and last kept);
   optionally crops a border (principal point shifted) and turns images upright (``--rotate``;
   pixels, depth, intrinsics and pose together through
   :func:`eyeful_tools.cameras.rotate_image_quarter_turns`);
3. writes ``images/``, ``depth/`` (16-bit PNG, millimetres, 0 = invalid, resized nearest to the
   image size) and ``transforms.json`` through :func:`eyeful_tools.transforms.scene_to_transforms`
   (z-up world, ``applied_transform``) and train/val/test lists from
   :func:`eyeful_tools.split.official_split` (no rig: every 8th frame is held out, nerfstudio's
   eval-interval rule), all into a temporary folder beside the output that is renamed into place
   at the end, so a failed import writes nothing.

:class:`~eyeful_tools.archive.Source` reads a folder or a zip archive (``.zip``, ``.r3d``) the
same way, within :class:`~eyeful_tools.archive.ArchiveLimits` (``ImportOptions.archive_limits``).
A damaged image member is skipped like a corrupt image file, a damaged depth member like a bad
depth file: only that frame (or its depth) is lost. Readers may add members made on demand
(Stray's video frames) that the pipeline reads like files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import numpy as np

from eyeful_tools import blur, imageio, ios_depth, split, transforms
from eyeful_tools.archive import ArchiveLimits, DamagedMemberError, Source
from eyeful_tools.cameras import (
    Camera,
    CameraModel,
    Frame,
    Scene,
    WorldUp,
    rescale_camera,
    rotate_image_quarter_turns,
)
from eyeful_tools.errors import InputFormatError, UsageError
from eyeful_tools.fsio import atomic_dir, atomic_path, check_output_folder, require_free_space

log = logging.getLogger(__name__)

T = TypeVar("T")

#: the image sizes of one frame may differ from its metadata by a uniform scale, this much
_ASPECT_TOLERANCE = 0.01


# ---------------------------------------------------------------------------------------------
# What readers produce.

#: what a phone frame's ``Frame.extras`` may hold besides ``name`` (its output stem, unique
#: within the export): the depth map's encoding (:mod:`eyeful_tools.ios_depth`), the confidence
#: map beside it, and the app's own sharpness score (Polycam's ``blur_score``)
PHONE_EXTRAS = (
    "depth_kind",
    "depth_size_px",  # raw (headerless) depth only
    "depth_scale_m",  # metres per unit of a DEPTH_PNG_SCALED map
    "confidence",
    "confidence_kind",
    "app_score",
)


@dataclass
class PhoneExport:
    """An app's export as read: a canonical scene of its keyframes (before selection), the open
    export its members come from, and what the summary reports."""

    app: str  # "record3d" | "polycam" | "stray" | "nerfcapture"
    source: Source
    scene: Scene
    #: human-readable facts for the summary (e.g. "depth skipped: ...")
    notes: list[str] = field(default_factory=list)
    #: confidence at or above which depth pixels are kept (app's own scale)
    min_confidence: int = 0
    #: images whose size the export does not give and that cannot be read: reported as corrupt
    unreadable: list[str] = field(default_factory=list)

    @property
    def frames(self) -> tuple[Frame, ...]:
        return self.scene.frames


def phone_frame(
    source: Source,
    *,
    name: str,
    image: str,
    intrinsics: tuple[float, float, float, float],
    size_px: tuple[int, int] | None,
    world_from_cam: np.ndarray,
    depth: str | None = None,
    **extras: Any,
) -> Frame | None:
    """A canonical frame of an export: ``image`` and ``depth`` are members of ``source``, the
    camera (``intrinsics`` = fx, fy, cx, cy in pixels, corner origin) is for an image of
    ``size_px`` (w, h), else of the stored image's own size. None when the export gives no
    size and the image cannot be read (a corrupt image: the import reports it).
    ``extras``: any of :data:`PHONE_EXTRAS`."""
    unknown = set(extras) - set(PHONE_EXTRAS)
    if unknown:
        raise TypeError(f"unknown phone frame extras {sorted(unknown)}")
    size = size_px or _stored_size(source, image)
    if size is None:
        return None
    fx, fy, cx, cy = intrinsics
    camera = Camera(
        model=CameraModel.OPENCV, width_px=size[0], height_px=size[1], fx=fx, fy=fy, cx=cx, cy=cy
    )
    return Frame(
        image_path=image,
        camera=camera,
        world_from_cam=world_from_cam,
        depth_path=depth,
        color_space="srgb",
        extras={"name": name, **extras},
    )


def phone_export(
    app: str,
    source: Source,
    frames: Sequence[tuple[str, Frame | None]],
    notes: list[str],
    min_confidence: int = 0,
) -> PhoneExport:
    """The export of ``(image member, frame or None)`` pairs from :func:`phone_frame`."""
    return PhoneExport(
        app=app,
        source=source,
        scene=Scene(frames=tuple(f for _, f in frames if f is not None), world_up=WorldUp.Y_UP),
        notes=notes,
        min_confidence=min_confidence,
        unreadable=[image for image, f in frames if f is None],
    )


def _stored_size(source: Source, name: str) -> tuple[int, int] | None:
    """(w, h) of a stored image, from its header (else by decoding); None when unreadable."""
    try:
        data = source.read_bytes(name)
        size = imageio.header_size(data, source.display(name))
    except (DamagedMemberError, InputFormatError):
        return None
    if size is not None:
        return size
    pixels = _decode_grey(source, name)
    return None if pixels is None else (pixels.shape[1], pixels.shape[0])


@dataclass(frozen=True)
class ImportOptions:
    max_frames: int | None = None
    blur_filter: blur.BlurFilter = blur.BlurFilter()
    link: bool = False  # hard-link images from a source folder instead of copying
    depth: bool = True
    overwrite: bool = False
    #: turn images upright: "none", "ccw", "cw", "180", or "auto" (from gravity, world +y). The
    #: default "auto" keeps gravity at +z through a trainer's "mean camera up" orientation step,
    #: which tips a portrait-held capture stored landscape (Polycam, Stray) by about 90 degrees
    rotate: str = "auto"
    #: pixels cut from every side (nerfstudio crops Polycam's undistortion border by 15)
    crop_border_px: int = 0
    #: what one member of a zip source may unpack to
    archive_limits: ArchiveLimits = ArchiveLimits()


#: quarter turns counter-clockwise per ``--rotate`` value
ROTATIONS = {"none": 0, "ccw": 1, "180": 2, "cw": 3}
_ROTATION_WORDS = {
    1: "a quarter turn counter-clockwise",
    2: "by 180 degrees",
    3: "a quarter turn clockwise",
}


@dataclass
class ImportReport:
    out_dir: Path
    total: int
    kept: int
    score_name: str = "laplacian variance"
    dropped_blurry: list[str] = field(default_factory=list)
    dropped_subsample: int = 0
    corrupt: list[str] = field(default_factory=list)
    depth_written: int = 0
    notes: list[str] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)

    def one_line(self) -> str:
        parts = [f"imported {self.kept} of {self.total} frames into {self.out_dir}"]
        dropped = []
        if self.dropped_blurry:
            dropped.append(f"{len(self.dropped_blurry)} blurry ({self.score_name})")
        if self.dropped_subsample:
            dropped.append(f"{self.dropped_subsample} by --max-frames")
        if self.corrupt:
            dropped.append(f"{len(self.corrupt)} corrupt ({', '.join(self.corrupt)})")
        if dropped:
            parts.append("dropped " + ", ".join(dropped))
        parts.append(f"depth for {self.depth_written}")
        if self.splits:
            parts.append("/".join(f"{n} {k}" for k, n in self.splits.items()))
        parts.extend(self.notes)
        return "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# The pipeline.

Progress = Callable[[str, int, int], None]


def read_capture(
    path: str | Path,
    parse: Callable[[Source], PhoneExport],
    limits: ArchiveLimits = ArchiveLimits(),
) -> PhoneExport:
    """``parse`` the export at ``path``; the export owns the open :class:`Source` (closed by
    :func:`import_capture`), which is closed here if parsing fails."""
    source = Source(path, limits)
    try:
        return parse(source)
    except BaseException:
        source.close()
        raise


def import_capture(
    capture: PhoneExport,
    out_dir: str | Path,
    options: ImportOptions = ImportOptions(),
    progress: Progress | None = None,
) -> ImportReport:
    """Select, copy and convert ``capture`` into ``out_dir`` (see the module docstring); closes
    the capture's source when done."""
    try:
        return _import(capture, out_dir, options, progress)
    finally:
        capture.source.close()


def _import(
    capture: PhoneExport, out_dir: str | Path, options: ImportOptions, progress: Progress | None
) -> ImportReport:
    out_dir = Path(out_dir)
    check_output_folder(out_dir, options.overwrite, inputs=[capture.source.path])
    if not capture.frames and not capture.unreadable:
        raise InputFormatError(capture.source.path, "no frames to import")
    if options.rotate not in (*ROTATIONS, "auto"):
        raise UsageError("--rotate", f"expected none, cw, ccw, 180 or auto, got {options.rotate!r}")
    if options.crop_border_px < 0:
        raise UsageError("--crop-border", f"must be >= 0, got {options.crop_border_px}")
    if options.max_frames is not None and options.max_frames < 1:
        raise UsageError("--max-frames", f"must be at least 1, got {options.max_frames}")
    total = len(capture.frames) + len(capture.unreadable)
    report = ImportReport(out_dir=out_dir, total=total, kept=0, corrupt=list(capture.unreadable))
    report.notes.extend(capture.notes)
    sizes: dict[int, tuple[int, int]] = {}

    def decode(index: int) -> np.ndarray | None:
        frame = capture.frames[index]
        pixels = _decode_grey(capture.source, frame.image_path)
        if pixels is None:
            where = capture.source.display(frame.image_path)
            log.warning("%s: cannot decode image; skipped", where)
            report.corrupt.append(frame.image_path)
            return None
        sizes[index] = (pixels.shape[1], pixels.shape[0])
        return pixels

    candidates = list(range(len(capture.frames)))
    if options.blur_filter.active:
        candidates = _drop_blurry(
            capture, candidates, options.blur_filter, decode, report, progress
        )
    selected = even_subsample(candidates, options.max_frames)
    report.dropped_subsample = len(candidates) - len(selected)
    selected = [i for i in selected if i in sizes or decode(i) is not None]
    if not selected:
        raise InputFormatError(capture.source.path, "no usable frames left to import")

    frames = [(i, _camera_for(capture, capture.frames[i], sizes[i])) for i in selected]
    turns = _quarter_turns(options.rotate, [capture.frames[i].world_from_cam for i in selected])
    if turns:
        report.notes.append(f"images turned {_ROTATION_WORDS[turns]} ({options.rotate})")
    rewritten = bool(turns or options.crop_border_px)  # images decoded and encoded again
    _check_free_space(capture, [(i, sizes[i]) for i in selected], out_dir, options, rewritten)
    with atomic_dir(out_dir) as build:
        canonical = _write_frames(capture, frames, build, options, turns, report, progress)
        scene = Scene(frames=tuple(canonical), world_up=WorldUp.Y_UP, name=out_dir.name)
        extra = {"source": {"app": capture.app, "path": str(capture.source.path)}}
        written, rule = split.official_split(
            transforms.scene_to_transforms(scene, extra=extra), None
        )
        written.eyeful = {**(written.eyeful or {}), "split": rule}
        report.splits = {
            key.removesuffix("_filenames"): len(getattr(written, key) or [])
            for key in transforms.SPLIT_KEYS
        }
        transforms.write_transforms(build / "transforms.json", written)
    report.kept = len(canonical)
    return report


def _check_free_space(
    capture: PhoneExport,
    selected: Sequence[tuple[int, tuple[int, int]]],
    out_dir: Path,
    options: ImportOptions,
    rewritten: bool,
) -> None:
    """Refuse an import that cannot fit before writing any of it, as download does: the
    images' bytes (from the archive's headers or the files; nothing for hard links, which
    only images written unchanged get), one byte a pixel for an image made on demand (a
    video frame) or encoded again, plus about one byte a pixel for each 16-bit depth PNG."""
    source, needed = capture.source, 0
    for index, (width, height) in selected:
        frame = capture.frames[index]
        linked = options.link and not rewritten and source.local_path(frame.image_path)
        if not linked:
            stored = source.member_size(frame.image_path)
            needed += max(stored, width * height) if rewritten or not stored else stored
        if options.depth and frame.depth_path is not None:
            needed += width * height
    require_free_space(out_dir, needed, f"importing {len(selected)} frames")


def skipped_note(what: str, names: Sequence[str], shown: int = 5) -> str:
    """A summary note naming what a reader skipped: ``poses without an image: 2 skipped (20,
    31)``; long lists end in ``...``."""
    listed = ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")
    return f"{what}: {len(names)} skipped ({listed})"


def even_subsample(items: Sequence[T], max_count: int | None) -> list[T]:
    """At most ``max_count`` items, evenly spread, first and last kept (nerfstudio's rule)."""
    items = list(items)
    if max_count is None or len(items) <= max_count:
        return items
    if max_count == 1:
        return items[:1]
    picks = np.round(np.linspace(0, len(items) - 1, max_count)).astype(int)
    return [items[p] for p in picks]


def _drop_blurry(
    capture: PhoneExport,
    candidates: list[int],
    blur_filter: blur.BlurFilter,
    decode: Callable[[int], np.ndarray | None],
    report: ImportReport,
    progress: Progress | None,
) -> list[int]:
    use_app = all(capture.frames[i].extras.get("app_score") is not None for i in candidates)
    if use_app:
        report.score_name = f"{capture.app} score {blur_filter.describe()}"
    else:
        report.score_name = f"laplacian variance {blur_filter.describe()}"
    scored: list[int] = []
    scores: list[float] = []
    for step, index in enumerate(candidates):
        pixels = decode(index)
        if progress:
            progress("scoring sharpness", step + 1, len(candidates))
        if pixels is None:
            continue
        app_score = capture.frames[index].extras.get("app_score")
        scores.append(
            float(app_score) if use_app and app_score is not None else blur.sharpness(pixels)
        )
        scored.append(index)
    keep = blur_filter.keep(scores)
    report.dropped_blurry = [
        capture.frames[i].extras["name"] for i, k in zip(scored, keep, strict=True) if not k
    ]
    if report.dropped_blurry:
        log.info("dropped as blurry: %s", ", ".join(report.dropped_blurry))
    return [i for i, k in zip(scored, keep, strict=True) if k]


def _camera_for(capture: PhoneExport, frame: Frame, image_size: tuple[int, int]) -> Camera:
    """Intrinsics for the image as stored; rescaled when the export's images were resized."""
    camera = frame.camera
    width, height = camera.width_px, camera.height_px
    if not (0 < camera.cx < width and 0 < camera.cy < height):
        raise InputFormatError(
            capture.source.display(frame.image_path),
            f"its camera's principal point ({camera.cx:g}, {camera.cy:g}) lies outside the"
            f" {width}x{height} image (intrinsics written row-major, or for another image size?)",
        )
    if (width, height) == image_size:
        return camera
    if abs(width / height - image_size[0] / image_size[1]) > _ASPECT_TOLERANCE * width / height:
        raise InputFormatError(
            capture.source.display(frame.image_path),
            f"image is {image_size[0]}x{image_size[1]} but its camera says {width}x{height}"
            " (rotated after export?)",
        )
    return rescale_camera(camera, *image_size)


def _write_frames(
    capture: PhoneExport,
    frames: list[tuple[int, Camera]],
    build: Path,
    options: ImportOptions,
    turns: int,
    report: ImportReport,
    progress: Progress | None,
) -> list[Frame]:
    (build / "images").mkdir()
    canonical = []
    for step, (index, stored_camera) in enumerate(frames):
        frame = capture.frames[index]
        name = frame.extras["name"]
        suffix = PurePosixPath(frame.image_path).suffix.lower() or ".jpg"
        image_rel = f"images/{name}{suffix}"
        crop = options.crop_border_px
        cropped = _crop_camera(stored_camera, crop, capture.source.display(frame.image_path))
        camera, world_from_cam = rotate_image_quarter_turns(cropped, frame.world_from_cam, turns)
        if turns or crop:
            image = _decode_colour(capture.source, frame.image_path)
            image = image[crop : image.shape[0] - crop, crop : image.shape[1] - crop]
            imageio.write_image(build / image_rel, np.rot90(image, turns))
        else:
            _copy_member(capture.source, frame.image_path, build / image_rel, options.link)
        depth_rel = None
        if options.depth and frame.depth_path is not None:
            size = (stored_camera.width_px, stored_camera.height_px)
            depth_mm = ios_depth.depth_mm(capture.source, frame, size, capture.min_confidence)
            if depth_mm is not None:
                depth_mm = depth_mm[crop : size[1] - crop, crop : size[0] - crop]
                depth_rel = f"depth/{name}.png"
                imageio.write_image(
                    build / depth_rel, np.ascontiguousarray(np.rot90(depth_mm, turns))
                )
                report.depth_written += 1
        canonical.append(
            Frame(
                image_path=image_rel,
                camera=camera,
                world_from_cam=world_from_cam,
                rig_position_id=index,
                depth_path=depth_rel,
                color_space="srgb",
            )
        )
        if progress:
            progress("writing frames", step + 1, len(frames))
    return canonical


def _copy_member(source: Source, name: str, target: Path, link: bool) -> None:
    """Hard-link (``link``, folders only) or stream a member into ``target``. A symlink in the
    source is linked through to the file it names: a hard link to a relative symlink would
    dangle in the dataset."""
    local = source.local_path(name)
    if link and local is not None:
        with contextlib.suppress(OSError):
            os.link(local.resolve(strict=True), target)
            return
    with atomic_path(target) as tmp:
        if local is not None:
            shutil.copyfile(local, tmp)
        else:
            with open(tmp, "wb") as handle:
                source.copy_to(name, handle)


# ---------------------------------------------------------------------------------------------
# Images and depth.


def _crop_camera(camera: Camera, crop_px: int, where: str) -> Camera:
    """The camera of the image with ``crop_px`` cut from every side (undistortion borders)."""
    if crop_px == 0:
        return camera
    if 2 * crop_px >= min(camera.width_px, camera.height_px) - 2:
        raise UsageError(where, f"--crop-border {crop_px} leaves no image")
    return replace(
        camera,
        width_px=camera.width_px - 2 * crop_px,
        height_px=camera.height_px - 2 * crop_px,
        cx=camera.cx - crop_px,
        cy=camera.cy - crop_px,
    )


def _quarter_turns(rotate: str, world_from_cams: Sequence[np.ndarray]) -> int:
    """Quarter turns CCW for ``--rotate``; ``auto`` picks the turn whose image "up" (OpenCV -y)
    is on average closest to the world's +y (ARKit: gravity up; Record3D: the first frame's up)."""
    if rotate in ROTATIONS:
        return ROTATIONS[rotate]
    probe = Camera(model=CameraModel.OPENCV, width_px=2, height_px=2, fx=1, fy=1, cx=1, cy=1)

    def uprightness(turns: int) -> float:
        ups = [
            -rotate_image_quarter_turns(probe, pose, turns)[1][:3, 1] for pose in world_from_cams
        ]
        return float(np.mean([up[1] for up in ups]))

    return max(range(4), key=uprightness)


def _decode_colour(source: Source, name: str) -> np.ndarray:
    """RGB [H, W, 3] uint8 of a stored image (EXIF orientation ignored), strictly decoded."""
    return imageio.decode_image_bytes(source.read_bytes(name), source.display(name))


def _decode_grey(source: Source, name: str) -> np.ndarray | None:
    """Stored pixels (EXIF orientation ignored, as nerfstudio and COLMAP do), or None for an
    image that does not decode cleanly (truncated, corrupt, or in a damaged archive member: the
    frame is skipped and reported). An image over the pixel limit is refused (raised), not
    skipped."""
    try:
        data = source.read_bytes(name)
    except DamagedMemberError:
        return None
    where = source.display(name)
    try:
        size = imageio.header_size(data, where)
    except InputFormatError:
        return None
    if size is not None:
        imageio.check_image_size(where, *size)
    try:
        pixels = imageio.decode_image_bytes(data, where, grey=True)
    except InputFormatError:
        return None
    return None if min(pixels.shape[:2]) < 3 else pixels


# ---------------------------------------------------------------------------------------------
# The output folder.
