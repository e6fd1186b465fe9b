"""Key safety: map an S3 key to a path inside the destination, or refuse it.

S3 keys are arbitrary strings. A key such as ``EyefulTower/x/../../.bashrc``, ``EyefulTower/x//etc``
or ``EyefulTower/x/a\\b`` must never be written anywhere, let alone outside the destination.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

#: local names the sync itself uses beside the downloaded files; a key may not shadow them
MANIFEST_NAME = ".eyeful-manifest.json"
PARTIAL_SUFFIX = ".incomplete"
#: beside a partial fetched in ranged parts: which parts are in (``<partial>.parts``)
SIDECAR_SUFFIX = PARTIAL_SUFFIX + ".parts"

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UnsafeKeyError(ValueError):
    """A key that would land outside the destination or clash with the sync's own files."""


def safe_relative_path(rel: str) -> PurePosixPath:
    """Check a prefix-relative key and return it as a relative POSIX path.

    Refused: empty keys, absolute paths, drive letters, backslashes, control characters, empty
    ``.`` or ``..`` segments, and names that end like the sync's own temp files or manifest.
    """
    if not rel:
        raise UnsafeKeyError("empty key")
    if "\\" in rel:
        raise UnsafeKeyError("backslash in key")
    if _CONTROL.search(rel):
        raise UnsafeKeyError("control character in key")
    if rel.startswith("/") or _DRIVE.match(rel):
        raise UnsafeKeyError("absolute path in key")
    parts = rel.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafeKeyError(f"path segment {part!r} in key")
    name = parts[-1]
    if name == MANIFEST_NAME or name.endswith((PARTIAL_SUFFIX, SIDECAR_SUFFIX)):
        raise UnsafeKeyError("key clashes with the sync's own file names")
    return PurePosixPath(*parts)


def local_path(dest: Path, rel: str, checked_dirs: set[Path] | None = None) -> Path:
    """The local file for a prefix-relative key, guaranteed to be inside ``dest``.

    ``checked_dirs`` caches parent folders already resolved (one ``realpath`` per folder, not
    per file, keeps planning 10^5 keys cheap).
    """
    path = dest.joinpath(*safe_relative_path(rel).parts)
    parent = path.parent
    if checked_dirs is not None and parent in checked_dirs:
        return path
    root = dest.resolve()
    resolved = parent.resolve()
    if resolved != root and root not in resolved.parents:
        raise UnsafeKeyError("key resolves outside the destination (symlink?)")
    if checked_dirs is not None:
        checked_dirs.add(parent)
    return path
