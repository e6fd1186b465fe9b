"""How much of the capture a run has trained on: the loader's coverage report.

A bounded pool can silently train on a subset of a large capture (issue 16: 40 of 280 images
ever contributed a ray). Every run therefore reports, from the loader's own counters, how many
training images contributed rays, the spread of rays per image, the completed passes over the
capture and the time the training loop spent waiting for decodes; the trainer shows it in the
progress line and the final summary and writes :meth:`Coverage.to_json` to ``coverage.json``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

#: keys :meth:`Coverage.progress_stats` adds to the trainer's per-log ``stats`` (floats only)
PROGRESS_KEYS = ("images_seen", "images", "passes", "decode_wait_s")


@dataclass(frozen=True)
class Coverage:
    """A snapshot of the loader's counters; arrays are per training image (split order)."""

    names: tuple[str, ...]  # [n] image paths, relative to the dataset when possible
    rays: np.ndarray  # [n] int64 rays drawn from each image
    pool_visits: np.ndarray  # [n] int64 times each image entered the pool
    pool_images: int  # images sampled from at once
    resident: bool  # every training image is in the pool all the time (no streaming)
    passes: int  # completed passes of the shuffled stream (0 when resident)
    steps: int  # batches drawn
    decode_wait_s: float  # seconds next_batch blocked on decoding (initial fill included)
    fill_s: float  # of which the initial fill of the pool (and refills after a resume)
    wall_s: float  # seconds from the first batch request to the last batch
    decode_ms: float | None  # mean decode time of one image on one worker
    swap_per_step: float  # images that entered the pool per step, on average
    pool_stride: int = 1  # a slot holds every n-th pixel row and column (a new lattice a pass)

    @property
    def images(self) -> int:
        return len(self.rays)

    @property
    def images_seen(self) -> int:
        """Training images that contributed at least one ray."""
        return int(np.count_nonzero(self.rays))

    @property
    def steps_per_pass(self) -> float | None:
        """Steps one pass over the capture took at this run's swap rate (None: resident)."""
        if self.resident or self.swap_per_step <= 0:
            return None
        return self.images / self.swap_per_step

    def rays_quantiles(self) -> tuple[int, float, int]:
        """(min, median, max) rays per training image."""
        if self.images == 0:
            return 0, 0.0, 0
        return int(self.rays.min()), float(np.median(self.rays)), int(self.rays.max())

    def progress_stats(self) -> dict[str, float]:
        """The numbers the progress line shows (see :func:`progress_text`)."""
        return {
            "images_seen": float(self.images_seen),
            "images": float(self.images),
            "passes": math.nan if self.resident else float(self.passes),
            "decode_wait_s": float(self.decode_wait_s),
        }

    def summary(self) -> str:
        """One line for the end of a run; says plainly when images were never trained on."""
        low, median, high = self.rays_quantiles()
        text = (
            f"coverage: {self.images_seen}/{self.images} training images seen "
            f"(rays per image min {low}, median {median:.0f}, max {high}), "
        )
        if self.resident:
            text += f"all {self.images} images held decoded, "
        else:
            per_pass = self.steps_per_pass
            length = f" of ~{per_pass:.0f} steps" if per_pass is not None else ""
            text += f"{self.passes} passes{length} through a pool of {self.pool_images}"
            if self.pool_stride > 1:
                text += f" at pixel stride {self.pool_stride}"
            text += ", "
        share = 100.0 * self.decode_wait_s / self.wall_s if self.wall_s > 0 else 0.0
        text += (
            f"decode wait {self.decode_wait_s:.1f} s ({share:.1f}% of {self.wall_s:.0f} s; "
            f"{self.fill_s:.1f} s of it filling the pool)"
        )
        lattices = self.pool_stride**2
        if self.pool_stride > 1 and 0 < self.passes < lattices:
            text += (
                f"; each image was in the pool as {self.passes} of its {lattices} pixel lattices "
                f"(stride {self.pool_stride}), so rays came from about "
                f"{100 * self.passes / lattices:.0f}% of its pixels"
            )
        missing = self.images - self.images_seen
        if missing:
            text += f"; WARNING: {missing} training images never contributed a ray"
        return text

    def to_json(self) -> dict[str, Any]:
        low, median, high = self.rays_quantiles()
        return {
            "images": self.images,
            "images_seen": self.images_seen,
            "images_in_pool": int(np.count_nonzero(self.pool_visits)),
            "rays_per_image": {"min": low, "median": median, "max": high},
            "passes_completed": None if self.resident else self.passes,
            "steps_per_pass": self.steps_per_pass,
            "resident": self.resident,
            "pool_images": self.pool_images,
            "pool_stride": self.pool_stride,
            "steps": self.steps,
            "swap_per_step": self.swap_per_step,
            "decode_ms_per_image": self.decode_ms,
            "decode_wait_s": self.decode_wait_s,
            "fill_s": self.fill_s,
            "wall_s": self.wall_s,
            "per_image": [
                {"image": name, "rays": int(rays), "pool_visits": int(visits)}
                for name, rays, visits in zip(self.names, self.rays, self.pool_visits, strict=True)
            ],
        }


def progress_text(stats: Mapping[str, float]) -> str:
    """``seen 536/960 img, pass 3, wait 1.2 s`` from the trainer's stats (empty before any)."""
    if not all(key in stats for key in PROGRESS_KEYS):
        return ""
    passes = stats["passes"]
    where = "all in pool" if math.isnan(passes) else f"pass {int(passes) + 1}"
    return (
        f"seen {int(stats['images_seen'])}/{int(stats['images'])} img, {where}, "
        f"wait {stats['decode_wait_s']:.1f} s"
    )
