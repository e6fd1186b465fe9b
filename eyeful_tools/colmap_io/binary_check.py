"""A binary COLMAP model's layout checked before pycolmap reads it.

pycolmap's binary reader trusts every count it reads and does not stop at the end of the file:
a ``points3D.bin`` cut to one byte, or a count flipped to 2**40, makes it loop for minutes (or
allocate without bound) instead of failing. Walking each file here, with every count checked
against the bytes that are left, bounds the work by the file's size and turns any damage into
one :class:`InputFormatError` naming the file. Layouts: COLMAP's ``reconstruction_io_binary``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pycolmap

from eyeful_tools.errors import InputFormatError


def _param_counts() -> dict[int, int]:
    """Parameters per camera model id, from pycolmap itself (so new models are known)."""
    counts = {}
    for model in pycolmap.CameraModelId.__members__.values():
        if int(model) >= 0:
            counts[int(model)] = len(
                pycolmap.Camera.create_from_model_id(1, model, 1.0, 1, 1).params
            )
    return counts


_PARAMS = _param_counts()


class _Reader:
    """Little-endian fields read from bytes, each read checked against what is left."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.at = data, path, 0

    def fail(self, what: str) -> InputFormatError:
        return InputFormatError(
            self.path, f"malformed COLMAP binary file ({what} at byte {self.at})"
        )

    def take(self, size: int) -> bytes:
        if size < 0 or self.at + size > len(self.data):
            raise self.fail("ends early")
        self.at += size
        return self.data[self.at - size : self.at]

    def unpack(self, fmt: str) -> tuple[int | float, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def count(self, fmt: str, min_record: int) -> int:
        """A count whose records (each at least ``min_record`` bytes) fit in what is left."""
        value = int(self.unpack(fmt)[0])
        if value * min_record > len(self.data) - self.at:
            raise self.fail(f"a count of {value} that the file cannot hold")
        return value

    def name(self) -> None:
        end = self.data.find(b"\x00", self.at)
        if end < 0:
            raise self.fail("an unterminated name")
        self.at = end + 1

    def done(self) -> None:
        if self.at != len(self.data):
            raise self.fail("trailing bytes")


def _cameras(reader: _Reader) -> None:
    for _ in range(reader.count("Q", 24)):
        _camera_id, model, _width, _height = reader.unpack("IiQQ")
        if int(model) not in _PARAMS:
            raise reader.fail(f"unknown camera model {model}")
        reader.take(8 * _PARAMS[int(model)])


def _images(reader: _Reader) -> None:
    for _ in range(reader.count("Q", 73)):
        reader.take(4 + 7 * 8 + 4)  # image id, quaternion + translation, camera id
        reader.name()
        reader.take(24 * reader.count("Q", 24))  # x, y, point3D id


def _points(reader: _Reader) -> None:
    for _ in range(reader.count("Q", 51)):
        reader.take(8 + 24 + 3 + 8)  # id, xyz, rgb, error
        reader.take(8 * reader.count("Q", 8))  # track: image id, point2D index


def _rigs(reader: _Reader) -> None:
    for _ in range(reader.count("Q", 8)):
        reader.take(4)  # rig id
        sensors = reader.count("I", 8)
        if sensors:
            reader.take(8)  # the reference sensor: type, id
        for _ in range(max(sensors - 1, 0)):
            reader.take(8)
            if reader.unpack("B")[0]:
                reader.take(7 * 8)


def _frames(reader: _Reader) -> None:
    for _ in range(reader.count("Q", 68)):
        reader.take(4 + 4 + 7 * 8)  # frame id, rig id, rig_from_world
        reader.take(16 * reader.count("I", 16))  # sensor type, sensor id, data id


_LAYOUTS: dict[str, Callable[[_Reader], None]] = {
    "cameras.bin": _cameras,
    "images.bin": _images,
    "points3D.bin": _points,
    "rigs.bin": _rigs,
    "frames.bin": _frames,
}


def check_binary_model(model_dir: Path) -> None:
    """Refuse a binary model (the one pycolmap would read: ``cameras.bin``, ``images.bin`` and
    ``points3D.bin`` all present) whose files are cut short, hold impossible counts or
    trailing bytes. Text models are left to pycolmap's parser."""
    if not all(
        (model_dir / name).is_file() for name in ("cameras.bin", "images.bin", "points3D.bin")
    ):
        return
    for name, walk in _LAYOUTS.items():
        path = model_dir / name
        if path.is_file():
            reader = _Reader(path.read_bytes(), path)
            walk(reader)
            reader.done()
