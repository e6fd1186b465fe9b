"""``eyeful synth``: a deterministic synthetic EyefulTower capture with known ground truth.

:func:`synthesize` writes a folder laid out like one EyefulTower bucket prefix (``cameras.json``,
``cameras.xml``, ``splits.json``, ``images-jpeg-2k``, ``images-jpeg-1k``, ``images-2k``) plus
``ground_truth.json``, which the library's readers never read. :func:`example_capture` returns a
cached default capture for tests and the demo. See ``docs/synth.md``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from eyeful_tools.cameras import Camera, invert_rigid, rescale_camera
from eyeful_tools.errors import UsageError
from eyeful_tools.fsio import atomic_dir, atomic_write_json, atomic_write_text, is_temp_name
from eyeful_tools.imageio import write_image
from eyeful_tools.synth.render import pixel_rays, render, srgb_from_linear
from eyeful_tools.synth.rig import (
    RigDefinition,
    rig_definition,
    rig_from_cam,
    rig_path,
)
from eyeful_tools.synth.scene import trace
from eyeful_tools.synth.writers import (
    ChunkTransform,
    SynthImage,
    camera_dict,
    default_chunk_transform,
    krt_document,
    matrix_list,
    metashape_document,
    splits_document,
)

log = logging.getLogger(__name__)

#: bump when the output changes, so cached example captures are rebuilt
GENERATOR_VERSION = 3
DEFAULT_POSITIONS = 8
DEFAULT_SIZE_PX = (192, 288)  # images-jpeg-2k and images-2k
#: images-jpeg-1k relative to the 2k size: 100x150 for 192x288, deliberately not exactly 1/2
ONE_K_RATIO = (100 / 192, 150 / 288)
#: per-channel white balance the JPEGs apply to the linear EXR (G = 1, like the real scenes)
WHITE_BALANCE = (0.72, 1.0, 1.74)
FOLDER_2K_JPEG = "images-jpeg-2k"
FOLDER_1K_JPEG = "images-jpeg-1k"
FOLDER_2K_EXR = "images-2k"
FIRST_IMAGE_NUMBER = 101  # file names DSC0101, DSC0102, ... (not equal to frameId on purpose)

__all__ = [
    "parse_size",
    "SynthResult",
    "synthesize",
    "example_capture",
    "trace",
    "pixel_rays",
    "render",
    "rig_definition",
]


@dataclass(frozen=True)
class SynthResult:
    """What :func:`synthesize` wrote."""

    out_dir: Path
    rig: str
    positions: int
    seed: int
    camera_ids: tuple[str, ...]
    image_count: int  # per image folder
    folder_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # folder -> (w, h)


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"192x288"`` -> (192, 288); ``None`` stays ``None``."""
    if text is None:
        return None
    width, sep, height = text.lower().partition("x")
    if not sep or not width.strip().isdigit() or not height.strip().isdigit():
        raise UsageError(None, f"--size must look like WIDTHxHEIGHT (e.g. 192x288), got {text!r}")
    return int(width), int(height)


def folder_sizes(size: tuple[int, int] | None) -> dict[str, tuple[int, int]]:
    """Image size per folder: ``size`` is the 2k size; 1k is ~0.52x, rounded per axis."""
    width, height = size or DEFAULT_SIZE_PX
    if width < 8 or height < 8:
        raise UsageError(None, f"--size {width}x{height} is too small (at least 8x8)")
    one_k = (max(4, round(width * ONE_K_RATIO[0])), max(4, round(height * ONE_K_RATIO[1])))
    return {
        FOLDER_2K_JPEG: (width, height),
        FOLDER_1K_JPEG: one_k,
        FOLDER_2K_EXR: (width, height),
    }


def full_camera(rig: RigDefinition) -> Camera:
    """The rig's full-resolution camera, with its fisheye image circle where it has one."""
    return replace(rig.camera, fisheye_crop_radius_px=rig.fisheye_crop_radius_px)


def plan_images(rig: RigDefinition, positions: int, seed: int) -> list[SynthImage]:
    """Every image of the capture, position-major, with its ground truth pose."""
    world_from_rig = rig_path(positions, seed)
    images = []
    for frame_id in range(positions):
        number = FIRST_IMAGE_NUMBER + frame_id
        for rig_camera in rig.cameras:
            images.append(
                SynthImage(
                    camera_id=rig_camera.camera_id,
                    frame_id=frame_id,
                    stem=f"{rig_camera.camera_id}_DSC{number:04d}",
                    world_from_cam=world_from_rig[frame_id] @ rig_from_cam(rig_camera),
                )
            )
    return images


def synthesize(
    out_dir: str | Path,
    rig: str = "v2",
    positions: int = DEFAULT_POSITIONS,
    seed: int = 0,
    size: tuple[int, int] | None = None,
    *,
    supersample: int = 1,
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SynthResult:
    """Render and write a synthetic capture into ``out_dir`` (created if missing; an earlier
    synthetic capture there is replaced, any other non-empty folder is refused).

    ``size`` is the (width, height) of ``images-jpeg-2k`` / ``images-2k``; ``supersample`` is the
    per-axis anti-aliasing factor (2 costs 5x), ``jobs`` the number of render threads (default: CPU count, at most 4). ``progress(done, total)`` is called after each image.
    Same arguments -> byte-identical calibration files and identical pixels.
    """
    if positions < 1:
        raise UsageError(None, f"--positions must be at least 1, got {positions}")
    if supersample < 1:
        raise UsageError(None, f"supersample must be at least 1, got {supersample}")
    try:
        definition = rig_definition(rig)
    except ValueError as error:
        raise UsageError(None, str(error)) from None
    out_dir = Path(out_dir)
    sizes = folder_sizes(size)
    camera = full_camera(definition)
    images = plan_images(definition, positions, seed)
    _check_out_dir(out_dir)
    # built beside and swapped in whole: a full disk or a kill never leaves a partial capture
    # (or a mix of an old and a new one) under the final name
    with atomic_dir(out_dir) as build:
        _write_capture(build, definition, camera, images, sizes, positions, seed, supersample,
                       jobs, progress)  # fmt: skip
    log.info("wrote %d images per folder to %s", len(images), out_dir)
    return SynthResult(
        out_dir=out_dir,
        rig=definition.name,
        positions=positions,
        seed=seed,
        camera_ids=definition.camera_ids,
        image_count=len(images),
        folder_sizes=sizes,
    )


def _write_capture(
    out_dir: Path,
    definition: RigDefinition,
    camera: Camera,
    images: list[SynthImage],
    sizes: dict[str, tuple[int, int]],
    positions: int,
    seed: int,
    supersample: int,
    jobs: int | None,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Render every image and write the calibration files into ``out_dir``."""
    chunk = default_chunk_transform()
    sensor_ids = {camera_id: int(camera_id) for camera_id in definition.camera_ids}
    xml_ids = {f"{i.camera_id}@{i.frame_id}": index for index, i in enumerate(images)}
    rig_poses = {c.camera_id: rig_from_cam(c) for c in definition.cameras}
    total = len(images)
    # numpy releases the GIL in the big array operations, so threads overlap well; every image
    # is independent, so the output does not depend on the number of workers
    workers = max(1, min(jobs if jobs is not None else (os.cpu_count() or 1), 4))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(_render_image, out_dir, image, camera, sizes, seed, supersample)
            for image in images
        ]
        for done, future in enumerate(futures, start=1):
            future.result()
            if progress is not None:
                progress(done, total)

    atomic_write_json(
        out_dir / "cameras.json",
        krt_document(images, camera, sensor_ids, definition.master_camera, xml_ids),
        indent=2,
    )
    atomic_write_text(
        out_dir / "cameras.xml",
        metashape_document(
            images, camera, sensor_ids, rig_poses, definition.master_camera, xml_ids, chunk
        ),
    )
    atomic_write_json(out_dir / "splits.json", splits_document(images, definition.holdout_camera))
    atomic_write_json(
        out_dir / "ground_truth.json",
        _ground_truth(definition, camera, images, sizes, positions, seed, chunk, rig_poses),
        indent=1,
    )


#: what synth writes at the top of its folder (the image folders and the calibration files)
_OWN_NAMES = frozenset(
    {FOLDER_2K_JPEG, FOLDER_1K_JPEG, FOLDER_2K_EXR, "cameras.json", "cameras.xml", "splits.json",
     "ground_truth.json"}
)  # fmt: skip


def _check_out_dir(out_dir: Path) -> None:
    """Refuse a file, a non-empty folder that is not an earlier synthetic capture, and an
    earlier capture holding anything synth did not write (the rebuild replaces the folder
    whole, so that would be lost)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(out_dir, "exists and is not a folder")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if not (out_dir / "ground_truth.json").is_file():
        raise UsageError(out_dir, "folder is not empty and holds no synthetic capture")
    foreign = sorted(
        p.name for p in out_dir.iterdir() if p.name not in _OWN_NAMES and not is_temp_name(p.name)
    )
    if foreign:
        raise UsageError(
            out_dir,
            f"holds {', '.join(foreign[:3])} besides the synthetic capture, which rebuilding "
            "it would delete; move it or choose another folder",
        )


def _render_image(
    out_dir: Path,
    image: SynthImage,
    camera: Camera,
    sizes: dict[str, tuple[int, int]],
    seed: int,
    supersample: int,
) -> None:
    """Render one image at the 2k and 1k sizes and write its JPEGs and EXR."""
    white_balance = np.asarray(WHITE_BALANCE, dtype=np.float32)
    rendered: dict[tuple[int, int], np.ndarray] = {}
    for folder, (width, height) in sizes.items():
        if (width, height) not in rendered:
            scaled = rescale_camera(camera, width, height)
            radiance, _ = render(scaled, image.world_from_cam, seed, supersample)
            rendered[(width, height)] = radiance
        radiance = rendered[(width, height)]
        stem = out_dir / folder / image.camera_id / image.stem
        if folder == FOLDER_2K_EXR:
            # camera-native linear HDR: the white balance is what makes it neutral
            write_image(stem.with_suffix(".exr"), (radiance / white_balance).astype(np.float16))
        else:
            # the JPEG pipeline of the EyefulTower README: EXR * white balance -> sRGB OETF
            exr_like = (radiance / white_balance).astype(np.float16).astype(np.float32)
            write_image(stem.with_suffix(".jpg"), srgb_from_linear(exr_like * white_balance))


def _ground_truth(
    rig: RigDefinition,
    camera: Camera,
    images: list[SynthImage],
    sizes: dict[str, tuple[int, int]],
    positions: int,
    seed: int,
    chunk: ChunkTransform,
    rig_poses: dict[str, np.ndarray],
) -> dict[str, Any]:
    world_from_rig = rig_path(positions, seed)
    return {
        "format": "eyeful-synth-ground-truth",
        "generator_version": GENERATOR_VERSION,
        "conventions": {
            "world": "y-up, metres, floor at y = 0 (the capture's own frame, as cameras.json)",
            "camera_axes": "OpenCV (x right, y down, z forward)",
            "matrices": "row-major nested lists; world_from_cam maps camera to world points",
            "pixels": "corner origin, pixel centre at +0.5",
        },
        "rig": rig.name,
        "seed": seed,
        "positions": positions,
        "master_camera": rig.master_camera,
        "holdout_camera": rig.holdout_camera,
        "camera_ids": list(rig.camera_ids),
        "white_balance": list(WHITE_BALANCE),
        "full_resolution": {"width": camera.width_px, "height": camera.height_px},
        "camera": camera_dict(camera),
        "folders": {
            folder: {
                "width": w,
                "height": h,
                "extension": "exr" if folder == FOLDER_2K_EXR else "jpg",
                "color_space": "linear" if folder == FOLDER_2K_EXR else "srgb",
                "camera": camera_dict(rescale_camera(camera, w, h)),
            }
            for folder, (w, h) in sizes.items()
        },
        "metashape_chunk": {
            "rotation": matrix_list(chunk.rotation),
            "translation": chunk.translation.tolist(),
            "scale": chunk.scale,
            "meaning": "world = scale * rotation @ internal + translation",
        },
        "rig_cameras": {
            camera_id: {
                "sensor_id": int(camera_id),
                "rig_from_cam": matrix_list(pose),
                "cam_from_rig": matrix_list(invert_rigid(pose)),
            }
            for camera_id, pose in rig_poses.items()
        },
        "rig_positions": [
            {
                "frame_id": frame_id,
                "name": f"DSC{FIRST_IMAGE_NUMBER + frame_id:04d}",
                "world_from_rig": matrix_list(world_from_rig[frame_id]),
            }
            for frame_id in range(positions)
        ],
        "images": {
            image.krt_id: {
                "camera_id": image.camera_id,
                "frame_id": image.frame_id,
                "world_from_cam": matrix_list(image.world_from_cam),
                "camera": camera_dict(camera),
            }
            for image in images
        },
    }


def _cache_root() -> Path:
    override = os.environ.get("EYEFUL_SYNTH_CACHE")
    if override:
        return Path(override)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "eyeful" / "synth"


def example_capture(
    rig: str = "v2",
    positions: int = DEFAULT_POSITIONS,
    seed: int = 0,
    size: tuple[int, int] | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """A ready-made capture, generated on first use and cached (``$EYEFUL_SYNTH_CACHE`` or
    ``~/.cache/eyeful/synth``). Safe under concurrent callers: each builds in a temp folder
    and renames it into place. Treat the result as read-only.
    """
    key = f"{rig}-p{positions}-s{seed}-{'x'.join(map(str, size or DEFAULT_SIZE_PX))}"
    digest = hashlib.sha1(f"{key}-v{GENERATOR_VERSION}".encode()).hexdigest()[:8]
    root = Path(cache_dir) if cache_dir is not None else _cache_root()
    target = root / f"{key}-{digest}"
    if (target / "ground_truth.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        synthesize(staging, rig=rig, positions=positions, seed=seed, size=size)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "ground_truth.json").is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
