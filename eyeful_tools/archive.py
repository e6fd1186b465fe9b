"""A folder or a zip archive (``.zip``, ``.r3d``) read the same way, with unpacking limits.

Phone apps export either a folder or a zip of it; readers address both by POSIX paths relative to
the root. A zip is untrusted input, so:

* a member that would escape the output folder (absolute, ``..``, drive letters, backslashes)
  refuses the whole archive before anything is read;
* a member is unpacked only if its header says it fits :class:`ArchiveLimits`: at most
  ``max_member_bytes`` unpacked, and (above ``ratio_floor_bytes``) at most ``max_ratio`` times
  its packed size. ``zipfile`` never inflates more than the header's size (it stops there and
  then fails the CRC), so checking the header bounds what is unpacked. The error names the
  member and the option that raises the limit;
* a damaged member (bad CRC, corrupt deflate data, truncation, encryption) is a
  :class:`DamagedMemberError` naming it, which callers may treat like a corrupt file in a folder;
* members are streamed in chunks where they are copied, never read whole.
"""

from __future__ import annotations

import lzma
import os
import posixpath
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from eyeful_tools.errors import InputFormatError, LimitError, MissingFileError
from eyeful_tools.fsio import parse_json

MIB = 1 << 20
#: what reading a zip member raises when its bytes are damaged (CRC, deflate, truncation,
#: bzip2/lzma data, an encrypted or unsupported member)
ZIP_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,  # also bad bzip2 data
    RuntimeError,
    NotImplementedError,
    ValueError,
)
_CHUNK = MIB


class DamagedMemberError(InputFormatError):
    """An archive member whose bytes cannot be unpacked (the archive itself opened fine)."""


@dataclass(frozen=True)
class ArchiveLimits:
    """What one zip member may unpack to; checked from its header before any byte is inflated.

    Defaults leave room for real exports (a Stray ``rgb.mp4`` can be gigabytes; JPEG, PNG, MP4
    and LZFSE barely compress) and refuse bombs (a 1.6 MB zip holding a 1.5 GiB member).
    """

    max_member_bytes: int = 4096 * MIB
    max_ratio: float = 100.0
    #: what all members together may unpack to (many members each under the limits)
    max_total_bytes: int = 65536 * MIB
    #: members this small may have any ratio (a megabyte of zeros harms nobody)
    ratio_floor_bytes: int = MIB

    def check(self, info: zipfile.ZipInfo, where: str) -> None:
        size, packed = info.file_size, info.compress_size
        if size > self.max_member_bytes:
            raise LimitError(
                where,
                f"archive member unpacks to {_mib(size)}, over the {_mib(self.max_member_bytes)}"
                " limit (raise it with --max-member-mb)",
            )
        if size > self.ratio_floor_bytes and size > self.max_ratio * max(packed, 1):
            raise LimitError(
                where,
                f"archive member unpacks to {_mib(size)} from {_mib(packed)} (ratio "
                f"{size / max(packed, 1):.0f}, over the limit of {self.max_ratio:g}: a zip bomb?"
                "; raise it with --max-ratio)",
            )

    def check_total(self, archive: zipfile.ZipFile, where: Path) -> None:
        """Refuse an archive whose members together unpack to more than ``max_total_bytes``."""
        total = sum(info.file_size for info in archive.infolist())
        if total > self.max_total_bytes:
            raise LimitError(
                where,
                f"archive unpacks to {_mib(total)} in all, over the {_mib(self.max_total_bytes)} "
                "limit (raise it with --max-total-mb)",
            )

    def check_file(self, path: Path, size: int) -> None:
        """Refuse a file in a source folder that would be read whole into memory and is over
        ``max_member_bytes`` (a 1.5 GiB "image")."""
        if size > self.max_member_bytes:
            raise LimitError(
                path,
                f"file is {_mib(size)}, over the {_mib(self.max_member_bytes)} limit for files "
                "read whole (raise it with --max-member-mb)",
            )


def _mib(size: int) -> str:
    return f"{size / MIB:.1f} MiB"


class Source:
    """A folder or a zip archive, addressed by POSIX paths relative to its root."""

    def __init__(self, path: str | Path, limits: ArchiveLimits = ArchiveLimits()) -> None:
        self.path = Path(path)
        self.limits = limits
        self._zip: zipfile.ZipFile | None = None
        #: members made on demand (video frames, converted depth): name -> (read, display)
        self._virtual: dict[str, tuple[Callable[[], bytes], str]] = {}
        self._on_close: list[Callable[[], None]] = []
        if not self.path.exists():
            raise MissingFileError(self.path, "source not found")
        if self.path.is_dir():
            found = (p.relative_to(self.path).as_posix() for p in self.path.rglob("*"))
            self._set_names([name for name in found if (self.path / name).is_file()])
            return
        self._zip = _open_zip(self.path)
        try:
            limits.check_total(self._zip, self.path)
        except LimitError:
            self._zip.close()
            raise
        self._set_names([info.filename for info in self._zip.infolist() if not info.is_dir()])

    def _set_names(self, names: list[str]) -> None:
        """Keep the files, minus macOS archive noise (``__MACOSX/``, ``._*``, ``.DS_Store``)."""
        self._names = sorted(
            name
            for name in names
            if not name.startswith("__MACOSX/")
            and not PurePosixPath(name).name.startswith("._")
            and PurePosixPath(name).name != ".DS_Store"
        )
        self._name_set = set(self._names)

    def names(self) -> list[str]:
        return list(self._names)

    def exists(self, name: str) -> bool:
        return name in self._name_set or name in self._virtual

    def add_virtual(self, name: str, read: Callable[[], bytes], display: str) -> None:
        """A member whose bytes ``read()`` makes on demand (a decoded video frame, a converted
        depth map); read like a file, never hard-linked; errors name it as ``display``."""
        self._virtual[name] = (read, display)

    def call_on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` in :meth:`close` (release a video, delete a temporary file)."""
        self._on_close.append(callback)

    def read_bytes(self, name: str) -> bytes:
        if name in self._virtual:
            return self._virtual[name][0]()
        if not self.exists(name):
            raise MissingFileError(self.display(name), "file not found")
        if self._zip is not None:
            return b"".join(self._chunks(name))
        path = self.path / name
        with open(path, "rb") as handle:
            self.limits.check_file(path, os.fstat(handle.fileno()).st_size)
            return handle.read()

    def member_size(self, name: str) -> int:
        """The unpacked size of a member or file (0 for one made on demand), for free-space
        checks before writing."""
        if name in self._virtual or not self.exists(name):
            return 0
        if self._zip is not None:
            return self._zip.getinfo(name).file_size
        return (self.path / name).stat().st_size

    def copy_to(self, name: str, handle: Any) -> None:
        """Stream a member into an open binary file (a video can be gigabytes: no full read)."""
        if self._zip is not None and name not in self._virtual and self.exists(name):
            for chunk in self._chunks(name):
                handle.write(chunk)
            return
        local = self.local_path(name)
        if local is not None and local.is_file():
            with open(local, "rb") as member:
                while chunk := member.read(_CHUNK):
                    handle.write(chunk)
            return
        handle.write(self.read_bytes(name))

    def _chunks(self, name: str) -> Iterator[bytes]:
        """A zip member's bytes, ``_CHUNK`` at a time, after its header passed the limits;
        damage is a :class:`DamagedMemberError`. (A generator: what the consumer raises while
        writing a chunk never passes through the ``except`` here.)"""
        assert self._zip is not None
        where = self.display(name)
        info = self._zip.getinfo(name)
        self.limits.check(info, where)
        try:
            member = self._zip.open(info)
        except ZIP_READ_ERRORS as error:
            raise DamagedMemberError(where, f"cannot unpack archive member ({error})") from error
        with member:
            while True:
                try:
                    chunk = member.read(_CHUNK)
                except ZIP_READ_ERRORS as error:
                    raise DamagedMemberError(where, f"damaged archive member ({error})") from error
                if not chunk:
                    return
                yield chunk

    def read_json_object(self, name: str) -> dict[str, Any]:
        """A member parsed as a JSON object; errors name the member."""
        data = parse_json(self.read_bytes(name), self.display(name))
        if not isinstance(data, dict):
            raise InputFormatError(self.display(name), "expected a JSON object")
        return data

    def top_prefix(self, filename: str) -> str | None:
        """``""`` or ``"<top folder>/"`` holding ``filename`` (apps often zip their project
        folder), or None when neither level has it."""
        for name in self.names():
            parts = PurePosixPath(name).parts
            if parts[-1] == filename and len(parts) <= 2:
                return "".join(f"{p}/" for p in parts[:-1])
        return None

    def local_path(self, name: str) -> Path | None:
        """The file on disk (folders only), for hard links and readers that need a path."""
        if self._zip is not None or name in self._virtual:
            return None
        return self.path / name

    def display(self, name: str) -> str:
        """How errors name a member: ``archive.zip:inner/path`` or the file path."""
        if name in self._virtual:
            return self._virtual[name][1]
        return f"{self.path}:{name}" if self._zip is not None else str(self.path / name)

    def close(self) -> None:
        callbacks, self._on_close = self._on_close, []
        for callback in reversed(callbacks):
            callback()
        if self._zip is not None:
            self._zip.close()


def _open_zip(path: Path) -> zipfile.ZipFile:
    """The archive at ``path``, refused whole if a member would escape the output folder."""
    try:
        archive = zipfile.ZipFile(path)
    except OSError as error:
        raise InputFormatError(path, f"cannot read ({error.strerror or error})") from error
    except (*ZIP_READ_ERRORS,) as error:
        raise InputFormatError(path, f"not a folder or a zip archive ({error})") from error
    for info in archive.infolist():
        if not is_safe_member(info.filename):
            archive.close()
            raise InputFormatError(
                path, f"archive member {info.filename!r} would escape the output folder; refusing"
            )
    return archive


def is_safe_member(name: str) -> bool:
    """False for absolute paths, drive letters, backslashes and ``..`` components."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or ":" in name.split("/")[0]:
        return False
    parts = PurePosixPath(posixpath.normpath(name)).parts
    return ".." not in PurePosixPath(name).parts and ".." not in parts
