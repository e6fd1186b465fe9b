"""The pool schedule of the lazy loader: how the budget splits into pool and staging slots,
the shuffled stream of images, and how far the pool's window moves before each step.

Pure functions of their arguments (no I/O, no threads), so the coverage of a schedule can be
simulated for any capture size without decoding anything (``tests/test_loader.py``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from eyeful_tools.errors import UsageError

#: ``"auto"`` or images entering the pool per step
SwapRate = float | str

#: fewest staging slots (decoded ahead of the pool) when the split does not fit the budget
MIN_STAGING = 3


@dataclass(frozen=True)
class PoolPlan:
    """K images sampled from, S staging slots decoded ahead (0: every image resident)."""

    pool_images: int
    staging: int
    bytes_per_image: int

    @property
    def slots(self) -> int:
        return self.pool_images + self.staging

    @property
    def pool_bytes(self) -> int:
        return self.slots * self.bytes_per_image

    @property
    def resident(self) -> bool:
        return self.staging == 0


def default_workers() -> int:
    """Decode threads: two, but always one core left to the training loop."""
    return max(1, min(2, (os.cpu_count() or 1) - 1))


def default_decode_duty() -> float:
    """Share of its time a decode thread spends decoding while the pool turns over: 0.5 on a
    machine of at most 2 CPUs, else 1. On a 2-vCPU VM a decoder running flat out on the
    other CPU slowed ray sampling to 0.77x of full load; at half duty the lazy loader sampled
    at 1.20x (smaller pool, fewer cache misses) and a pass took 2.6x the steps
    (``python -m bench.loader``, docs/loader.md). At real step times the staging slots, not the
    duty, bound how many images a step takes in."""
    return 0.5 if (os.cpu_count() or 1) <= 2 else 1.0


def check_decode_duty(duty: float | None, swap_rate: SwapRate) -> float:
    """The duty decodes run at: ``None`` -> :func:`default_decode_duty`, else a share in
    ``(0, 1]``; always 1 at a fixed swap rate (its steps wait for late decodes)."""
    if duty is not None and not 0 < float(duty) <= 1:
        raise UsageError(None, f"decode_duty must be in (0, 1], got {duty!r}")
    if swap_rate != "auto":
        return 1.0
    return default_decode_duty() if duty is None else float(duty)


def plan_pool(
    num_images: int,
    bytes_per_image: int,
    *,
    cache_bytes: int | None,
    pool_images: int | None = None,
) -> PoolPlan:
    """Split the slots ``cache_bytes`` holds into K pool images and S staging slots.

    A split that fits the budget is held whole. Otherwise S = max(3, slots / 8): room for the
    decodes in flight and for those finished since the last step, and K is the rest (capped by
    ``pool_images`` when given), the largest pool the budget allows, so batches mix widely.
    The plan does not depend on the worker count, so neither do the batches.
    """
    if pool_images is not None and pool_images < 1:
        raise UsageError(None, f"pool_images must be at least 1, got {pool_images}")
    if cache_bytes is None:
        if pool_images is None or pool_images >= num_images:
            return PoolPlan(num_images, 0, bytes_per_image)
        staging = max(MIN_STAGING, math.ceil(pool_images / 7))
        return PoolPlan(pool_images, staging, bytes_per_image)
    slots = int(cache_bytes // bytes_per_image)
    if slots >= num_images:
        return PoolPlan(num_images, 0, bytes_per_image)  # everything fits the budget: keep it
    if slots < 2:
        raise UsageError(
            None,
            f"cache budget of {cache_bytes} bytes holds fewer than 2 decoded images "
            f"({bytes_per_image} bytes each); raise --cache-bytes",
        )
    staging = min(slots - 1, max(MIN_STAGING, math.ceil(slots / 8)))
    pool = min(slots - staging, pool_images or slots)
    return PoolPlan(pool, staging, bytes_per_image)


def check_swap_rate(swap_rate: SwapRate) -> SwapRate:
    """``"auto"`` or a positive finite number (images per step)."""
    if swap_rate == "auto":
        return "auto"
    try:
        rate = float(swap_rate)
    except (TypeError, ValueError):
        rate = math.nan
    if not (math.isfinite(rate) and rate > 0):
        raise UsageError(None, f"swap_rate must be 'auto' or a positive number, got {swap_rate!r}")
    return rate


def advance_head(
    head: int, step: int, plan: PoolPlan, swap_rate: SwapRate, ready: Callable[[int], bool]
) -> int:
    """Where the pool's window ends for ``step``: a fixed rate gives ``K + floor(step * r)``
    (r capped at S); ``"auto"`` takes the decoded prefix of the staging positions."""
    if swap_rate != "auto":
        rate = min(float(swap_rate), float(plan.staging))
        return max(head, plan.pool_images + math.floor(step * rate))
    moved = 0
    while moved < plan.staging and ready(head + moved):
        moved += 1
    return head + moved


class ImageStream:
    """Stream position j -> dataset index: pass j // n is a seeded permutation of the split."""

    def __init__(self, indices: np.ndarray, seed: int) -> None:
        self.indices = np.asarray(indices, dtype=np.int64)
        self.seed = seed
        self._passes: dict[int, np.ndarray] = {}

    def pass_order(self, number: int) -> np.ndarray:
        """The split's dataset indices in the order pass ``number`` streams them."""
        if number not in self._passes:
            if len(self._passes) > 4:
                self._passes.pop(min(self._passes))
            rng = np.random.default_rng([self.seed, 1, number])
            self._passes[number] = self.indices[rng.permutation(len(self.indices))]
        return self._passes[number]

    def __getitem__(self, positions: range) -> np.ndarray:
        where = np.arange(positions.start, positions.stop, dtype=np.int64)
        n = len(self.indices)
        out = np.empty(len(where), dtype=np.int64)
        for number in np.unique(where // n):
            chosen = where // n == number
            out[chosen] = self.pass_order(int(number))[where[chosen] % n]
        return out
