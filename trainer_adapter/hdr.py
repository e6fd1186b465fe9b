"""Tonemaps for HDR training and evaluation: linear radiance <-> a perceptual space.

EXR images load as linear radiance (lights far above 1.0). An L2 loss on linear values is
dominated by the few brightest pixels and ignores the shadows, so the loss is taken in a
perceptual space (HDR-NeRF, VR-NeRF practice) and PSNR is reported on tonemapped images.

Default: **mu-law**, ``y = log(1 + mu x / s) / log(1 + mu)`` with ``mu = 5000`` (Kalantari &
Ramamoorthi 2017's HDR-imaging choice) on radiance normalised by ``s``, a per-dataset high
percentile (99.9th, :func:`trainer_adapter.data.images.estimate_radiance_scale`). Why: it is
close to a log curve (VR-NeRF trains in a PQ-like perceptual space, which is log-like over the
same range) yet finite and smooth at 0, maps [0, s] onto [0, 1] so a sigmoid colour head still
fits, keeps ~1 % precision per code value down to ~1e-4 s, and has an exact inverse for
rendering back to radiance. ``log`` is the HDR-NeRF-style alternative; ``srgb`` is the display
OETF (what the EyefulTower JPEGs apply); ``none`` only divides by ``s``. For 8-bit data use
``none`` with ``s = 1`` (the JPEG values are already display-referred).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

TONEMAPS = ("mu_law", "log", "srgb", "none")
DEFAULT_TONEMAP = "mu_law"
MU = 5000.0
#: ``log`` tonemap offset (relative to the scale): the darkest value it resolves
LOG_EPSILON = 1e-3


def _check(kind: str) -> None:
    if kind not in TONEMAPS:
        raise ValueError(f"unknown tonemap {kind!r} (choose from {', '.join(TONEMAPS)})")


def tonemap(
    linear: torch.Tensor, kind: str = DEFAULT_TONEMAP, *, scale: float = 1.0, mu: float = MU
) -> torch.Tensor:
    """Linear radiance (any shape, >= 0) -> perceptual values; [0, scale] -> [0, 1]."""
    _check(kind)
    x = torch.clamp(linear / scale, min=0.0)
    if kind == "mu_law":
        return torch.log1p(mu * x) / math.log1p(mu)
    if kind == "log":
        return (torch.log(x + LOG_EPSILON) - math.log(LOG_EPSILON)) / (
            math.log(1.0 + LOG_EPSILON) - math.log(LOG_EPSILON)
        )
    if kind == "srgb":
        return torch.where(
            x <= 0.0031308,
            12.92 * x,
            1.055 * torch.pow(torch.clamp(x, min=0.0031308), 1 / 2.4) - 0.055,
        )
    return x


def inverse_tonemap(
    mapped: torch.Tensor, kind: str = DEFAULT_TONEMAP, *, scale: float = 1.0, mu: float = MU
) -> torch.Tensor:
    """Perceptual values -> linear radiance; the exact inverse of :func:`tonemap` on x >= 0."""
    _check(kind)
    if kind == "mu_law":
        x = torch.expm1(mapped * math.log1p(mu)) / mu
    elif kind == "log":
        span = math.log(1.0 + LOG_EPSILON) - math.log(LOG_EPSILON)
        x = torch.exp(mapped * span + math.log(LOG_EPSILON)) - LOG_EPSILON
    elif kind == "srgb":
        x = torch.where(
            mapped <= 0.04045,
            mapped / 12.92,
            torch.pow((torch.clamp(mapped, min=0.04045) + 0.055) / 1.055, 2.4),
        )
    else:
        x = mapped
    return torch.clamp(x, min=0.0) * scale


def run_tonemapper(hdr: dict[str, Any] | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The map a run trains and evaluates colours in: HDR runs (``hdr`` is the
    ``{"tonemap": kind, "scale": s}`` of their config.json) use :func:`tonemap`, whose [0, 1]
    range the field's sigmoid colour can reach; 8-bit runs (``hdr`` empty) use the identity."""
    if not hdr:
        return lambda rgb: rgb
    kind, scale = str(hdr["tonemap"]), float(hdr["scale"])
    return lambda rgb: tonemap(rgb, kind, scale=scale)
