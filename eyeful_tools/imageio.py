"""Reading and writing images: JPEG/PNG through OpenCV, EXR through OpenEXR.

OpenCV 5 wheels have no EXR codec, so EXR goes through the ``OpenEXR`` 3.x ``File`` API.
Arrays are RGB (not OpenCV's BGR): uint8 for 8-bit formats, uint16 for 16-bit PNG, float16 or
float32 linear radiance for EXR. Every write is atomic.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import OpenEXR

from eyeful_tools.errors import InputFormatError, MissingFileError
from eyeful_tools.fsio import atomic_path, atomic_write_bytes

JPEG_SUFFIXES = (".jpg", ".jpeg")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".exr")


def is_exr(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".exr"


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image as RGB (EXIF orientation ignored, as nerfstudio's loaders do).

    Returns [H, W, 3] uint8/uint16 for JPEG/PNG, [H, W, 3] float16/float32 for EXR. Single-channel
    images come back [H, W].
    """
    path = _existing(path)
    return _read_exr(path) if is_exr(path) else _rgb(_imread(path))


def read_image_into(path: str | Path, out: np.ndarray) -> np.ndarray | None:
    """Decode an 8-bit image as RGB straight into ``out`` ([H, W, 3] uint8, C-contiguous).

    Saves :func:`read_image`'s intermediate RGB copy (a third less CPU and one image less of
    transient memory for the training loader). Grey and alpha images are expanded / dropped to
    RGB. Returns None when the pixels are in ``out``; otherwise (EXR, 16-bit, a size other than
    ``out``'s, an ``out`` that is not contiguous uint8 RGB) the image as :func:`read_image`
    gives it, so the file is decoded once either way.
    """
    path = _existing(path)
    if is_exr(path):
        return _read_exr(path)
    image = _imread(path)
    channels = 1 if image.ndim == 2 else image.shape[2]
    code = {1: cv2.COLOR_GRAY2RGB, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}.get(channels)
    if (
        code is None
        or image.dtype != np.uint8
        or out.dtype != np.uint8
        or out.ndim != 3
        or out.shape != (*image.shape[:2], 3)
        or not out.flags.c_contiguous
    ):
        return _rgb(image)
    result = cv2.cvtColor(image, code, dst=out)
    if not np.shares_memory(result, out):  # OpenCV reallocated instead of writing in place
        out[...] = result
    return None


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "image not found")
    return path


def _imread(path: Path) -> np.ndarray:
    """The file's pixels as OpenCV decodes them (BGR or BGRA, any depth)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputFormatError(path, "cannot decode image (corrupt or unsupported format)")
    return image


def _rgb(image: np.ndarray) -> np.ndarray:
    """OpenCV's BGR(A) -> contiguous RGB (alpha dropped); single-channel images as they are."""
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    if image.ndim == 3:
        image = np.ascontiguousarray(image[..., ::-1])
    return image


def _read_exr(path: Path) -> np.ndarray:
    try:
        exr = OpenEXR.File(str(path))
    except Exception as error:  # OpenEXR raises plain RuntimeError/OSError
        raise InputFormatError(path, f"cannot read EXR ({error})") from error
    channels = exr.channels()
    for name in ("RGB", "RGBA"):
        if name in channels:
            return np.ascontiguousarray(channels[name].pixels[..., :3])
    if all(c in channels for c in "RGB"):
        return np.stack([channels[c].pixels for c in "RGB"], axis=-1)
    if len(channels) == 1:
        return next(iter(channels.values())).pixels
    raise InputFormatError(path, f"EXR has no RGB channels (has {sorted(channels)})")


def write_image(path: str | Path, image: np.ndarray, jpeg_quality: int = 95) -> None:
    """Encode RGB (or single-channel) pixels atomically; the format follows the suffix."""
    path = Path(path)
    if is_exr(path):
        _write_exr(path, image)
        return
    pixels = image[..., ::-1] if image.ndim == 3 else image
    params: list[int] = []
    if path.suffix.lower() in JPEG_SUFFIXES:
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    # encode in memory, then one write: cheaper than libjpeg's 4 KB stdio writes, and a
    # failed encode never creates a temp file
    ok, encoded = cv2.imencode(path.suffix, np.ascontiguousarray(pixels), params)
    if not ok:
        raise InputFormatError(path, "OpenCV could not encode the image")
    atomic_write_bytes(path, encoded.data)


def _write_exr(path: Path, image: np.ndarray) -> None:
    if image.dtype not in (np.float16, np.float32):
        image = image.astype(np.float32)
    channels = {"RGB": np.ascontiguousarray(image)} if image.ndim == 3 else {"Y": image}
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with atomic_path(path) as tmp:
        OpenEXR.File(header, channels).write(str(tmp))


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "image not found")
    if is_exr(path):
        try:
            (x0, y0), (x1, y1) = OpenEXR.File(str(path), header_only=True).header()["dataWindow"]
        except Exception as error:
            raise InputFormatError(path, f"cannot read EXR header ({error})") from error
        return int(x1 - x0 + 1), int(y1 - y0 + 1)
    with open(path, "rb") as handle:
        head = handle.read(32)
        if head.startswith(b"\x89PNG"):
            width, height = struct.unpack(">II", head[16:24])
            return int(width), int(height)
        if head.startswith(b"\xff\xd8"):
            handle.seek(2)
            size = _jpeg_size(handle)
            if size is not None:
                return size
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # a format whose header we do not parse
    if image is None:
        raise InputFormatError(path, "cannot read image (corrupt or unsupported format)")
    return int(image.shape[1]), int(image.shape[0])


def _jpeg_size(handle: BinaryIO) -> tuple[int, int] | None:
    """Walk JPEG markers to the start-of-frame segment (SOF0..SOF15 except DHT/JPG/DAC)."""
    while True:
        marker = handle.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        code = marker[1]
        if code in (0xD8, 0x01) or 0xD0 <= code <= 0xD7:
            continue
        length_bytes = handle.read(2)
        if len(length_bytes) < 2:
            return None
        (length,) = struct.unpack(">H", length_bytes)
        if 0xC0 <= code <= 0xCF and code not in (0xC4, 0xC8, 0xCC):
            data = handle.read(5)
            height, width = struct.unpack(">HH", data[1:5])
            return int(width), int(height)
        handle.seek(length - 2, 1)


def open_video(
    path: str | Path, where: str | Path | None = None, *, rotate: bool = True
) -> cv2.VideoCapture:
    """An opened ``cv2.VideoCapture``; errors name ``where`` (default: the path). ``rotate``
    False keeps the pixels as stored, ignoring a display-rotation tag (when intrinsics and poses
    describe the sensor frame)."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise InputFormatError(
            where or path, "cannot open the video (not a video, or an unknown codec)"
        )
    if not rotate:
        capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
    return capture


def video_frame_count(path: str | Path, where: str | Path | None = None) -> int:
    """Frames in a video: the container's count, else counted by decoding frame headers (some
    containers do not say)."""
    capture = open_video(path, where)
    try:
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if total <= 0:
            while capture.grab():
                total += 1
    finally:
        capture.release()
    return total
