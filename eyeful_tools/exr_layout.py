"""An EXR's chunk table checked against the file's size before OpenEXR reads the pixels.

OpenEXR reports a truncated or cut-up file by printing its own lines to stdout and stderr (from
C++, past Python's streams) before raising, which breaks the one-line error contract. Checking
the layout first lets eyeful refuse such a file with its one line and never hand it to OpenEXR.
Single-part scanline files (what cameras, Metashape and eyeful write) are checked; tiled,
multi-part and deep files are left to OpenEXR.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO

from eyeful_tools.errors import InputFormatError

_MAGIC = b"\x76\x2f\x31\x01"
#: version flags that change the layout: tiled, deep ("non-image"), multi-part
_OTHER_LAYOUT = 0x200 | 0x800 | 0x1000
#: scanlines per chunk by compression id (NONE RLE ZIPS ZIP PIZ PXR24 B44 B44A DWAA DWAB)
_LINES_PER_CHUNK = {0: 1, 1: 1, 2: 1, 3: 16, 4: 32, 5: 16, 6: 32, 7: 32, 8: 32, 9: 256}
#: a header longer than this is not one eyeful reads (real ones are a few kilobytes)
_MAX_HEADER_BYTES = 1 << 20
TRUNCATED = "cannot read EXR pixels (truncated or corrupt)"


def check_exr_layout(path: Path) -> None:
    """Refuse a single-part scanline EXR whose chunk table or chunks run past the file's end
    (a truncated download or copy) with one :class:`InputFormatError`."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        head = handle.read(8)
        if len(head) < 8 or head[:4] != _MAGIC:
            return  # OpenEXR's header read refuses it quietly
        if struct.unpack("<I", head[4:])[0] & _OTHER_LAYOUT:
            return
        compression, window = _attributes(handle, path)
        lines = _LINES_PER_CHUNK.get(compression, 0)
        if not lines or window is None:
            return
        height = window[3] - window[1] + 1
        count = max(0, -(-height // lines))
        table = handle.read(8 * count)
        if len(table) < 8 * count:
            raise InputFormatError(path, TRUNCATED)
        for offset in struct.unpack(f"<{count}Q", table):
            _check_chunk(handle, path, offset, size)


def _check_chunk(handle: BinaryIO, path: Path, offset: int, size: int) -> None:
    if offset + 8 > size:
        raise InputFormatError(path, TRUNCATED)
    handle.seek(offset)
    _line, packed = struct.unpack("<ii", handle.read(8))
    if packed < 0 or offset + 8 + packed > size:
        raise InputFormatError(path, TRUNCATED)


def _attributes(handle: BinaryIO, path: Path) -> tuple[int, tuple[int, ...] | None]:
    """The header attributes the layout depends on: ``compression`` (-1 if absent) and
    ``dataWindow`` (None if absent)."""
    compression, window = -1, None
    read = 8
    while True:
        name = _zstring(handle)
        if not name:
            return compression, window
        _type = _zstring(handle)
        raw = handle.read(4)
        if len(raw) < 4:
            raise InputFormatError(path, "EXR ends inside its header (truncated file)")
        length = struct.unpack("<i", raw)[0]
        read += len(name) + len(_type) + 6 + max(length, 0)
        if length < 0 or read > _MAX_HEADER_BYTES:
            raise InputFormatError(path, "cannot read EXR header (malformed attribute)")
        value = handle.read(length)
        if len(value) < length:
            raise InputFormatError(path, "EXR ends inside its header (truncated file)")
        if name == b"compression" and length == 1:
            compression = value[0]
        elif name == b"dataWindow" and length == 16:
            window = struct.unpack("<4i", value)


def _zstring(handle: BinaryIO) -> bytes:
    """A NUL-terminated name (at most 255 bytes, as the format allows with long names)."""
    out = bytearray()
    while len(out) <= 256:
        char = handle.read(1)
        if char in (b"", b"\x00"):
            return bytes(out)
        out += char
    return bytes(out)
