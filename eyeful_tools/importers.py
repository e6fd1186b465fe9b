"""The importer registry: every format ``eyeful import`` reads, as one row of :data:`IMPORTERS`.

Each row says what it is (name, help, options as plain data), how it recognises its input
(:meth:`Importer.detect`, a yes or no with the reason) and how it runs. The ``import``
subcommands are generated from this table, and ``import auto`` walks it in order: the first row
that matches runs, and when none does the user sees every row's reason on one line
(``shared/reference/ios.md`` §8.1). Adding a format is one reader module and one row here.

Phone formats are recognised by the same test their reader uses to find its root (so a folder
that detects as Stray is one the Stray reader reads); the rest by what the files are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from pathlib import Path, PurePosixPath
from typing import Any

from eyeful_tools.archive import MIB, ArchiveLimits, Source
from eyeful_tools.blur import parse_blur_filter
from eyeful_tools.errors import InputFormatError, MissingFileError
from eyeful_tools.imageio import PHOTO_SUFFIXES, VIDEO_SUFFIXES
from eyeful_tools.importer import (
    Detection,
    Importer,
    Option,
    Probe,
    Progress,
    Row,
    Values,
    choice,
    defaults,
)
from eyeful_tools.ios_import import ImportOptions, PhoneExport, import_capture
from eyeful_tools.readers import nerfcapture, polycam, record3d, stray

#: a folder of at least this many photos (and nothing that names a format) is photos for SfM
MIN_PHOTOS = 3
#: NeRFCapture's transforms.json keys (offline app, nerfcapture2nerf.py)
_NERFCAPTURE_KEYS = ("depth_integer_scale", "integer_depth_scale")


# ---------------------------------------------------------------------------------------------
# Options the commands share.


def _out(help: str) -> Option:
    return Option("out", "--out", Path, ..., help)


def _overwrite(help: str) -> Option:
    return Option("overwrite", "--overwrite", bool, False, help)


def _blur(help: str) -> Option:
    return Option("blur_filter", "--blur-filter", str, "none", help)


PHONE_OUT = _out("Dataset folder to create (images/, depth/, transforms.json).")
PHONE_MAX_FRAMES = Option(
    "max_frames", "--max-frames", int | None, None, "Keep at most N frames, evenly spread.", min=1
)
PHONE_BLUR = _blur(
    "Drop blurry frames: 'percentile:P' drops the blurriest P%, 'threshold:T' drops frames "
    "scoring below T (variance of the Laplacian, or Polycam's blur_score), 'none'."
)
LINK = Option("link", "--link", bool, False, "Hard-link images from a source folder, not copy.")
DEPTH = Option("depth", "--depth/--no-depth", bool, True, "Write depth/ as 16-bit PNG millimetres.")
PHONE_OVERWRITE = _overwrite("Replace a non-empty --out folder.")
ROTATE = Option(
    "rotate",
    "--rotate",
    str,
    "auto",
    "Turn images upright, with their intrinsics and poses: auto (the turn that puts gravity up, "
    "so nerfstudio's orientation step keeps it at +z), none, cw, ccw or 180.",
)
MAX_MEMBER_MB = Option(
    "max_member_mb",
    "--max-member-mb",
    int,
    ArchiveLimits().max_member_bytes // MIB,
    "Refuse a zip member that unpacks to more than this many MiB (and a file in a source "
    "folder that is read whole, such as an image or JSON file).",
    min=1,
)
MAX_TOTAL_MB = Option(
    "max_total_mb",
    "--max-total-mb",
    int,
    ArchiveLimits().max_total_bytes // MIB,
    "Refuse a zip whose members together unpack to more than this many MiB.",
    min=1,
)
MAX_RATIO = Option(
    "max_ratio",
    "--max-ratio",
    float,
    ArchiveLimits().max_ratio,
    "Refuse a zip member over 1 MiB that unpacks to more than this many times its packed "
    "size (a zip bomb).",
    min=1.0,
)
ARCHIVE = (MAX_MEMBER_MB, MAX_RATIO, MAX_TOTAL_MB)
#: what ``import auto`` takes; each importer gets these and its own defaults for the rest
AUTO_OPTIONS = (
    PHONE_OUT,
    PHONE_MAX_FRAMES,
    PHONE_BLUR,
    PHONE_OVERWRITE,
    ROTATE,
    *ARCHIVE,
)

SFM_OUT = _out("Dataset folder to write.")


def _sfm_max_frames(help: str) -> Option:
    return Option("max_frames", "--max-frames", int | None, None, help, min=2)  # SfM needs 2


SFM_BLUR = _blur(
    "Drop blurry images: 'percentile:P' drops the blurriest P%, 'threshold:T' drops scores "
    "below T (variance of the Laplacian), 'none'."
)
MATCHER = Option(
    "matcher",
    "--matcher",
    str,
    "auto",
    "auto | exhaustive | sequential (auto: exhaustive for small sets).",
)
CAMERA_MODEL = Option(
    "camera_model",
    "--camera-model",
    str,
    "SIMPLE_RADIAL",
    "COLMAP camera model to estimate (e.g. OPENCV).",
)
MIN_REGISTERED = Option(
    "min_registered",
    "--min-registered",
    float,
    0.5,
    "Fail when SfM registers a smaller fraction.",
    min=0.0,
    max=1.0,
)
MAX_FEATURES = Option(
    "max_features",
    "--max-features",
    int,
    8192,
    "SIFT features per image (fewer is faster).",
    min=64,
)
THREADS = Option(
    "threads",
    "--threads",
    int,
    -1,
    "CPU threads (-1: all); 1 gives reproducible, bit-identical results.",
)
SEED = Option("seed", "--seed", int, 0, "Random seed for COLMAP's mapper.")
IMAGE_MODE = Option(
    "image_mode",
    "--image-mode",
    str | None,
    None,
    "How transforms.json reaches the images: 'reference' (relative paths to the source), "
    "'symlink' or 'copy' (into OUT/images/).",
)
SFM_OVERWRITE = _overwrite("Replace the dataset in --out (the whole folder), only on success.")
SFM_TAIL = (MIN_REGISTERED, MAX_FEATURES, THREADS, SEED)


# ---------------------------------------------------------------------------------------------
# Running: the phone apps share the iOS pipeline, photos and video SfM.


def _limits(values: Values) -> ArchiveLimits:
    return ArchiveLimits(
        max_member_bytes=values["max_member_mb"] * MIB,
        max_ratio=values["max_ratio"],
        max_total_bytes=values["max_total_mb"] * MIB,
    )


def phone_options(values: Values) -> ImportOptions:
    """The shared pipeline's options from a phone command's values."""
    return ImportOptions(
        archive_limits=_limits(values),
        crop_border_px=values.get("crop_border", 0),
        max_frames=values["max_frames"],
        blur_filter=parse_blur_filter(values["blur_filter"]),
        link=values.get("link", False),
        depth=values["depth"],
        overwrite=values["overwrite"],
        rotate=values["rotate"],
    )


def _read_record3d(source: Path, values: Values) -> PhoneExport:
    return record3d.read_record3d(source, _limits(values))


def _read_polycam(source: Path, values: Values) -> PhoneExport:
    return polycam.read_polycam(source, use_raw=values["raw"], limits=_limits(values))


def _read_stray(source: Path, values: Values) -> PhoneExport:
    return stray.read_stray(source, min_confidence=values["min_confidence"], limits=_limits(values))


def _read_nerfcapture(source: Path, values: Values) -> PhoneExport:
    return nerfcapture.read_nerfcapture(source, _limits(values))


def _phone(read: Callable[[Path, Values], PhoneExport]) -> Callable[[Path, Values, Progress], str]:
    """A phone format's run: its reader's scene through the shared pipeline."""

    def run(source: Path, values: Values, progress: Progress) -> str:
        options = phone_options(values)  # a bad option before the reader opens anything
        export = read(source, values)
        return import_capture(export, values["out"], options, progress).one_line()

    return run


def _sfm_options(values: Values, single_camera: bool) -> Any:
    from eyeful_tools import sfm  # pycolmap: only when an SfM import runs

    return sfm.SfmOptions(
        matcher=choice(sfm.Matcher, values["matcher"], "--matcher"),
        camera_model=values["camera_model"],
        single_camera=single_camera,
        min_registered_fraction=values["min_registered"],
        max_num_features=values["max_features"],
        num_threads=values["threads"],
        seed=values["seed"],
    )


def _images(source: Path, values: Values, progress: Progress) -> str:
    from eyeful_tools import colmap_io, sfm

    options = _sfm_options(values, values["single_camera"])
    report = sfm.import_images(
        source,
        values["out"],
        max_frames=values["max_frames"],
        blur_filter=parse_blur_filter(values["blur_filter"]),
        image_mode=choice(colmap_io.ImageMode, values["image_mode"] or "copy", "--image-mode"),
        options=options,
        progress=progress,
        overwrite=values["overwrite"],
    )
    return report.one_line()


def _video(source: Path, values: Values, progress: Progress) -> str:
    from eyeful_tools import sfm

    report = sfm.import_video(
        source,
        values["out"],
        max_frames=values["max_frames"] or sfm.DEFAULT_VIDEO_FRAMES,
        blur_filter=parse_blur_filter(values["blur_filter"]),
        options=_sfm_options(values, True),
        progress=progress,
        overwrite=values["overwrite"],
    )
    return report.one_line()


def _colmap(source: Path, values: Values, progress: Progress) -> str:
    from eyeful_tools import colmap_io

    del progress
    mode = values["image_mode"] or "reference"
    result = colmap_io.import_colmap(
        source,
        values["images"],
        values["out"],
        image_mode=choice(colmap_io.ImageMode, mode, "--image-mode"),
        overwrite=values["overwrite"],
    )
    scene = result.scene
    positions = {f.rig_position_id for f in scene.frames if f.rig_position_id is not None}
    parts = [f"{len(scene.frames)} images", f"world {scene.world_up.value}"]
    if positions:
        parts.append(f"{len(positions)} rig positions")
    if result.num_unregistered:
        parts.append(f"{result.num_unregistered} unregistered left out")
    return ", ".join(parts) + f" -> {result.transforms_path}"


# ---------------------------------------------------------------------------------------------
# Recognising: each returns a Detection whether or not it matches.


def _on_source(test: Callable[[Source], Detection]) -> Callable[[Probe], Detection]:
    """A detector for formats that are a folder or a zip: ``test`` sees the opened source."""

    def detect(probe: Probe) -> Detection:
        if probe.source is None:
            return Detection(False, probe.unreadable)
        return test(probe.source)

    return detect


@_on_source
def _detect_record3d(source: Source) -> Detection:
    found = record3d.detect(source)
    if found is None:
        return Detection(False, "no metadata.json beside rgb/, nor an .r3d's metadata beside rgbd/")
    return Detection(True, "metadata.json beside rgb/" if found[0] == "exr" else "an .r3d")


@_on_source
def _detect_polycam(source: Source) -> Detection:
    if polycam.find_keyframes(source) is None:
        return Detection(False, "no keyframes/ folder")
    return Detection(True, "keyframes/")


@_on_source
def _detect_stray(source: Source) -> Detection:
    if stray.find_prefix(source) is None:
        return Detection(False, "no odometry.csv")
    return Detection(True, "odometry.csv")


def _is_nerfcapture(document: dict[str, Any]) -> bool:
    """NeRFCapture writes its own keys and extension-less ``file_path``; anything else with a
    transforms.json is a nerfstudio dataset already."""
    if any(key in document for key in _NERFCAPTURE_KEYS):
        return True
    frames = document.get("frames")
    paths = (
        [f.get("file_path") for f in frames if isinstance(f, dict)]
        if isinstance(frames, list)
        else []
    )
    return bool(paths) and all(isinstance(p, str) and not PurePosixPath(p).suffix for p in paths)


def _transforms(nerfcapture_wanted: bool) -> Callable[[Probe], Detection]:
    """The detector for a transforms.json that is NeRFCapture's, or one that is not."""

    @_on_source
    def detect(source: Source) -> Detection:
        prefix = nerfcapture.find_prefix(source)
        if prefix is None:
            return Detection(False, "no transforms.json")
        document = source.read_json_object(prefix + "transforms.json")
        if _is_nerfcapture(document) == nerfcapture_wanted:
            return Detection(True, "transforms.json")
        if nerfcapture_wanted:
            return Detection(False, "transforms.json without a depth scale key or bare file_path")
        return Detection(False, "transforms.json is NeRFCapture's")

    return detect


@_on_source
def _detect_colmap(source: Source) -> Detection:
    from eyeful_tools.colmap_io import MODEL_FILES  # pycolmap: only when detecting

    folders: dict[str, set[str]] = {}
    for name in source.names():
        parent, _, base = name.rpartition("/")
        folders.setdefault(parent, set()).add(base)
    if any(files >= set(model) for files in folders.values() for model in MODEL_FILES):
        return Detection(True, "cameras, images and points3D in one folder")
    return Detection(False, "no cameras, images and points3D (.bin or .txt) in one folder")


def _detect_video(probe: Probe) -> Detection:
    if probe.path.is_file() and probe.path.suffix.lower() in VIDEO_SUFFIXES:
        return Detection(True, f"a {probe.path.suffix} file")
    return Detection(False, f"not a video file ({', '.join(VIDEO_SUFFIXES)})")


def _detect_images(probe: Probe) -> Detection:
    if not probe.path.is_dir() or probe.source is None:
        return Detection(False, "not a folder")
    names = probe.source.names()
    photos = sum(PurePosixPath(n).suffix.lower() in PHOTO_SUFFIXES for n in names)
    found = f"{photos} photos ({', '.join(PHOTO_SUFFIXES)})"
    if photos < MIN_PHOTOS:
        return Detection(False, f"{found}, fewer than {MIN_PHOTOS}")
    return Detection(True, found)


# ---------------------------------------------------------------------------------------------
# The table: detection order, and the order of the ``import`` subcommands.

_PHONE = (PHONE_OUT, PHONE_MAX_FRAMES, PHONE_BLUR, LINK, DEPTH, PHONE_OVERWRITE, ROTATE, *ARCHIVE)

IMPORTERS: tuple[Importer, ...] = (
    Row(
        "record3d",
        'Import a Record3D export ("EXR + JPG" folder or ".r3d") with poses, intrinsics and '
        "depth.\n\nExample: eyeful import record3d scan.r3d --out data/scan --max-frames 300 "
        "--blur-filter percentile:10",
        "EXR+JPG export folder, or an .r3d file.",
        _PHONE,
        _detect_record3d,
        _phone(_read_record3d),
        reader=_read_record3d,
    ),
    Row(
        "polycam",
        "Import a Polycam raw-data export (corrected cameras preferred), with depth when "
        "present.\n\nExample: eyeful import polycam polycam_export.zip --out data/room "
        "--blur-filter threshold:25",
        "Polycam raw-data export folder or its .zip.",
        (
            *_PHONE,
            Option(
                "raw",
                "--raw",
                bool,
                False,
                "Use the raw ARKit cameras/images even when corrected ones exist.",
            ),
            Option(
                "crop_border",
                "--crop-border",
                int,
                0,
                "Cut PX pixels from every side (the black undistortion border; nerfstudio "
                "uses 15).",
                min=0,
            ),
        ),
        _detect_polycam,
        _phone(_read_polycam),
        reader=_read_polycam,
    ),
    Row(
        "stray",
        "Import a Stray Scanner export: frames from rgb.mp4, poses from odometry.csv, LiDAR "
        "depth.\n\nExample: eyeful import stray stray_scan/ --out data/desk --max-frames 300 "
        "--blur-filter percentile:10",
        "Stray Scanner export folder (rgb.mp4, odometry.csv, ...) or its .zip.",
        (
            *(option for option in _PHONE if option is not LINK),  # frames come from a video
            Option(
                "min_confidence",
                "--min-confidence",
                int,
                stray.MIN_CONFIDENCE,
                "Keep depth where the LiDAR confidence is at least this (0 low, 1 medium, 2 high).",
                min=0,
                max=2,
            ),
        ),
        _detect_stray,
        _phone(_read_stray),
        reader=_read_stray,
    ),
    Row(
        "nerfcapture",
        "Import a NeRFCapture export (transforms.json with ARKit poses), with 16-bit depth when "
        "present.\n\nExample: eyeful import nerfcapture 240101120000.zip --out data/mug "
        "--rotate auto",
        "NeRFCapture offline export (.zip or folder), or nerfcapture2nerf.py --save_path output.",
        _PHONE,
        _transforms(nerfcapture_wanted=True),
        _phone(_read_nerfcapture),
        reader=_read_nerfcapture,
    ),
    Row(
        "nerfstudio",
        "A nerfstudio dataset already: nothing to import.",
        "",
        (),
        _transforms(nerfcapture_wanted=False),
        refusal="already a nerfstudio dataset (transforms.json): train it as it is",
    ),
    Row(
        "colmap",
        "Import a COLMAP model (ours, EyefulTower's colmap/sparse, any) into transforms.json.\n\n"
        "Models written by 'eyeful export colmap' come back in their z-up world with rig ids, "
        "splits and crop radii; other models use nerfstudio's COLMAP world convention.\n\n"
        "Example: eyeful import colmap data/riverview/colmap/sparse/0 --images "
        "data/riverview/colmap/images --out data/riverview-ns",
        "COLMAP model folder (or its parent sparse/).",
        (
            Option("images", "--images", Path, ..., "Folder the model's image names are in."),
            _out("Folder to write transforms.json into."),
            IMAGE_MODE,
            _overwrite("Replace transforms.json, sparse_pc.ply (and images/) in --out."),
        ),
        _detect_colmap,
        _colmap,
        progress="none",
        label="import colmap: ",
        source_name="sparse_dir",
        refusal="a COLMAP model: use 'eyeful import colmap MODEL --images IMAGE_DIR --out DIR'",
    ),
    Row(
        "video",
        "A walk-through video -> sharpest frame per interval -> COLMAP SfM -> transforms.json."
        "\n\nExample: eyeful import video walk.mp4 --out data/walk --max-frames 150",
        "A video file (anything OpenCV decodes).",
        (
            SFM_OUT,
            _sfm_max_frames("Frames to keep: the sharpest per interval (300)."),
            SFM_BLUR,
            MATCHER,
            CAMERA_MODEL,
            *SFM_TAIL,
            SFM_OVERWRITE,
        ),
        _detect_video,
        _video,
        progress="sfm",
        label="import video: ",
    ),
    Row(
        "images",
        "Photos without poses -> COLMAP SfM (pycolmap, CPU) -> transforms.json.\n\n"
        "Example: eyeful import images photos/ --out data/photos --max-frames 200",
        "Folder of photos (searched recursively).",
        (
            SFM_OUT,
            _sfm_max_frames("Use at most N images/frames."),
            SFM_BLUR,
            MATCHER,
            CAMERA_MODEL,
            Option(
                "single_camera",
                "--single-camera/--per-image-camera",
                bool,
                True,
                "One shared camera, or one per image.",
            ),
            *SFM_TAIL,
            IMAGE_MODE,
            SFM_OVERWRITE,
        ),
        _detect_images,
        _images,
        progress="sfm",
        label="import images: ",
    ),
)


def detections(path: str | Path) -> Generator[tuple[Importer, Detection], None, None]:
    """Every importer's verdict on ``path``, in table order (the first match wins)."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(path, "source not found")
    probe = Probe(path)
    try:
        for importer in IMPORTERS:
            yield importer, importer.detect(probe)
    finally:
        probe.close()


def detect(path: str | Path) -> Importer:
    """The importer for the capture at ``path`` (folder, zip, ``.r3d`` or video file); raises
    InputFormatError with every importer's reason, on one line, when none matches."""
    reasons = []
    with contextlib.closing(detections(path)) as verdicts:
        for importer, found in verdicts:
            if found.matched:
                return importer
            reasons.append(f"{importer.name}: {found.reason}")
    raise InputFormatError(path, "cannot tell what captured this (" + "; ".join(reasons) + ")")


def auto_values(importer: Importer, values: Values) -> dict[str, Any]:
    """``import auto``'s values for ``importer``: its defaults, then what auto was given."""
    names = {option.name for option in importer.options}
    return defaults(importer) | {name: value for name, value in values.items() if name in names}
