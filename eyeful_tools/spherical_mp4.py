"""Google's Spherical Video V1 metadata in an mp4, so 360-degree players show a panorama as one.

ns-render adds the same ``uuid`` box (``insert_spherical_metadata_into_file``) to its
equirectangular videos; here ODS videos get it too, with ``StereoMode`` top-bottom, so a
headset shows each eye its half. The box goes at the end of the first ``trak`` of a ``moov``
that is the file's last top-level box (as OpenCV and ffmpeg write without faststart), so no
sample offset moves.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from eyeful_tools.errors import InputFormatError

SPHERICAL_UUID = bytes.fromhex("ffcc8263f8554a938814587a02521fdd")


def spherical_xml(stereo_mode: str | None = None) -> bytes:
    """The RDF/XML payload: equirectangular, stitched, and ``top-bottom`` / ``left-right`` eyes."""
    stereo = (
        ""
        if stereo_mode is None
        else f"<GSpherical:StereoMode>{stereo_mode}</GSpherical:StereoMode>\n"
    )
    return (
        "<rdf:SphericalVideo\n"
        "xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'\n"
        "xmlns:GSpherical='http://ns.google.com/videos/1.0/spherical/'>\n"
        "<GSpherical:ProjectionType>equirectangular</GSpherical:ProjectionType>\n"
        "<GSpherical:Spherical>True</GSpherical:Spherical>\n"
        "<GSpherical:Stitched>True</GSpherical:Stitched>\n"
        "<GSpherical:StitchingSoftware>eyeful</GSpherical:StitchingSoftware>\n"
        f"{stereo}</rdf:SphericalVideo>"
    ).encode()


def _boxes(file: BinaryIO, start: int, end: int) -> list[tuple[int, int, bytes]]:
    """(offset, size, type) of the boxes between ``start`` and ``end`` (64-bit sizes too)."""
    boxes = []
    offset = start
    while offset + 8 <= end:
        file.seek(offset)
        size, kind = struct.unpack(">I4s", file.read(8))
        if size == 1:
            (size,) = struct.unpack(">Q", file.read(8))
        elif size == 0:
            size = end - offset
        if size < 8 or offset + size > end:
            raise ValueError(f"box {kind!r} at {offset} has size {size}")
        boxes.append((offset, size, kind))
        offset += size
    return boxes


def _short_header(file: BinaryIO, box: tuple[int, int, bytes]) -> bool:
    """Whether the box's size is in its 32-bit header field (so it can grow in place)."""
    file.seek(box[0])
    return bool(struct.unpack(">I", file.read(4))[0] == box[1] and box[1] + 2**16 < 2**32)


def insert_spherical_metadata(path: str | Path, stereo_mode: str | None = None) -> None:
    """Add the spherical ``uuid`` box to the mp4 at ``path`` in place (call it on the temp file
    before renaming it into place: an interrupted insert leaves a broken file)."""
    path = Path(path)
    payload = SPHERICAL_UUID + spherical_xml(stereo_mode)
    box = struct.pack(">I4s", 8 + len(payload), b"uuid") + payload
    with open(path, "r+b") as file:
        end = file.seek(0, 2)
        try:
            top = _boxes(file, 0, end)
            moov = next(b for b in top if b[2] == b"moov")
            trak = next(b for b in _boxes(file, moov[0] + 8, moov[0] + moov[1]) if b[2] == b"trak")
        except (ValueError, StopIteration, struct.error):
            raise InputFormatError(path, "not an mp4 with a moov box holding a trak") from None
        if (
            moov[0] + moov[1] != end
            or not _short_header(file, moov)
            or not _short_header(file, trak)
        ):
            raise InputFormatError(path, "the moov box is not last; cannot add spherical metadata")
        file.seek(trak[0] + trak[1])
        rest = file.read(end - trak[0] - trak[1])
        file.seek(moov[0])
        file.write(struct.pack(">I", moov[1] + len(box)))
        file.seek(trak[0])
        file.write(struct.pack(">I", trak[1] + len(box)))
        file.seek(trak[0] + trak[1])
        file.write(box + rest)
