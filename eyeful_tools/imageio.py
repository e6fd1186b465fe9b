"""Reading and writing images: JPEG through simplejpeg (strict), PNG through OpenCV, EXR through
OpenEXR.

Every decode is strict, because a damaged image trains silently: OpenCV's ``imread`` only
prints libjpeg's warnings ("Premature end of JPEG file", "Corrupt JPEG data") and hands back
the picture with the rest filled grey. simplejpeg (libjpeg-turbo, the same decoder OpenCV
wheels carry, bit-identical pixels and no slower) raises on them instead. OpenCV 5 wheels have
no EXR codec, so EXR goes through the ``OpenEXR`` 3.x ``File`` API.

Sizes come from the file header, and an image over :func:`max_image_pixels` is refused before
any decode allocates its pixels.

Arrays are RGB (not OpenCV's BGR): uint8 for 8-bit formats, uint16 for 16-bit PNG, float16 or
float32 linear radiance for EXR. Every write is atomic.
"""

from __future__ import annotations

import errno
import io
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
import OpenEXR
import simplejpeg

from eyeful_tools.errors import InputFormatError, MissingFileError
from eyeful_tools.exr_layout import TRUNCATED, check_exr_layout
from eyeful_tools.fsio import atomic_path, atomic_write_bytes
from eyeful_tools.image_limits import check_image_size

# The one suffix table (lower case: compare ``suffix.lower()``); each set says what reads it.
#: decoded by simplejpeg
JPEG_SUFFIXES = (".jpg", ".jpeg")
#: 8-bit photos: what phone apps write and COLMAP's SfM reads
PHOTO_SUFFIXES = (*JPEG_SUFFIXES, ".png")
#: what :func:`read_image` decodes
IMAGE_SUFFIXES = (*PHOTO_SUFFIXES, ".exr")
#: what a camera's image file may end in (Metashape labels), readable here or not
CAMERA_FILE_SUFFIXES = (*IMAGE_SUFFIXES, ".tif", ".tiff", ".dng", ".arw", ".cr2", ".nef")
#: what :func:`open_video` (OpenCV's FFmpeg backend) opens
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm")


def is_exr(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".exr"


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image as RGB (EXIF orientation ignored, as nerfstudio's loaders do).

    Returns [H, W, 3] uint8/uint16 for JPEG/PNG, [H, W, 3] float16/float32 for EXR. Single-channel
    images come back [H, W]. Damaged files raise :class:`InputFormatError`; see the module note.
    """
    path = _existing(path)
    if is_exr(path):
        return _read_exr(path)
    data = _checked_bytes(path)
    if _is_jpeg(data):
        return _read_jpeg_data(path, data)
    return _rgb(_imdecode(path, data))


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
    data = _checked_bytes(path)
    fits = out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3 and out.flags.c_contiguous
    if _is_jpeg(data):
        height, width, colorspace, _ = _jpeg_header(path, data)
        if not fits or out.shape[:2] != (height, width) or colorspace in _CMYK_SPACES:
            return _read_jpeg_data(path, data)
        _strict_jpeg(path, data, buffer=out)
        return None
    image = _imdecode(path, data)
    channels = 1 if image.ndim == 2 else image.shape[2]
    code = {1: cv2.COLOR_GRAY2RGB, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}.get(channels)
    if code is None or image.dtype != np.uint8 or not fits or out.shape[:2] != image.shape[:2]:
        return _rgb(image)
    result = cv2.cvtColor(image, code, dst=out)
    if not np.shares_memory(result, out):  # OpenCV reallocated instead of writing in place
        out[...] = result
    return None


def read_jpeg(path: str | Path, *, reduce: int = 1, bgr: bool = False) -> np.ndarray:
    """A JPEG's pixels [H, W, 3] uint8, strictly decoded, at 1/``reduce`` of its size when
    ``reduce`` is 2, 4 or 8 (libjpeg's DCT scaling: sides rounded up, the decode much cheaper).
    ``bgr`` gives OpenCV's channel order. Grey JPEGs come back as 3 equal channels."""
    path = _existing(path)
    data = _checked_bytes(path)
    height, width, colorspace, _ = _jpeg_header(path, data)
    if colorspace in _CMYK_SPACES:
        pixels = _read_jpeg_data(path, data)
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[..., None], 3, axis=-1)
        pixels = pixels[..., ::-1] if bgr else pixels
        if reduce > 1:
            size = (-(-width // reduce), -(-height // reduce))
            pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(pixels)
    return _strict_jpeg(
        path,
        data,
        colorspace="BGR" if bgr else "RGB",
        min_height=-(-height // reduce) if reduce > 1 else 0,
        min_width=-(-width // reduce) if reduce > 1 else 0,
    )


def verify_image(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image that decodes cleanly, else :class:`InputFormatError`.

    Cheaper than a decode where it can be: a JPEG is entropy-decoded at 1/8 scale in grey, which
    walks every byte of its data (where truncation and corruption show) but skips most of the
    inverse DCT and all colour conversion (about 60% of a full decode's time).
    """
    path = _existing(path)
    if is_exr(path):
        pixels = _read_exr(path)
        return int(pixels.shape[1]), int(pixels.shape[0])
    data = _checked_bytes(path)
    if not _is_jpeg(data):
        pixels = _imdecode(path, data)
        return int(pixels.shape[1]), int(pixels.shape[0])
    height, width, colorspace, _ = _jpeg_header(path, data)
    grey = "CMYK" if colorspace in _CMYK_SPACES else "GRAY"
    _strict_jpeg(path, data, colorspace=grey, min_height=1, min_width=1)
    return int(width), int(height)


def check_header(data: bytes, where: str | Path) -> tuple[int, int] | None:
    """(width, height) of in-memory PNG or JPEG bytes, refused when cut short or over the pixel
    limit, before anything decodes them; None for other formats (and empty data)."""
    size = header_size(data, where)
    return None if size is None else check_image_size(where, *size)


def decode_image_bytes(data: bytes, where: str | Path, *, grey: bool = False) -> np.ndarray:
    """An 8-bit image held in memory (an archive member) decoded strictly: RGB [H, W, 3] uint8,
    or [H, W] uint8 with ``grey``; ``where`` names it in errors. EXIF orientation is ignored
    (as nerfstudio and COLMAP do). Over the pixel limit is refused before decoding."""
    check_header(data, where)
    if _is_jpeg(data):
        colorspace = _jpeg_header(where, data)[2]
        if colorspace not in _CMYK_SPACES:
            pixels = _strict_jpeg(where, data, colorspace="GRAY" if grey else "RGB")
            return pixels[..., 0] if grey else pixels
        _strict_jpeg(where, data, colorspace="CMYK")  # strict check; OpenCV converts (Adobe)
    flags = (cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), flags) if data else None
    if decoded is None:
        raise InputFormatError(where, "cannot decode image (corrupt or unsupported format)")
    return decoded if grey else np.ascontiguousarray(decoded[..., ::-1])


# ---------------------------------------------------------------------------------------------
# Decoding.

#: JPEG colour spaces libjpeg-turbo cannot turn into RGB itself (checked strictly, then OpenCV)
_CMYK_SPACES = ("CMYK", "YCCK")


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "image not found")
    return path


def _checked_bytes(path: Path) -> bytes:
    """The file's bytes, once its header size is known to be within the pixel limit."""
    data = path.read_bytes()
    check_header(data, path)
    return data


def _is_jpeg(data: bytes) -> bool:
    return data.startswith(b"\xff\xd8")


def _jpeg_header(path: str | Path, data: bytes) -> tuple[int, int, str, str]:
    """(height, width, colour space, subsampling) as libjpeg-turbo reads them."""
    try:
        return simplejpeg.decode_jpeg_header(data)
    except ValueError as error:
        raise InputFormatError(path, f"corrupt JPEG ({error})") from error


def _strict_jpeg(path: str | Path, data: bytes, **options: Any) -> np.ndarray:
    """simplejpeg's decode with libjpeg's warnings raised as errors (``strict``)."""
    try:
        return simplejpeg.decode_jpeg(data, strict=True, **options)
    except ValueError as error:
        raise InputFormatError(path, f"corrupt JPEG ({error})") from error


def _read_jpeg_data(path: Path, data: bytes) -> np.ndarray:
    """A JPEG as :func:`read_image` returns it: RGB, or [H, W] for a grey one."""
    colorspace = _jpeg_header(path, data)[2]
    if colorspace == "Gray":
        return _strict_jpeg(path, data, colorspace="GRAY")[..., 0]
    if colorspace in _CMYK_SPACES:
        _strict_jpeg(path, data, colorspace="CMYK")  # strict check; OpenCV converts (Adobe)
        return _rgb(_imdecode(path, data))
    return _strict_jpeg(path, data, colorspace="RGB")


def _imdecode(path: Path, data: bytes) -> np.ndarray:
    """The file's pixels as OpenCV decodes them (BGR or BGRA, any depth); OpenCV returns
    nothing for the PNGs libpng stops on (truncated, bad CRC)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
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
    """RGB (or the single channel) of an EXR, HALF or FLOAT only; a truncated file fails here
    (OpenEXR reads the header and then finds no pixels)."""
    check_image_size(path, *_exr_size(path))
    check_exr_layout(path)  # before OpenEXR, which prints its own lines for a truncated file
    try:
        exr = OpenEXR.File(str(path))
    except Exception as error:  # OpenEXR raises plain RuntimeError/OSError/ValueError
        raise InputFormatError(path, f"cannot read EXR ({error})") from error
    try:
        channels = exr.channels()
    except Exception as error:  # the header read, the pixels did not: "file has 0 parts"
        raise InputFormatError(path, TRUNCATED) from error
    for name, channel in channels.items():
        if channel.pixels is None or channel.pixels.dtype.kind != "f":
            kind = "no pixels" if channel.pixels is None else channel.pixels.dtype.name
            raise InputFormatError(
                path, f"EXR channel {name} holds {kind}; eyeful reads HALF or FLOAT radiance"
            )
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
        try:
            OpenEXR.File(header, channels).write(str(tmp))
        except RuntimeError as error:  # OpenEXR reports a full disk as a RuntimeError
            raise os_error_from_message(error, path) from error


def os_error_from_message(error: Exception, path: Path) -> OSError:
    """The ``OSError`` behind a library's own error whose message quotes ``strerror`` (OpenEXR
    writes "... No space left on device."), naming ``path``; EIO where none is quoted."""
    message = str(error)
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EIO):
        if os.strerror(code) in message:
            return OSError(code, os.strerror(code), str(path))
    return OSError(errno.EIO, f"cannot write ({message.splitlines()[0] if message else error})",
                   str(path))  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Headers and the pixel limit.


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels; refused when over
    the pixel limit, and when the header itself is cut short."""
    path = _existing(path)
    if is_exr(path):
        return check_image_size(path, *_exr_size(path))
    with open(path, "rb") as handle:
        size = header_size(handle, path)
    if size is not None:
        return check_image_size(path, *size)
    # a format whose header we do not parse: OpenCV's own limit (2^30 pixels) applies
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputFormatError(path, "cannot read image (corrupt or unsupported format)")
    return check_image_size(path, int(image.shape[1]), int(image.shape[0]))


def _exr_size(path: Path) -> tuple[int, int]:
    try:
        (x0, y0), (x1, y1) = OpenEXR.File(str(path), header_only=True).header()["dataWindow"]
    except Exception as error:
        raise InputFormatError(path, f"cannot read EXR header ({error})") from error
    return int(x1 - x0 + 1), int(y1 - y0 + 1)


def header_size(data: bytes | BinaryIO, path: str | Path) -> tuple[int, int] | None:
    """(width, height) of a PNG (IHDR) or JPEG (SOF) from its first bytes (the bytes, or a
    binary stream at the file's start); None for another format. ``path`` names it in errors. A
    header cut short or malformed is an :class:`InputFormatError`, never a struct error."""
    handle = io.BytesIO(data) if isinstance(data, bytes | bytearray | memoryview) else data
    head = handle.read(8)
    if head.startswith(b"\x89PNG"):
        head += handle.read(16)
        if len(head) < 24:
            raise InputFormatError(path, "PNG ends inside its header (truncated file)")
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    if head.startswith(b"\xff\xd8"):
        handle.seek(2)
        return _jpeg_size(handle, path)
    return None


def _jpeg_size(handle: BinaryIO, path: str | Path) -> tuple[int, int]:
    """Walk JPEG markers to the start-of-frame segment (SOF0..SOF15 except DHT/JPG/DAC)."""
    truncated = InputFormatError(path, "JPEG ends inside its headers (truncated file)")
    while True:
        byte = handle.read(1)
        if not byte:
            raise truncated
        if byte != b"\xff":
            raise InputFormatError(path, "corrupt JPEG (a header segment is not a marker)")
        code = handle.read(1)
        while code == b"\xff":  # fill bytes may precede any marker
            code = handle.read(1)
        if not code:
            raise truncated
        marker = code[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue
        if marker in (0xD9, 0xDA):
            raise InputFormatError(path, "corrupt JPEG (no frame header before its image data)")
        length_bytes = handle.read(2)
        if len(length_bytes) < 2:
            raise truncated
        (length,) = struct.unpack(">H", length_bytes)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            data = handle.read(5)
            if len(data) < 5:
                raise truncated
            height, width = struct.unpack(">HH", data[1:5])
            return int(width), int(height)
        if length < 2:
            raise InputFormatError(path, f"corrupt JPEG (segment length {length})")
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
