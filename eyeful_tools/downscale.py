"""Image pyramids beside a ``transforms.json``: ``images_N/``, ``masks_N/``, ``depths_N/`` and
``transforms_N.json``, in nerfstudio's layout.

nerfstudio's dataparser looks for ``<data>/images_N/<file_path basename>`` (sub-folders dropped)
when it downscales, so the folders are flat and basenames must be unique. Sizes follow
nerfstudio's producer: ``ns-process-data`` runs ffmpeg ``scale=iw/N:ih/N``, which truncates, and
``Cameras.rescale_output_resolution`` floors by default, so factor N gives
``(floor(w / N), floor(h / N))``. ``transforms_N.json`` points at the copies, with intrinsics
scaled per axis from the size actually written (the math of :func:`cameras.rescale_camera`).

Speed: a JPEG is decoded once, at the largest libjpeg reduced scale (1/2, 1/4, 1/8) that divides
every factor still to write and both image sides, then area-resized only where the reduced size
is not the target.
Each factor is derived from the nearest smaller one already made. EXR and PNG are resized in
their own channel type (float16 goes through float32 and back). Masks and depth maps use nearest
sampling, always from the full-size file. Work runs in :mod:`eyeful_tools.procpool`'s spawn
pool; every write is atomic. An output is skipped when it has the right size and was written
from the source as it is now: :data:`STATE_FILE` records each output's source identity (size,
mtime, ctime, inode), since a replaced source can carry an older mtime than the output.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from eyeful_tools import cameras, imageio
from eyeful_tools.errors import (
    EyefulError,
    InputFormatError,
    MissingFileError,
    UsageError,
)
from eyeful_tools.fsio import (
    atomic_open,
    atomic_write_json,
    clean_stale_temps,
    require_free_space,
)
from eyeful_tools.procpool import run_jobs
from eyeful_tools.transforms import (
    SPLIT_KEYS,
    TransformsFile,
    dump_transforms,
    read_transforms,
    transforms_file,
    write_transforms,
)

log = logging.getLogger(__name__)

DEFAULT_FACTORS = (2, 4, 8)
DEFAULT_JPEG_QUALITY = 95


class Kind(str, Enum):
    """What a file is; decides the output folder and the filter."""

    IMAGE = "images"  # area averaging
    MASK = "masks"  # nearest
    DEPTH = "depths"  # nearest (nerfstudio reads depths_N/)


@dataclass(frozen=True)
class Output:
    """One file to write: the source downscaled by ``factor`` to exactly ``size_px`` (w, h)."""

    factor: int
    path: str
    size_px: tuple[int, int]


@dataclass(frozen=True)
class Job:
    """All outputs of one source file, ascending factor; runs in a worker process."""

    kind: Kind
    source: str
    size_px: tuple[int, int]
    outputs: tuple[Output, ...]
    jpeg_quality: int = DEFAULT_JPEG_QUALITY


@dataclass(frozen=True)
class JobResult:
    written: int
    #: (path, reason) of an EyefulError raised in the worker; ours do not unpickle by themselves
    error: tuple[str, str] | None = None


@dataclass
class DownscaleResult:
    transforms_path: Path
    factors: tuple[int, ...]
    sources: int = 0
    written: int = 0
    up_to_date: int = 0
    transforms_written: list[Path] = field(default_factory=list)
    transforms_unchanged: list[Path] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Sizes and names.


def scaled_size(width_px: int, height_px: int, factor: int) -> tuple[int, int]:
    """(w, h) of the factor-N copy: floor, as nerfstudio's ffmpeg call and dataparser do."""
    return max(1, width_px // factor), max(1, height_px // factor)


def factor_for_max_dim(width_px: int, height_px: int, max_dim_px: int) -> int:
    """The smallest power of two whose copy has ``max(w, h) <= max_dim_px`` (1 if it already fits)."""
    if max_dim_px < 1:
        raise UsageError(None, f"--max-dim must be at least 1 (got {max_dim_px})")
    factor = 1
    while max(scaled_size(width_px, height_px, factor)) > max_dim_px:
        factor *= 2
    return factor


def downscaled_transforms_path(transforms_path: Path, factor: int) -> Path:
    """``transforms.json`` -> ``transforms_N.json``; ``transforms_300.json`` -> ``transforms_300_N.json``."""
    return transforms_path.with_name(f"{transforms_path.stem}_{factor}{transforms_path.suffix}")


def output_folder(kind: Kind, factor: int) -> str:
    """``images_N`` and its siblings (:func:`cameras.downscaled_folder`)."""
    return cameras.downscaled_folder(kind.value, factor)


# ---------------------------------------------------------------------------------------------
# The whole dataset.


@dataclass(frozen=True)
class _Source:
    kind: Kind
    path: Path
    size_px: tuple[int, int]


def downscale(
    data: str | Path,
    factors: Sequence[int] = (),
    *,
    max_dim_px: int | None = None,
    jobs: int | None = None,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    progress: Callable[[int, int], None] | None = None,
    executor: Executor | None = None,
) -> DownscaleResult:
    """Write ``images_N/`` (and ``masks_N/``, ``depths_N/``) and ``transforms_N.json`` per factor.

    ``factors`` defaults to 2, 4, 8 unless ``max_dim_px`` is given, which adds the smallest power
    of two bringing the largest image to ``max(w, h) <= max_dim_px``. ``progress(done, total)``
    is called per source file. ``executor`` lets a caller reuse a pool (benchmarks); otherwise a
    spawn pool of ``jobs`` workers (default: the CPU count) is made when there is work for it.
    Every check (missing files, basename collisions, size mismatches) runs before any write.
    """
    bad = sorted(f for f in factors if f < 2)
    if bad:
        raise UsageError(None, f"--factor must be 2 or more (got {bad[0]})")
    if not 1 <= jpeg_quality <= 100:
        raise UsageError(None, f"--quality must be in 1..100 (got {jpeg_quality})")
    if max_dim_px is not None and max_dim_px < 1:
        raise UsageError(None, f"--max-dim must be at least 1 (got {max_dim_px})")
    transforms_path = transforms_file(data)
    transforms = read_transforms(transforms_path)
    base = transforms_path.parent

    resolve = functools.cache(Path.resolve)  # each path resolved once (a few lstat calls)
    frame_sources = _frame_sources(transforms, transforms_path, resolve)
    sources = _measure(transforms, transforms_path, frame_sources, resolve)
    chosen = _choose_factors(factors, max_dim_px, sources)
    result = DownscaleResult(transforms_path=transforms_path, factors=chosen)
    result.sources = len(sources)
    if not chosen:
        return result

    for folder in {base, *(base / output_folder(s.kind, f) for s in sources for f in chosen)}:
        clean_stale_temps(folder)  # what a killed run left, even where nothing is redone
    state = read_state(base)
    work, planned = _plan_jobs(sources, chosen, base, jpeg_quality, state)
    result.up_to_date = len(sources) * len(chosen) - sum(len(job.outputs) for job in work)
    require_free_space(base, _estimated_bytes(work), f"downscaling {len(work)} files")
    results = run_jobs(run_job, work, jobs=jobs, progress=progress, executor=executor)
    for job_result in results:
        if job_result.error is not None:
            raise InputFormatError(*job_result.error)
        result.written += job_result.written
    if any(state.get(key) != identity for key, identity in planned.items()):
        atomic_write_json(base / STATE_FILE, dict(sorted({**state, **planned}.items())), indent=0)

    for factor in chosen:
        out_path = downscaled_transforms_path(transforms_path, factor)
        new = rescale_transforms(
            transforms, factor, frame_sources, sources, transforms_path, resolve=resolve
        )
        if out_path.is_file() and out_path.read_text(encoding="utf-8") == dump_transforms(new):
            result.transforms_unchanged.append(out_path)
        else:
            write_transforms(out_path, new)
            result.transforms_written.append(out_path)
    return result


def _frame_sources(
    transforms: TransformsFile, transforms_path: Path, resolve: Callable[[Path], Path]
) -> list[dict[Kind, Path]]:
    """Per frame, the absolute source path of its image, mask and depth map."""
    base = transforms_path.parent
    frames = []
    for item in transforms.frames:
        named = {
            Kind.IMAGE: item.file_path,
            Kind.MASK: item.mask_path,
            Kind.DEPTH: item.depth_file_path,
        }
        frames.append({kind: base / name for kind, name in named.items() if name})
    missing = sorted(
        {os.path.relpath(p, base) for paths in frames for p in paths.values() if not p.is_file()}
    )
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        )
        raise MissingFileError(transforms_path, f"{len(missing)} listed files are missing: {shown}")

    collisions = []
    for kind in Kind:
        by_name: dict[str, set[Path]] = {}
        for paths in frames:
            if kind in paths:
                by_name.setdefault(paths[kind].name, set()).add(resolve(paths[kind]))
        for name, found in sorted(by_name.items()):
            if len(found) > 1:
                listed = ", ".join(sorted(os.path.relpath(p, base.resolve()) for p in found))
                collisions.append(f"{name} <- {listed}")
    if collisions:
        raise InputFormatError(
            transforms_path,
            "basenames collide, but images_N/ is flat as nerfstudio requires: "
            + "; ".join(collisions),
        )

    for paths in frames:
        for path in paths.values():
            folder = path.parent
            if (
                cameras.is_downscaled_folder(folder.name)
                and folder.parent.resolve() == base.resolve()
            ):
                raise UsageError(
                    transforms_path,
                    f"lists {path.parent.name}/ files, which are already downscaled copies; "
                    "run downscale on the full-size transforms.json",
                )
    return frames


def _measure(
    transforms: TransformsFile,
    transforms_path: Path,
    frame_sources: list[dict[Kind, Path]],
    resolve: Callable[[Path], Path],
) -> list[_Source]:
    """Header sizes of every distinct source; images must match the size the file declares,
    masks their image's size."""
    sources: dict[Path, _Source] = {}
    for index, (item, paths) in enumerate(zip(transforms.frames, frame_sources, strict=True)):
        for kind, path in paths.items():
            key = resolve(path)
            if key not in sources:
                sources[key] = _Source(kind, path, _file_size(path))
            if kind is not Kind.IMAGE:
                continue
            # nerfstudio's precedence: a top-level size applies to every frame
            declared = (
                transforms.w if transforms.w is not None else item.w,
                transforms.h if transforms.h is not None else item.h,
            )
            if None not in declared and declared != sources[key].size_px:
                w, h = sources[key].size_px
                raise InputFormatError(
                    path,
                    f"image is {w}x{h} but {transforms_path.name} frame {index} says "
                    f"{declared[0]}x{declared[1]}",
                )
        if Kind.MASK in paths and Kind.IMAGE in paths:  # nerfstudio's loader needs them equal
            mask = sources[resolve(paths[Kind.MASK])].size_px
            image = sources[resolve(paths[Kind.IMAGE])].size_px
            if mask != image:
                raise InputFormatError(
                    paths[Kind.MASK],
                    f"mask is {mask[0]}x{mask[1]} but its image {item.file_path} is "
                    f"{image[0]}x{image[1]}",
                )
    return list(sources.values())


def _file_size(path: Path) -> tuple[int, int]:
    if path.suffix.lower() == ".npy":
        try:
            shape = np.load(path, mmap_mode="r").shape
        except (ValueError, OSError) as error:
            raise InputFormatError(path, f"cannot read .npy ({error})") from error
        return int(shape[1]), int(shape[0])
    return imageio.image_size(path)


def _choose_factors(
    factors: Sequence[int], max_dim_px: int | None, sources: Sequence[_Source]
) -> tuple[int, ...]:
    chosen = set(factors)
    if max_dim_px is not None:
        images = [s.size_px for s in sources if s.kind is Kind.IMAGE]
        width, height = max(images, key=max) if images else (1, 1)
        factor = factor_for_max_dim(width, height, max_dim_px)
        if factor > 1:
            chosen.add(factor)
    elif not chosen:
        chosen = set(DEFAULT_FACTORS)
    return tuple(sorted(chosen))


#: per output (``images_2/x.jpg``), what its source was when it was written: a hidden file
#: beside transforms.json, so images_N/ holds only images
STATE_FILE = ".eyeful-downscale.json"


def source_identity(path: Path, jpeg_quality: int) -> list[int]:
    """What makes an output stale when it changes: the source's size, mtime, ctime and inode
    (a file replaced by ``cp -p``, ``rsync -a`` or ``unzip`` keeps an old mtime, but never its
    inode and ctime), and the JPEG quality asked for."""
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, jpeg_quality]


def read_state(base: Path) -> dict[str, list[int]]:
    """The recorded identities; an unreadable record means every output is redone."""
    try:
        state = json.loads((base / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _plan_jobs(
    sources: Sequence[_Source],
    factors: Sequence[int],
    base: Path,
    jpeg_quality: int,
    state: dict[str, list[int]],
) -> tuple[list[Job], dict[str, list[int]]]:
    """One job per source with the outputs that are missing, the wrong size, or written from
    a source that has changed since; and the identities to record once they are written."""
    work = []
    planned: dict[str, list[int]] = {}
    for source in sources:
        identity = source_identity(source.path, jpeg_quality)
        outputs = []
        for factor in factors:
            key = cameras.downscaled_file(source.path.name, factor, source.kind.value)
            size = scaled_size(*source.size_px, factor)
            planned[key] = identity
            if state.get(key) != identity or not _right_size(base / key, size):
                outputs.append(Output(factor, str(base / key), size))
        if outputs:
            work.append(
                Job(source.kind, str(source.path), source.size_px, tuple(outputs), jpeg_quality)
            )
    return work, planned


def _estimated_bytes(work: Sequence[Job]) -> int:
    """Output bytes, guessed as the source's bytes per pixel (an upper bound for most JPEGs,
    whose small copies compress about as well)."""
    total = 0
    for job in work:
        source_bytes = os.stat(job.source).st_size
        pixels = job.size_px[0] * job.size_px[1]
        total += sum(source_bytes * o.size_px[0] * o.size_px[1] // pixels for o in job.outputs)
    return total


def _right_size(target: Path, size_px: tuple[int, int]) -> bool:
    try:
        return _file_size(target) == size_px
    except (OSError, EyefulError):
        return False


# ---------------------------------------------------------------------------------------------
# transforms_N.json


def rescale_transforms(
    transforms: TransformsFile,
    factor: int,
    frame_sources: Sequence[dict[Kind, Path]],
    sources: Sequence[_Source],
    transforms_path: Path,
    *,
    resolve: Callable[[Path], Path] = Path.resolve,
) -> TransformsFile:
    """A copy pointing at the factor-N files, intrinsics scaled per axis to the written size.

    The math is :func:`cameras.rescale_camera`'s: ``fl_x, cx`` by ``w'/w``, ``fl_y, cy`` by
    ``h'/h`` (corner-origin pixels, so the principal point scales like the focal length), the
    fisheye crop radius (pixels) by the mean of the two (the top-level radius by the smallest
    such mean when image sizes differ). Top-level intrinsics need one scale for every frame.
    Splits, ``applied_transform`` and our extras are kept.
    """
    size_of = {resolve(s.path): s.size_px for s in sources}
    # shallow copies (a deep one of 10^4 frames costs more than the rest): every field changed
    # below is reassigned, never mutated in place, so the input is left as it was
    new = transforms.model_copy()
    new.frames = [item.model_copy() for item in transforms.frames]
    renamed: dict[str, str] = {}
    sizes: set[tuple[tuple[int, int], tuple[int, int]]] = set()  # (w, h) -> (w', h')
    for item, paths in zip(new.frames, frame_sources, strict=True):
        size = size_of[resolve(paths[Kind.IMAGE])]
        new_size = scaled_size(*size, factor)
        sizes.add((size, new_size))
        _rescale_fields(item, size, new_size)
        if item.eyeful is not None and item.eyeful.fisheye_crop_radius is not None:
            radius = _rescaled_radius(item.eyeful.fisheye_crop_radius, size, new_size)
            item.eyeful = item.eyeful.model_copy(update={"fisheye_crop_radius": radius})
        new_path = cameras.downscaled_file(paths[Kind.IMAGE].name, factor)
        renamed[item.file_path] = new_path
        item.file_path = new_path
        if item.mask_path:
            item.mask_path = cameras.downscaled_file(paths[Kind.MASK].name, factor, Kind.MASK.value)
        if item.depth_file_path:
            depth = paths[Kind.DEPTH].name
            item.depth_file_path = cameras.downscaled_file(depth, factor, Kind.DEPTH.value)

    shared = [k for k in ("fl_x", "fl_y", "cx", "cy", "w", "h") if getattr(new, k) is not None]
    if shared:
        if len(sizes) > 1:
            raise InputFormatError(
                transforms_path,
                f"top-level {', '.join(shared)} but images of several sizes; "
                "move the intrinsics into the frames",
            )
        _rescale_fields(new, *next(iter(sizes)))
    if new.fisheye_crop_radius is not None:
        # one radius for every frame: the smallest scaled one, as scene_to_transforms picks
        radius = new.fisheye_crop_radius
        new.fisheye_crop_radius = min(_rescaled_radius(radius, *pair) for pair in sizes)

    for key in SPLIT_KEYS:
        names = getattr(new, key)
        if names is not None:
            setattr(
                new,
                key,
                [renamed.get(n, cameras.downscaled_file(n, factor)) for n in names],
            )
    new.eyeful = {
        **(transforms.eyeful or {}),
        "downscale": {"factor": factor, "source": transforms_path.name},
    }
    return new


#: transforms.json's names of the intrinsics :func:`cameras.rescale_intrinsics` scales
_FIELDS = {"fl_x": "fx", "fl_y": "fy", "cx": "cx", "cy": "cy"}


def _rescale_fields(model: Any, size_px: tuple[int, int], new_size_px: tuple[int, int]) -> None:
    """Rescale whichever of fl_x, fl_y, cx, cy are set (:func:`cameras.rescale_intrinsics`);
    set w, h if they were."""
    values = {ours: getattr(model, key) for key, ours in _FIELDS.items()}
    scaled = cameras.rescale_intrinsics(
        {name: value for name, value in values.items() if value is not None}, size_px, new_size_px
    )
    for key, ours in _FIELDS.items():
        if ours in scaled:
            setattr(model, key, scaled[ours])
    if model.w is not None:
        model.w = new_size_px[0]
    if model.h is not None:
        model.h = new_size_px[1]


def _rescaled_radius(
    radius: float, size_px: tuple[int, int], new_size_px: tuple[int, int]
) -> float:
    """A fisheye crop radius (pixels) at the new size (:func:`cameras.rescale_intrinsics`)."""
    key = "fisheye_crop_radius_px"
    return cameras.rescale_intrinsics({key: radius}, size_px, new_size_px)[key]


# ---------------------------------------------------------------------------------------------
# Workers.


def run_job(job: Job) -> JobResult:
    """Decode one source once and write each of its outputs (runs in a worker)."""
    try:
        return JobResult(written=_run(job))
    except EyefulError as error:
        return JobResult(written=0, error=(error.path or job.source, error.reason))
    except OSError as error:  # a full disk or a read-only output folder: the file it names
        where = job.source if error.filename is None else os.fsdecode(error.filename)
        return JobResult(written=0, error=(where, error.strerror or str(error)))
    except (cv2.error, ValueError) as error:
        return JobResult(written=0, error=(job.source, f"cannot downscale ({error})"))


def _run(job: Job) -> int:
    source = Path(job.source)
    if job.kind is Kind.IMAGE:
        scale, decoded, is_bgr = _decode_image(source, job.size_px, job.outputs)
        made = {scale: decoded}
        for output in job.outputs:
            # the nearest smaller copy this factor is a multiple of (the decode is always one)
            start = max(f for f in made if output.factor % f == 0)
            pixels = _resize(made[start], output.size_px, cv2.INTER_AREA)
            made[output.factor] = pixels
            # a reversed view: write_image flips BGR back without a copy
            _write(Path(output.path), pixels[..., ::-1] if is_bgr else pixels, job.jpeg_quality)
        return len(job.outputs)
    full = _read_plain(source)
    for output in job.outputs:
        _write(Path(output.path), _resize(full, output.size_px, cv2.INTER_NEAREST_EXACT), 100)
    return len(job.outputs)


def _decode_image(
    source: Path, size_px: tuple[int, int], outputs: Sequence[Output]
) -> tuple[int, np.ndarray, bool]:
    """(scale, pixels, is_bgr): a JPEG at the largest reduced scale (1, 2, 4, 8) that divides
    every factor and both sides, else the full image.

    Only an exact reduced size will do: libjpeg rounds a reduced size up, so its last pixel
    covers padding and a resize to the target would stretch the image by up to half a pixel.
    JPEG pixels stay in OpenCV's BGR order (a resize does not care) and EXIF orientation is
    ignored, as nerfstudio's ffmpeg ``-noautorotate`` and PIL do.
    """
    if source.suffix.lower() not in imageio.JPEG_SUFFIXES:
        return 1, imageio.read_image(source), False
    common = math.gcd(*(o.factor for o in outputs), *size_px)
    scale = max(s for s in (1, 2, 4, 8) if common % s == 0)
    # strict: a truncated or corrupt JPEG is refused before any copy of it is written
    pixels = imageio.read_jpeg(source, reduce=scale, bgr=True)
    expected = (size_px[1] // scale, size_px[0] // scale)
    if pixels.shape[:2] != expected:
        raise InputFormatError(
            source, f"decoded {pixels.shape[1]}x{pixels.shape[0]}, header says {size_px}"
        )
    return scale, pixels, True


def _read_plain(source: Path) -> np.ndarray:
    if source.suffix.lower() == ".npy":
        return np.load(source)
    return imageio.read_image(source)


def _resize(pixels: np.ndarray, size_px: tuple[int, int], interpolation: int) -> np.ndarray:
    """Resize to exactly (w, h) in the same dtype; float16 goes through float32 (OpenCV has no
    half-float resize), bool through uint8."""
    if (pixels.shape[1], pixels.shape[0]) == size_px:
        return pixels
    dtype = pixels.dtype
    work = pixels
    if dtype == np.float16:
        work = pixels.astype(np.float32)
    elif dtype == np.bool_:
        work = pixels.astype(np.uint8)
    return cv2.resize(work, size_px, interpolation=interpolation).astype(dtype, copy=False)


def _write(path: Path, pixels: np.ndarray, jpeg_quality: int) -> None:
    if path.suffix.lower() == ".npy":
        with atomic_open(path, "wb") as handle:
            np.save(handle, pixels)
        return
    imageio.write_image(path, pixels, jpeg_quality=jpeg_quality)
