"""Depth and confidence maps of iOS captures -> uint16 millimetres at the image size.

Record3D writes float32 metres (EXR in the "EXR + JPG" export, LZFSE-compressed raw planes in
``.r3d``, whose confidence planes are LZFSE uint8 too); Polycam writes 16-bit PNG millimetres.
LZFSE needs the optional ``lzfse`` package, imported only when such a file is read.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import IO, Protocol

import cv2
import numpy as np

from eyeful_tools import imageio
from eyeful_tools.cameras import Frame
from eyeful_tools.errors import EyefulError, InputFormatError, LimitError, MissingFileError

log = logging.getLogger(__name__)

#: depth encodings the readers hand over
DEPTH_EXR_M = "exr_m"  # float32 metres, single channel EXR (Record3D "EXR + JPG")
DEPTH_LZFSE_M = "lzfse_m"  # LZFSE-compressed raw float32 metres (Record3D .r3d)
DEPTH_PNG_MM = "png_mm"  # 16-bit PNG, millimetres (Polycam)
DEPTH_PNG_SCALED = (
    "png_scaled"  # 16-bit PNG, ``extras["depth_scale_m"]`` metres a unit (NeRFCapture)
)
CONF_LZFSE_U8 = "lzfse_u8"  # LZFSE-compressed raw uint8 {0, 1, 2} (Record3D .r3d)
CONF_PNG_U8 = "png_u8"  # 8-bit PNG {0, 127, 255} (Polycam)

MAX_DEPTH_MM = 65535


class Source(Protocol):
    """What depth decoding reads from an export (:class:`eyeful_tools.archive.Source` is
    one); declared here so that this module sits below the pipeline that calls it."""

    def read_bytes(self, name: str) -> bytes: ...
    def copy_to(self, name: str, handle: IO[bytes]) -> None: ...
    def local_path(self, name: str) -> Path | None: ...
    def display(self, name: str) -> str: ...


def depth_mm_from_metres(depth_m: np.ndarray) -> np.ndarray:
    """uint16 millimetres from float metres; non-finite, <= 0 or beyond 65.535 m -> 0 (invalid)."""
    depth = np.asarray(depth_m, dtype=np.float64)
    millimetres = np.where(np.isfinite(depth), np.round(depth * 1000.0), 0.0)
    millimetres[(millimetres <= 0) | (millimetres > MAX_DEPTH_MM)] = 0
    return millimetres.astype(np.uint16)


def depth_mm(
    source: Source, frame: Frame, image_size: tuple[int, int], min_confidence: int = 0
) -> np.ndarray | None:
    """[H, W] uint16 millimetres at the image size (nearest) of ``frame.depth_path`` (encoded as
    ``frame.extras`` says: ``depth_kind``, ``depth_size_px``, ``depth_scale_m``), pixels whose
    ``confidence`` map is below ``min_confidence`` (the app's own scale) zeroed; None (logged)
    when it cannot be read."""
    assert frame.depth_path is not None  # checked by the caller
    try:
        depth = _read_depth(source, frame)
        if frame.extras.get("confidence") is not None and min_confidence > 0:
            confidence = _read_confidence(source, frame, depth.shape)
            depth = np.where(confidence >= min_confidence, depth, 0).astype(np.uint16)
    except LimitError:
        raise  # a limit is the user's to raise, not a frame to drop quietly
    except EyefulError as error:  # a bad file or a damaged archive member: this frame only
        log.warning("%s; depth skipped for this frame", error.one_line())
        return None
    if (depth.shape[1], depth.shape[0]) != image_size:
        depth = cv2.resize(depth, image_size, interpolation=cv2.INTER_NEAREST)
    return depth


def _read_depth(source: Source, frame: Frame) -> np.ndarray:
    name = frame.depth_path
    assert name is not None
    where = source.display(name)
    kind = frame.extras.get("depth_kind")
    if kind in (DEPTH_PNG_MM, DEPTH_PNG_SCALED):
        data = source.read_bytes(name)
        imageio.check_header(data, where)  # the pixel limit, before OpenCV allocates
        depth = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
        if depth is None or depth.ndim != 2:
            raise InputFormatError(where, "cannot decode depth PNG (expected 16-bit, one channel)")
        if kind == DEPTH_PNG_SCALED:
            scale = frame.extras.get("depth_scale_m")
            if depth.dtype != np.uint16 or not scale:
                raise InputFormatError(where, "expected a 16-bit one-channel depth PNG")
            return depth_mm_from_metres(depth.astype(np.float64) * scale)
        return depth.astype(np.uint16)
    if kind == DEPTH_EXR_M:
        return depth_mm_from_metres(_read_exr_channel(source, name))
    if kind == DEPTH_LZFSE_M:
        raw = decompress_lzfse(source.read_bytes(name), where)
        size = frame.extras.get("depth_size_px")
        return depth_mm_from_metres(_raw_plane(raw, np.float32, size, where))
    raise InputFormatError(where, f"unknown depth encoding {kind!r}")


def _read_confidence(source: Source, frame: Frame, shape: tuple[int, ...]) -> np.ndarray:
    name = frame.extras.get("confidence")
    assert isinstance(name, str)
    where = source.display(name)
    if frame.extras.get("confidence_kind") == CONF_PNG_U8:
        data = source.read_bytes(name)
        imageio.check_header(data, where)
        conf = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE) if data else None
        if conf is None:
            raise InputFormatError(where, "cannot decode confidence PNG")
    else:
        raw = decompress_lzfse(source.read_bytes(name), where)
        conf = _raw_plane(raw, np.uint8, (shape[1], shape[0]), where)
    if conf.shape != shape[:2]:
        conf = cv2.resize(conf, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return conf


def _read_exr_channel(source: Source, name: str) -> np.ndarray:
    """First channel of a depth EXR (Record3D writes one; the value sits in R or Y)."""
    local = source.local_path(name)
    with contextlib.ExitStack() as stack:
        if local is None:
            handle = stack.enter_context(tempfile.NamedTemporaryFile(suffix=".exr"))
            source.copy_to(name, handle)
            handle.flush()
            local = Path(handle.name)
        try:
            pixels = imageio.read_image(local)
        except EyefulError as error:
            raise InputFormatError(source.display(name), error.reason) from error
    return np.asarray(pixels[..., 0] if pixels.ndim == 3 else pixels, dtype=np.float32)


def _raw_plane(
    raw: bytes, dtype: type[np.generic], size: tuple[int, int] | None, where: str
) -> np.ndarray:
    values = np.frombuffer(raw, dtype=dtype)
    if size is None or size[0] * size[1] != values.size:
        raise InputFormatError(
            where,
            f"holds {values.size} values, expected {size[0]}x{size[1]}" if size else "size unknown",
        )
    return values.reshape(size[1], size[0])


def lzfse_available() -> bool:
    try:
        import lzfse  # noqa: F401
    except ImportError:
        return False
    return True


def decompress_lzfse(data: bytes, where: str) -> bytes:
    """LZFSE via the optional ``lzfse`` package (imported lazily)."""
    try:
        import lzfse
    except ImportError as error:
        raise MissingFileError(where, "LZFSE depth needs the 'lzfse' package") from error
    try:
        return lzfse.decompress(data)
    except Exception as error:  # lzfse.error is a plain Exception subclass
        raise InputFormatError(where, f"cannot decompress LZFSE ({error})") from error
