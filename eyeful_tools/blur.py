"""Sharpness scores and sharp-frame selection for phone and video captures.

The score is the variance of the Laplacian (the de-facto standard; instant-ngp's ``sharpness``):
greyscale, 3x3 Laplacian in float64, variance. Laplacian variance grows with resolution and scene
texture, so images are first reduced to a fixed longest side (:data:`SCORE_MAX_DIM_PX`), and a
*percentile* filter (relative to the capture) is usually a better choice than an absolute
threshold.

Public API (shared with the video importer):

* :func:`sharpness` ``(image) -> float``
* :func:`select_sharp` ``(scores, threshold=None, percentile=None) -> bool mask``
* :class:`BlurFilter` and :func:`parse_blur_filter` for the CLI's ``--blur-filter`` value
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from eyeful_tools.errors import UsageError

#: images are reduced to this longest side before scoring, so scores of one capture compare
SCORE_MAX_DIM_PX = 512


def sharpness(image: np.ndarray, max_dim_px: int | None = SCORE_MAX_DIM_PX) -> float:
    """Variance of the Laplacian of ``image`` ([H, W] or [H, W, C], any dtype); higher = sharper.

    Colour images are averaged to grey (channel order does not matter for the score). Images
    larger than ``max_dim_px`` are area-reduced first; smaller ones are scored as they are.
    """
    pixels = np.asarray(image)
    if pixels.ndim == 3:
        pixels = pixels[..., :3].astype(np.float64).mean(axis=-1)
    if pixels.ndim != 2 or min(pixels.shape) < 3:
        raise ValueError(f"need an image of at least 3x3 pixels, got shape {np.shape(image)}")
    pixels = pixels.astype(np.float64)
    longest = max(pixels.shape)
    if max_dim_px is not None and longest > max_dim_px:
        scale = max_dim_px / longest
        size = (max(3, round(pixels.shape[1] * scale)), max(3, round(pixels.shape[0] * scale)))
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(pixels, cv2.CV_64F, ksize=1).var())


def select_sharp(
    scores: np.ndarray | list[float],
    threshold: float | None = None,
    percentile: float | None = None,
) -> np.ndarray:
    """Keep mask [N] bool: which frames to keep.

    ``threshold``: keep frames whose score is >= threshold. ``percentile`` P (0-100): drop the
    blurriest P percent, i.e. keep scores >= the P-th percentile (linear interpolation), so
    ``percentile=10`` over 10 frames drops exactly the blurriest one. Give at most one; with
    neither, everything is kept.
    """
    values = np.asarray(scores, dtype=np.float64)
    if threshold is not None and percentile is not None:
        raise ValueError("give a threshold or a percentile, not both")
    if values.size == 0 or (threshold is None and percentile is None):
        return np.ones(values.shape, dtype=bool)
    if threshold is not None:
        return values >= threshold
    assert percentile is not None
    if not 0.0 <= percentile < 100.0:
        raise ValueError(f"percentile must be in [0, 100), got {percentile}")
    return values >= np.percentile(values, percentile)


@dataclass(frozen=True)
class BlurFilter:
    """A parsed ``--blur-filter``: ``threshold:T`` (absolute) or ``percentile:P`` (relative)."""

    threshold: float | None = None
    percentile: float | None = None

    @property
    def active(self) -> bool:
        return self.threshold is not None or self.percentile is not None

    def keep(self, scores: np.ndarray | list[float]) -> np.ndarray:
        return select_sharp(scores, threshold=self.threshold, percentile=self.percentile)

    def describe(self) -> str:
        if self.threshold is not None:
            return f"score < {self.threshold:g}"
        if self.percentile is not None:
            return f"blurriest {self.percentile:g}%"
        return "none"


def parse_blur_filter(spec: str | None) -> BlurFilter:
    """``none`` | ``threshold:T`` | ``percentile:P`` (also ``T`` alone = threshold, ``P%``)."""
    text = (spec or "none").strip().lower()
    if text in ("", "none", "off"):
        return BlurFilter()
    kind, _, value = text.partition(":")
    if not value:
        kind, value = ("percentile", text[:-1]) if text.endswith("%") else ("threshold", text)
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if kind in ("percentile", "p") and 0.0 <= number < 100.0:
        return BlurFilter(percentile=number)
    if kind in ("threshold", "t") and number >= 0.0:
        return BlurFilter(threshold=number)
    raise UsageError(
        "--blur-filter",
        f"expected none, threshold:T (T >= 0) or percentile:P (0 <= P < 100), got {spec!r}",
    )
