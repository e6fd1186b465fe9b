"""``eyeful export colmap`` and ``eyeful import colmap|images|video``: COLMAP interop and SfM."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer

from eyeful_tools.cli._app import export_app, import_app, sfm_progress, summary

if TYPE_CHECKING:
    from eyeful_tools import sfm

_OVERWRITE = typer.Option(
    False, "--overwrite", help="Replace the dataset in --out (the whole folder), only on success."
)
_IMAGE_MODE = typer.Option(
    None,
    "--image-mode",
    help="How transforms.json reaches the images: 'reference' (relative paths to the source), "
    "'symlink' or 'copy' (into OUT/images/).",
)
_MAX_FRAMES = typer.Option(None, "--max-frames", min=2, help="Use at most N images/frames.")
_BLUR = typer.Option(
    "none",
    "--blur-filter",
    help="Drop blurry images: 'percentile:P' drops the blurriest P%, 'threshold:T' drops "
    "scores below T (variance of the Laplacian), 'none'.",
)
_MATCHER = typer.Option(
    "auto", "--matcher", help="auto | exhaustive | sequential (auto: exhaustive for small sets)."
)
_CAMERA_MODEL = typer.Option(
    "SIMPLE_RADIAL", "--camera-model", help="COLMAP camera model to estimate (e.g. OPENCV)."
)
_MIN_REGISTERED = typer.Option(
    0.5, "--min-registered", min=0.0, max=1.0, help="Fail when SfM registers a smaller fraction."
)
E = TypeVar("E", bound=Enum)
_SEED = typer.Option(0, "--seed", help="Random seed for COLMAP's mapper.")
_THREADS = typer.Option(
    -1, "--threads", help="CPU threads (-1: all); 1 gives reproducible, bit-identical results."
)
_MAX_FEATURES = typer.Option(
    8192, "--max-features", min=64, help="SIFT features per image (fewer is faster)."
)


@export_app.command("colmap")
def export_colmap(
    data_dir: Path = typer.Argument(..., help="Folder with a transforms.json (or the file)."),
    out: Path = typer.Option(..., "--out", help="Folder to write sparse/0/ into."),
    binary: bool = typer.Option(True, "--binary/--text", help="COLMAP binary or text model."),
    rig: str = typer.Option(
        "auto",
        "--rig",
        help="auto: a rig when the rig positions are rigid; on: always (offsets averaged); off.",
    ),
    reference_camera: str | None = typer.Option(
        None, "--reference-camera", help="The rig's reference camera (default: the master)."
    ),
    rig_tolerance: float | None = typer.Option(
        None,
        "--rig-tolerance",
        help="Max deviation from a rigid rig, radians and scene units (default 1e-6).",
    ),
    fisheye: str = typer.Option(
        "exact",
        "--fisheye",
        help="exact: THIN_PRISM_FISHEYE where p1/p2 are nonzero; opencv: always OPENCV_FISHEYE, "
        "p1/p2 dropped (what gsplat/3DGS loaders read), the largest pixel shift reported.",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace a COLMAP model already in OUT/sparse/0."
    ),
) -> None:
    """Export a transforms.json dataset to a COLMAP model (cameras, images, rigs, frames).

    The model is in the dataset's z-up world; image names are the file paths, so use the data
    folder as COLMAP's image path. An eyeful_colmap.json beside it keeps what COLMAP cannot.

    Example: eyeful export colmap data/eyefultower/riverview/images-jpeg-2k --out data/riverview-colmap
    """
    from eyeful_tools import colmap_io

    result = colmap_io.export_colmap(
        data_dir,
        out,
        binary=binary,
        rig=_choice(colmap_io.RigMode, rig, "--rig"),
        rig_tolerance=colmap_io.RIG_TOLERANCE if rig_tolerance is None else rig_tolerance,
        reference_camera=reference_camera,
        fisheye=_choice(colmap_io.FisheyeExport, fisheye, "--fisheye"),
        overwrite=overwrite,
    )
    report = result.report
    approximated = (
        f"; p1/p2 dropped from {report.fisheye_approximated} fisheye images (max shift "
        f"{report.fisheye_max_shift_px:.2f} px)"
        if report.fisheye_approximated
        else ""
    )
    summary(
        f"export colmap: {report.num_images} images, {report.num_cameras} cameras, "
        f"{report.num_frames} frames; {report.rig_note}{approximated} -> {result.model_dir}"
    )


@import_app.command("colmap")
def import_colmap(
    sparse_dir: Path = typer.Argument(..., help="COLMAP model folder (or its parent sparse/)."),
    images: Path = typer.Option(..., "--images", help="Folder the model's image names are in."),
    out: Path = typer.Option(..., "--out", help="Folder to write transforms.json into."),
    image_mode: str | None = _IMAGE_MODE,
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace transforms.json, sparse_pc.ply (and images/) in --out."
    ),
) -> None:
    """Import a COLMAP model (ours, EyefulTower's colmap/sparse, any) into transforms.json.

    Models written by 'eyeful export colmap' come back in their z-up world with rig ids, splits
    and crop radii; other models use nerfstudio's COLMAP world convention.

    Example: eyeful import colmap data/riverview/colmap/sparse/0 --images data/riverview/colmap/images --out data/riverview-ns
    """
    from eyeful_tools import colmap_io

    result = colmap_io.import_colmap(
        sparse_dir,
        images,
        out,
        image_mode=_choice(colmap_io.ImageMode, image_mode or "reference", "--image-mode"),
        overwrite=overwrite,
    )
    scene = result.scene
    positions = {f.rig_position_id for f in scene.frames if f.rig_position_id is not None}
    parts = [f"import colmap: {len(scene.frames)} images", f"world {scene.world_up.value}"]
    if positions:
        parts.append(f"{len(positions)} rig positions")
    if result.num_unregistered:
        parts.append(f"{result.num_unregistered} unregistered left out")
    summary(", ".join(parts) + f" -> {result.transforms_path}")


def _sfm_options(
    matcher: str,
    camera_model: str,
    single_camera: bool,
    min_registered: float,
    max_features: int,
    threads: int,
    seed: int,
) -> sfm.SfmOptions:
    from eyeful_tools import sfm  # pycolmap: only when an import command runs

    return sfm.SfmOptions(
        matcher=_choice(sfm.Matcher, matcher, "--matcher"),
        camera_model=camera_model,
        single_camera=single_camera,
        min_registered_fraction=min_registered,
        max_num_features=max_features,
        num_threads=threads,
        seed=seed,
    )


@import_app.command("images")
def import_images(
    source: Path = typer.Argument(..., help="Folder of photos (searched recursively)."),
    out: Path = typer.Option(..., "--out", help="Dataset folder to write."),
    max_frames: int | None = _MAX_FRAMES,
    blur_filter: str = _BLUR,
    matcher: str = _MATCHER,
    camera_model: str = _CAMERA_MODEL,
    single_camera: bool = typer.Option(
        True, "--single-camera/--per-image-camera", help="One shared camera, or one per image."
    ),
    min_registered: float = _MIN_REGISTERED,
    max_features: int = _MAX_FEATURES,
    threads: int = _THREADS,
    seed: int = _SEED,
    image_mode: str | None = _IMAGE_MODE,
    overwrite: bool = _OVERWRITE,
) -> None:
    """Photos without poses -> COLMAP SfM (pycolmap, CPU) -> transforms.json.

    Example: eyeful import images photos/ --out data/photos --max-frames 200
    """
    from eyeful_tools import blur, colmap_io, sfm

    options = _sfm_options(
        matcher, camera_model, single_camera, min_registered, max_features, threads, seed
    )
    with sfm_progress() as progress:
        report = sfm.import_images(
            source,
            out,
            max_frames=max_frames,
            blur_filter=blur.parse_blur_filter(blur_filter),
            image_mode=_choice(colmap_io.ImageMode, image_mode or "copy", "--image-mode"),
            options=options,
            progress=progress,
            overwrite=overwrite,
        )
    summary(f"import images: {report.one_line()}")


@import_app.command("video")
def import_video(
    source: Path = typer.Argument(..., help="A video file (anything OpenCV decodes)."),
    out: Path = typer.Option(..., "--out", help="Dataset folder to write."),
    max_frames: int | None = typer.Option(
        None, "--max-frames", min=2, help="Frames to keep: the sharpest per interval (300)."
    ),
    blur_filter: str = _BLUR,
    matcher: str = _MATCHER,
    camera_model: str = _CAMERA_MODEL,
    min_registered: float = _MIN_REGISTERED,
    max_features: int = _MAX_FEATURES,
    threads: int = _THREADS,
    seed: int = _SEED,
    overwrite: bool = _OVERWRITE,
) -> None:
    """A walk-through video -> sharpest frame per interval -> COLMAP SfM -> transforms.json.

    Example: eyeful import video walk.mp4 --out data/walk --max-frames 150
    """
    from eyeful_tools import blur, sfm

    options = _sfm_options(matcher, camera_model, True, min_registered, max_features, threads, seed)
    with sfm_progress() as progress:
        report = sfm.import_video(
            source,
            out,
            max_frames=max_frames or sfm.DEFAULT_VIDEO_FRAMES,
            blur_filter=blur.parse_blur_filter(blur_filter),
            options=options,
            progress=progress,
            overwrite=overwrite,
        )
    summary(f"import video: {report.one_line()}")


def _choice(enum: type[E], value: str, option: str) -> E:
    """``enum(value)``, or a UsageError listing the choices."""
    from eyeful_tools.errors import UsageError

    try:
        return enum(value.lower())
    except ValueError:
        choices = ", ".join(member.value for member in enum)
        raise UsageError(option, f"expected one of {choices}, got {value!r}") from None
