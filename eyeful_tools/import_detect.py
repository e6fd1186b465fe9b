"""Which importer a capture needs, from the files it holds (``shared/reference/ios.md`` §8.1).

``eyeful import auto`` uses this so a user does not have to know what their app wrote. Each
phone format is recognised by the same test its reader uses to find its root (so a folder
that detects as Stray is one the Stray reader reads); the rest by what the files are.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path, PurePosixPath

from eyeful_tools.colmap_io import MODEL_FILES
from eyeful_tools.errors import InputFormatError, MissingFileError
from eyeful_tools.imageio import PHOTO_SUFFIXES, VIDEO_SUFFIXES
from eyeful_tools.ios_import import Source
from eyeful_tools.readers import nerfcapture, polycam, record3d, stray

#: a folder of at least this many images (and nothing that names a format) is photos for SfM
MIN_PHOTOS = 3
#: NeRFCapture's transforms.json keys (offline app, nerfcapture2nerf.py)
_NERFCAPTURE_KEYS = ("depth_integer_scale", "integer_depth_scale")


class ImportFormat(str, Enum):
    RECORD3D = "record3d"
    POLYCAM = "polycam"
    STRAY = "stray"
    NERFCAPTURE = "nerfcapture"
    VIDEO = "video"
    IMAGES = "images"
    COLMAP = "colmap"  # needs --images: not imported automatically
    NERFSTUDIO = "nerfstudio"  # already a dataset: nothing to import


def detect_format(path: str | Path) -> ImportFormat:
    """The format of the capture at ``path`` (folder, zip, ``.r3d`` or video file); raises
    InputFormatError naming the path and what was looked for when nothing matches."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(path, "source not found")
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return ImportFormat.VIDEO
    source = Source(path)
    try:
        found = _detect(source)
    finally:
        source.close()
    if found is None:
        raise InputFormatError(
            path,
            "cannot tell what captured this: expected a Record3D export (metadata.json + rgb/, "
            "or .r3d), Polycam keyframes/, Stray Scanner odometry.csv + rgb.mp4, a NeRFCapture "
            f"transforms.json, a video ({', '.join(VIDEO_SUFFIXES)}), or a folder of photos",
        )
    return found


def _detect(source: Source) -> ImportFormat | None:
    if record3d.detect(source) is not None:
        return ImportFormat.RECORD3D
    if polycam.find_keyframes(source) is not None:
        return ImportFormat.POLYCAM
    if stray.find_prefix(source) is not None:
        return ImportFormat.STRAY
    prefix = nerfcapture.find_prefix(source)
    if prefix is not None:
        return _nerfcapture_or_dataset(source, prefix + "transforms.json")
    names = source.names()
    folders: dict[str, set[str]] = {}
    for name in names:
        parent, _, base = name.rpartition("/")
        folders.setdefault(parent, set()).add(base)
    if any(files >= set(model) for files in folders.values() for model in MODEL_FILES):
        return ImportFormat.COLMAP
    photos = [n for n in names if PurePosixPath(n).suffix.lower() in PHOTO_SUFFIXES]
    if len(photos) >= MIN_PHOTOS and source.path.is_dir():
        return ImportFormat.IMAGES
    return None


def _nerfcapture_or_dataset(source: Source, manifest: str) -> ImportFormat:
    """NeRFCapture writes its own keys and extension-less ``file_path``; anything else with a
    transforms.json is a nerfstudio dataset already."""
    document = source.read_json_object(manifest)
    if any(key in document for key in _NERFCAPTURE_KEYS):
        return ImportFormat.NERFCAPTURE
    frames = document.get("frames")
    paths = (
        [f.get("file_path") for f in frames if isinstance(f, dict)]
        if isinstance(frames, list)
        else []
    )
    if paths and all(isinstance(p, str) and not PurePosixPath(p).suffix for p in paths):
        return ImportFormat.NERFCAPTURE
    return ImportFormat.NERFSTUDIO
