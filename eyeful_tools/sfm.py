"""Structure from motion for captures without poses: photos or a video -> transforms.json.

Stages (each reported through ``progress(stage, done, total)``):

1. ``frames`` (video only): OpenCV decodes every frame and keeps the sharpest one per interval
   of ``ceil(frame_count / max_frames)`` frames (:func:`eyeful_tools.blur.sharpness`, the same
   variance-of-Laplacian score as the iOS import), written as JPEG to ``out/images/``.
2. ``blur`` (optional ``--blur-filter``): drops the blurriest images by percentile or threshold.
3. ``features``: pycolmap SIFT extraction into ``out/colmap/database.db``.
4. ``matching``: exhaustive for small sets, sequential (neighbours in name order) for video or
   large sets.
5. ``mapping``: pycolmap incremental mapping on the CPU; the model with the most registered
   images is kept in ``out/colmap/sparse/0`` and converted by :mod:`eyeful_tools.colmap_io`
   (world ``WorldUp.COLMAP``, arbitrary scale) into ``out/transforms.json`` and
   ``out/sparse_pc.ply``.

Mapping that registers fewer than ``min_registered_fraction`` of the images is an error that
says so (and what to try), rather than a dataset with holes.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import cv2
import numpy as np
import pycolmap

from eyeful_tools import blur, cameras, colmap_io, imageio
from eyeful_tools.colmap_io import ImageMode
from eyeful_tools.errors import InputFormatError, MissingFileError, UsageError
from eyeful_tools.fsio import atomic_dir, check_output_folder, require_free_space
from eyeful_tools.imageio import PHOTO_SUFFIXES, open_video, video_frame_count, write_image
from eyeful_tools.ios_import import even_subsample

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
#: ``Matcher.AUTO`` matches exhaustively up to this many images, sequentially beyond
EXHAUSTIVE_MAX_IMAGES = 150
DEFAULT_VIDEO_FRAMES = 300
COLMAP_FOLDER = cameras.COLMAP_MODEL_IN_DATASET.parts[0]  # the model: cameras' layout


class Matcher(str, Enum):
    AUTO = "auto"  # exhaustive for photos up to EXHAUSTIVE_MAX_IMAGES, sequential otherwise
    EXHAUSTIVE = "exhaustive"
    SEQUENTIAL = "sequential"


@dataclass(frozen=True, kw_only=True)
class SfmOptions:
    """Knobs of the SfM run; defaults follow COLMAP's, sized for a CPU."""

    matcher: Matcher = Matcher.AUTO
    camera_model: str = "SIMPLE_RADIAL"  # COLMAP's default; imported as OPENCV with k1
    single_camera: bool = True  # one shared camera (a phone or a video) vs one per image
    max_image_size_px: int = 1600  # SIFT runs on images downscaled to this longest side
    max_num_features: int = 8192
    sequential_overlap: int = 10  # neighbours matched per image with the sequential matcher
    min_registered_fraction: float = 0.5
    #: -1 = all cores; 1 makes a run reproducible (bit-identical poses for the same input and
    #: seed; multi-threaded RANSAC and bundle adjustment vary slightly from run to run)
    num_threads: int = -1
    seed: int = 0


@dataclass
class SfmReport:
    out_dir: Path
    source: Path
    num_input: int = 0  # images (or video frames) before selection
    num_images: int = 0  # images given to SfM
    num_registered: int = 0
    num_points: int = 0
    matcher: str = ""
    mean_reprojection_error_px: float = 0.0
    dropped_blurry: int = 0
    dropped_subsample: int = 0
    transforms_path: Path | None = None
    notes: list[str] = field(default_factory=list)

    def one_line(self) -> str:
        parts = [
            f"{self.num_registered}/{self.num_images} images registered "
            f"({self.matcher} matching, {self.num_points} points, "
            f"{self.mean_reprojection_error_px:.2f} px mean reprojection error)"
        ]
        dropped = []
        if self.dropped_blurry:
            dropped.append(f"{self.dropped_blurry} blurry")
        if self.dropped_subsample:
            dropped.append(f"{self.dropped_subsample} by --max-frames")
        if dropped:
            parts.append("dropped " + ", ".join(dropped))
        parts.extend(self.notes)
        parts.append(f"-> {self.transforms_path}")
        return "; ".join(parts)


def _noop(stage: str, done: int, total: int) -> None:
    del stage, done, total


# ---------------------------------------------------------------------------------------------
# Selecting images.


def natural_sort_key(name: str) -> list[int | str]:
    """Natural order: "img2" < "img10" (digit runs compare as numbers)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_images(folder: Path) -> list[str]:
    """Image files under ``folder`` (recursive), as posix paths relative to it, natural order."""
    if not folder.is_dir():
        raise MissingFileError(folder, "images folder not found")
    names = [
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file()
        and path.suffix.lower() in PHOTO_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    ]
    if not names:
        raise InputFormatError(folder, f"no images ({', '.join(PHOTO_SUFFIXES)}) found")
    return sorted(names, key=natural_sort_key)


def drop_blurry(
    folder: Path,
    names: Sequence[str],
    blur_filter: blur.BlurFilter,
    progress: Progress = _noop,
) -> list[str]:
    """The names that pass ``blur_filter`` (scores from greyscale decodes)."""
    if not blur_filter.active:
        return list(names)
    scores = []
    for done, name in enumerate(names, start=1):
        path = folder / name
        pixels = imageio.decode_image_bytes(path.read_bytes(), path, grey=True)  # strict
        scores.append(blur.sharpness(pixels))
        progress("blur", done, len(names))
    keep = blur_filter.keep(scores)
    return [name for name, kept in zip(names, keep, strict=True) if kept]


# ---------------------------------------------------------------------------------------------
# Video frames.


@dataclass(frozen=True)
class VideoFrames:
    names: list[str]  # written under images_dir
    total_frames: int
    interval: int


def extract_video_frames(
    video: str | Path,
    images_dir: str | Path,
    *,
    max_frames: int = DEFAULT_VIDEO_FRAMES,
    progress: Progress = _noop,
) -> VideoFrames:
    """Write the sharpest frame of every interval of ``ceil(count / max_frames)`` frames.

    Frames are named ``frame_<index>.jpg`` after their index in the video (0-based, 5 digits),
    so they sort in time order.
    """
    video, images_dir = Path(video), Path(images_dir)
    if not video.is_file():
        raise MissingFileError(video, "video not found")
    if max_frames < 1:
        raise UsageError("--max-frames", f"must be at least 1, got {max_frames}")
    total = video_frame_count(video)
    capture = open_video(video)
    if total <= 0:
        raise InputFormatError(video, "the video has no frames")
    interval = max(1, math.ceil(total / max_frames))
    names: list[str] = []
    best: tuple[float, int, np.ndarray] | None = None

    def flush() -> None:
        nonlocal best
        if best is None:
            return
        _, index, pixels = best
        name = f"frame_{index:05d}.jpg"
        write_image(images_dir / name, cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB))
        names.append(name)
        best = None

    index = 0
    try:
        while True:
            ok, pixels = capture.read()
            if not ok:
                break
            score = blur.sharpness(pixels)
            if best is None or score > best[0]:
                best = (score, index, pixels)
            index += 1
            if index % interval == 0:
                flush()
            progress("frames", min(index, total), total)
        flush()
    finally:
        capture.release()
    if not names:
        raise InputFormatError(video, "no frame could be decoded")
    return VideoFrames(names=names, total_frames=index, interval=interval)


# ---------------------------------------------------------------------------------------------
# SfM.


def choose_matcher(matcher: Matcher | str, num_images: int, *, video: bool) -> Matcher:
    matcher = Matcher(matcher)
    if matcher is not Matcher.AUTO:
        return matcher
    if video or num_images > EXHAUSTIVE_MAX_IMAGES:
        return Matcher.SEQUENTIAL
    return Matcher.EXHAUSTIVE


def run_sfm(
    image_dir: Path,
    image_names: Sequence[str],
    work_dir: Path,
    options: SfmOptions,
    matcher: Matcher,
    progress: Progress = _noop,
) -> pycolmap.Reconstruction:
    """Features, matches and incremental mapping; returns the largest model (also written to
    ``work_dir/sparse/0``). Raises when too few images register."""
    if len(image_names) < 2:
        raise InputFormatError(image_dir, f"SfM needs at least 2 images, got {len(image_names)}")
    if options.camera_model not in colmap_io.COLMAP_MODELS:
        raise UsageError(
            "--camera-model",
            f"{options.camera_model!r} is not one of {', '.join(colmap_io.COLMAP_MODELS)}",
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    database = work_dir / "database.db"
    database.unlink(missing_ok=True)
    pycolmap.set_random_seed(options.seed)
    _extract_features(database, image_dir, image_names, options, progress)
    _match_features(database, options, matcher, progress)
    best = _map_incrementally(database, image_dir, len(image_names), work_dir, options, progress)
    count = 0 if best is None else best.num_reg_images()
    needed = max(2, math.ceil(options.min_registered_fraction * len(image_names)))
    if count < needed:
        raise InputFormatError(
            image_dir,
            f"SfM registered only {count} of {len(image_names)} images (need {needed}); the "
            "images may overlap too little or lack texture: try more images, "
            "--matcher exhaustive, or a lower --min-registered",
        )
    assert best is not None
    # keep exactly one model, as sparse/0, whichever index the mapper gave it
    sparse = work_dir / "sparse"
    final = work_dir / "sparse-final"
    final.mkdir(exist_ok=True)
    best.write_binary(str(final))
    shutil.rmtree(sparse)
    sparse.mkdir()
    final.rename(sparse / "0")
    progress("mapping", len(image_names), len(image_names))
    return best


def _extract_features(
    database: Path,
    image_dir: Path,
    image_names: Sequence[str],
    options: SfmOptions,
    progress: Progress,
) -> None:
    """SIFT features of the named images into ``database``, one shared camera when
    ``options.single_camera`` (a single phone or lens), else one per image size and EXIF."""
    progress("features", 0, len(image_names))
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = options.camera_model
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = options.max_image_size_px
    extraction.num_threads = options.num_threads
    extraction.sift.max_num_features = options.max_num_features
    pycolmap.extract_features(
        database,
        image_dir,
        image_names=list(image_names),
        camera_mode=pycolmap.CameraMode.SINGLE
        if options.single_camera
        else pycolmap.CameraMode.AUTO,
        reader_options=reader,
        extraction_options=extraction,
    )
    progress("features", len(image_names), len(image_names))


def _match_features(
    database: Path, options: SfmOptions, matcher: Matcher, progress: Progress
) -> None:
    """Match features between image pairs: neighbours in order (video, sorted photos) or all
    pairs (few unordered photos)."""
    progress("matching", 0, 1)
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = options.num_threads
    if matcher is Matcher.SEQUENTIAL:
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = options.sequential_overlap
        pycolmap.match_sequential(database, matching_options=matching, pairing_options=pairing)
    else:
        pycolmap.match_exhaustive(database, matching_options=matching)
    progress("matching", 1, 1)


def _map_incrementally(
    database: Path,
    image_dir: Path,
    num_images: int,
    work_dir: Path,
    options: SfmOptions,
    progress: Progress,
) -> pycolmap.Reconstruction | None:
    """Seeded incremental mapping into a fresh ``work_dir/sparse``, reporting each registered
    image; returns the model with the most registered images (None: no model at all)."""
    mapping = pycolmap.IncrementalPipelineOptions()
    mapping.num_threads = options.num_threads
    mapping.random_seed = options.seed
    mapping.mapper.random_seed = options.seed
    mapping.triangulation.random_seed = options.seed
    registered = 0

    def next_image() -> None:
        nonlocal registered
        registered += 1
        progress("mapping", min(registered, num_images), num_images)

    progress("mapping", 0, num_images)
    sparse = work_dir / "sparse"
    if sparse.exists():
        shutil.rmtree(sparse)
    sparse.mkdir()
    models = pycolmap.incremental_mapping(
        database, image_dir, sparse, options=mapping, next_image_callback=next_image
    )
    return max(models.values(), key=lambda m: m.num_reg_images(), default=None)


def _check_out_free(out_dir: Path, overwrite: bool, source: Path) -> None:
    """Refuse a --out that holds anything (unless ``overwrite``) or that overlaps ``source``.

    The dataset is built in a temp folder beside ``out_dir`` and takes its place only when SfM
    succeeded (:func:`fsio.atomic_dir`): a failed or killed run leaves the old dataset as it
    was, and nothing new.
    """
    check_output_folder(out_dir, overwrite, inputs=[source])


def _sfm_to_dataset(
    image_dir: Path,
    names: list[str],
    build: Path,
    *,
    video: bool,
    options: SfmOptions,
    image_mode: ImageMode | str,
    report: SfmReport,
    progress: Progress,
) -> SfmReport:
    """SfM into ``build`` (a sibling of ``report.out_dir``, so relative paths are the same)."""
    matcher = choose_matcher(options.matcher, len(names), video=video)
    work_dir = build / COLMAP_FOLDER
    model = run_sfm(image_dir, names, work_dir, options, matcher, progress)
    extra = {"source": {"sfm": "pycolmap incremental", "path": str(report.source)}}
    colmap_io.import_reconstruction(
        model,
        image_dir,
        build,
        image_mode=image_mode,
        name=report.out_dir.name,
        where=report.out_dir / cameras.COLMAP_MODEL_IN_DATASET,
        extra=extra,
    )
    report.transforms_path = report.out_dir / "transforms.json"
    report.num_images = len(names)
    report.num_registered = model.num_reg_images()
    report.num_points = model.num_points3D()
    report.matcher = matcher.value
    report.mean_reprojection_error_px = float(model.compute_mean_reprojection_error())
    if report.num_registered < len(names):
        report.notes.append(
            f"{len(names) - report.num_registered} images not registered (left out)"
        )
    return report


def import_images(
    source: str | Path,
    out_dir: str | Path,
    *,
    max_frames: int | None = None,
    blur_filter: blur.BlurFilter = blur.BlurFilter(),
    image_mode: ImageMode | str = ImageMode.COPY,
    options: SfmOptions = SfmOptions(),
    progress: Progress = _noop,
    overwrite: bool = False,
) -> SfmReport:
    """Photos in ``source`` (recursively) -> SfM -> ``out_dir/transforms.json``."""
    source, out_dir = Path(source), Path(out_dir)
    if max_frames is not None and max_frames < 2:
        raise UsageError("--max-frames", f"SfM needs at least 2 images, got {max_frames}")
    names = list_images(source)
    _check_out_free(out_dir, overwrite, source)
    report = SfmReport(out_dir=out_dir, source=source, num_input=len(names))
    sharp = drop_blurry(source, names, blur_filter, progress)
    report.dropped_blurry = len(names) - len(sharp)
    selected = even_subsample(sharp, max_frames)
    report.dropped_subsample = len(sharp) - len(selected)
    for name in selected:  # COLMAP decodes with its own reader: refuse damaged or huge ones first
        imageio.verify_image(source / name)
    if ImageMode(image_mode) is ImageMode.COPY:  # before SfM, not after its minutes of work
        needed = sum((source / name).stat().st_size for name in selected)
        require_free_space(out_dir, needed, f"copying {len(selected)} images")
    with atomic_dir(out_dir) as build:
        return _sfm_to_dataset(
            source,
            selected,
            build,
            video=False,
            options=options,
            image_mode=image_mode,
            report=report,
            progress=progress,
        )


def import_video(
    source: str | Path,
    out_dir: str | Path,
    *,
    max_frames: int = DEFAULT_VIDEO_FRAMES,
    blur_filter: blur.BlurFilter = blur.BlurFilter(),
    options: SfmOptions = SfmOptions(),
    progress: Progress = _noop,
    overwrite: bool = False,
) -> SfmReport:
    """A video -> sharpest frame per interval in ``out_dir/images`` -> SfM -> transforms.json."""
    source, out_dir = Path(source), Path(out_dir)
    if not source.is_file():
        raise MissingFileError(source, "video not found")
    _check_out_free(out_dir, overwrite, source)
    with atomic_dir(out_dir) as build:
        images_dir = build / "images"
        frames = extract_video_frames(source, images_dir, max_frames=max_frames, progress=progress)
        report = SfmReport(out_dir=out_dir, source=source, num_input=frames.total_frames)
        report.notes.append(f"sharpest of every {frames.interval} frames")
        sharp = drop_blurry(images_dir, frames.names, blur_filter, progress)
        for name in set(frames.names) - set(sharp):
            (images_dir / name).unlink()
        report.dropped_blurry = len(frames.names) - len(sharp)
        return _sfm_to_dataset(
            images_dir,
            sharp,
            build,
            video=True,
            options=options,
            image_mode=ImageMode.REFERENCE,
            report=report,
            progress=progress,
        )
