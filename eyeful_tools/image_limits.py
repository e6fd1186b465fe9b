"""The bound on pixels per image, checked from a header before any decoder allocates them.

Light on purpose (no OpenCV): the CLI's root ``--max-image-pixels`` option reads it at start-up.
"""

from __future__ import annotations

import os
from pathlib import Path

from eyeful_tools.errors import InputFormatError, UsageError

#: the default bound on width x height: 4x the largest EyefulTower image (5784x8660, 50 MP); a
#: forged 30000x30000 header would otherwise ask for 2.7 GB of RGB before failing
DEFAULT_MAX_IMAGE_PIXELS = 200_000_000
#: the override (``eyeful --max-image-pixels N`` sets it, so spawned workers see it too)
MAX_PIXELS_ENV = "EYEFUL_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    """The most pixels (width x height) an image may have: ``$EYEFUL_MAX_IMAGE_PIXELS``, else
    :data:`DEFAULT_MAX_IMAGE_PIXELS`."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    if not text.isdigit() or int(text) < 1:
        raise UsageError(MAX_PIXELS_ENV, f"must be a positive integer, got {text!r}")
    return int(text)


def check_image_size(path: str | Path, width: int, height: int) -> tuple[int, int]:
    """(width, height) from a header, refused when empty or over :func:`max_image_pixels` (so a
    forged or absurd header never reaches a decoder that would allocate it)."""
    if width < 1 or height < 1:
        raise InputFormatError(path, f"image header says {width}x{height} pixels")
    limit = max_image_pixels()
    if width * height > limit:
        raise InputFormatError(
            path,
            f"image is {width}x{height} ({width * height / 1e6:.3g} megapixels), over the limit "
            f"of {limit / 1e6:g} megapixels (raise it with eyeful --max-image-pixels N or "
            f"{MAX_PIXELS_ENV}=N)",
        )
    return width, height
