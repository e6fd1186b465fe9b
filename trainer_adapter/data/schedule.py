"""The pool schedule of the lazy loader: how the budget splits into pool and staging slots,
at which pixel stride a slot holds its image, the shuffled stream of images, and how far the
pool's window moves before each step.

Pure functions of their arguments (no I/O, no threads), so the coverage of a schedule can be
simulated for any capture size without decoding anything (``tests/test_loader.py``).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from eyeful_tools.errors import UsageError

#: ``"auto"`` or images entering the pool per step
SwapRate = float | str

#: fewest staging slots (decoded ahead of the pool) when the split does not fit the budget
MIN_STAGING = 3

#: the coarsest lattice a slot holds by default: every 4th row and column (1/16 of the pixels)
MAX_AUTO_STRIDE = 4

#: an automatic lattice holds at least this many batches' worth of pixels
LATTICE_BATCHES = 16

#: ``"auto"`` or a slot's pixel stride
PoolStride = int | str


@dataclass(frozen=True)
class PoolPlan:
    """K images sampled from, S staging slots decoded ahead (0: every image resident), each
    slot holding one image's pixel lattice at ``stride`` (1: the whole image)."""

    pool_images: int
    staging: int
    bytes_per_slot: int  # an image, or its lattice at ``stride``
    stride: int = 1

    @property
    def slots(self) -> int:
        return self.pool_images + self.staging

    @property
    def pool_bytes(self) -> int:
        return self.slots * self.bytes_per_slot

    @property
    def resident(self) -> bool:
        return self.staging == 0

    def streams_whole_split(self, num_images: int) -> bool:
        """A streaming pool that holds every image (a strided one): each pass then keeps the
        first pass's order, so each image is replaced by its own next lattice."""
        return self.pool_images >= num_images and not self.resident


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


def lattice_bytes(shape: tuple[int, int], bytes_per_pixel: int, stride: int) -> int:
    """Bytes of a slot holding every ``stride``-th row and column of a ``shape`` image."""
    height, width = shape
    return -(-height // stride) * -(-width // stride) * bytes_per_pixel


def check_pool_stride(stride: PoolStride, min_side: int | None = None) -> PoolStride:
    """``"auto"`` or a whole number from 1 to ``min_side`` (a lattice must hold a pixel of
    every image)."""
    if isinstance(stride, str) and stride == "auto":
        return "auto"
    whole = isinstance(stride, numbers.Integral) or (
        isinstance(stride, numbers.Real) and math.isfinite(stride) and stride == int(stride)
    )
    if isinstance(stride, bool) or not whole:
        raise UsageError(None, f"pool_stride must be 'auto' or a whole number, got {stride!r}")
    value = int(stride)
    if value < 1:
        raise UsageError(None, f"pool_stride must be at least 1, got {stride!r}")
    if min_side is not None and value > min_side:
        raise UsageError(
            None, f"pool_stride {value} is larger than the smallest image side ({min_side} px)"
        )
    return value


def choose_stride(
    num_images: int,
    shape: tuple[int, int],
    bytes_per_pixel: int,
    *,
    cache_bytes: int | None,
    stride: PoolStride = "auto",
    rays_per_batch: int = 0,
    pool_images: int | None = None,
    min_side: int | None = None,
) -> int:
    """The pixel stride of the pool's slots.

    ``shape`` is the largest image's, ``min_side`` the smallest side of any image.
    ``"auto"``: 1 when the split (or ``pool_images`` of it) fits the budget whole, or there is
    no budget; else the smallest stride up to :data:`MAX_AUTO_STRIDE` whose slots hold it, so every
    batch mixes rays from every image as full load does; else the largest. Why: a pool of
    whole images holds K < n of them, and batches drawn from only those trail full load
    (docs/loader.md, "Pixel stride"). Each pass fills a slot with a fresh lattice, so every
    pixel comes round; but while an image stays in the pool its rays come from its lattice
    only, so an automatic lattice must hold :data:`LATTICE_BATCHES` x ``rays_per_batch``
    pixels (at 2K: stride 4 holds 175k; on 50x75 test images stride 2 holds 950, and there
    the lattice cost more than it gained). It never exceeds ``min_side``.
    """
    min_side = min(shape) if min_side is None else min_side
    stride = check_pool_stride(stride, min_side)
    if stride != "auto":
        return int(stride)
    wanted = num_images if pool_images is None else min(pool_images, num_images)
    if cache_bytes is None:
        return 1
    whole = cache_bytes // lattice_bytes(shape, bytes_per_pixel, 1)
    if whole >= num_images or whole - staging_slots(whole) >= wanted:
        return 1
    largest = max(1, min(MAX_AUTO_STRIDE, min_side))
    while largest > 1 and lattice_bytes(shape, 1, largest) < LATTICE_BATCHES * rays_per_batch:
        largest -= 1
    for candidate in range(1, largest + 1):
        slots = cache_bytes // lattice_bytes(shape, bytes_per_pixel, candidate)
        if slots - staging_slots(slots) >= wanted:
            return candidate
    return largest


def plan_for(
    num_images: int,
    shape: tuple[int, int],
    bytes_per_pixel: int,
    *,
    cache_bytes: int | None,
    stride: PoolStride = "auto",
    rays_per_batch: int = 0,
    pool_images: int | None = None,
    min_side: int | None = None,
) -> PoolPlan:
    """The loader's whole plan: :func:`choose_stride`, then :func:`plan_pool` at that stride's
    lattice size (pure, so simulations at preset sizes use the loader's own rule)."""
    chosen = choose_stride(
        num_images, shape, bytes_per_pixel, cache_bytes=cache_bytes, stride=stride,
        rays_per_batch=rays_per_batch, pool_images=pool_images, min_side=min_side,
    )  # fmt: skip
    return plan_pool(
        num_images,
        lattice_bytes(shape, bytes_per_pixel, chosen),
        cache_bytes=cache_bytes,
        pool_images=pool_images,
        stride=chosen,
    )


def staging_slots(slots: int) -> int:
    """S of a budget of ``slots`` that cannot hold the split: max(3, slots / 8), below slots."""
    return min(slots - 1, max(MIN_STAGING, math.ceil(slots / 8)))


def plan_pool(
    num_images: int,
    bytes_per_slot: int,
    *,
    cache_bytes: int | None,
    pool_images: int | None = None,
    stride: int = 1,
) -> PoolPlan:
    """Split the slots ``cache_bytes`` holds into K pool images and S staging slots.

    A split that fits the budget at stride 1 is held whole. Otherwise S = max(3, slots / 8):
    room for the decodes in flight and for those finished since the last step, and K is the
    rest (capped by ``pool_images`` when given, and by the split), the largest pool the budget
    allows, so batches mix widely. ``bytes_per_slot`` is an image's size at ``stride``; a
    strided pool always streams, since each pass brings a new lattice of every image. The plan
    does not depend on the worker count, so neither do the batches.
    """
    if pool_images is not None and pool_images < 1:
        raise UsageError(None, f"pool_images must be at least 1, got {pool_images}")
    if cache_bytes is None:
        if stride == 1 and (pool_images is None or pool_images >= num_images):
            return PoolPlan(num_images, 0, bytes_per_slot)
        pool = min(pool_images or num_images, num_images)
        staging = max(MIN_STAGING, math.ceil(pool / 7))
        return PoolPlan(pool, staging, bytes_per_slot, stride)
    slots = int(cache_bytes // bytes_per_slot)
    if slots >= num_images and stride == 1:
        return PoolPlan(num_images, 0, bytes_per_slot)  # everything fits the budget: keep it
    if slots < 2:
        raise UsageError(
            None,
            f"cache budget of {cache_bytes} bytes holds fewer than 2 decoded images "
            f"({bytes_per_slot} bytes each); raise --cache-bytes",
        )
    staging = staging_slots(slots)
    pool = min(slots - staging, pool_images or slots, num_images)
    return PoolPlan(pool, staging, bytes_per_slot, stride)


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
    """Stream position j -> dataset index: pass j // n is a seeded permutation of the split.

    ``same_order``: every pass repeats the first pass's order. For a pool that holds the whole
    split (K = n, a strided pool): position j + n is then the image j leaves the pool for, so
    each image is replaced by its own next lattice and is always in the pool exactly once. A
    fresh order would leave an image out for up to half a pass while others sit in twice."""

    def __init__(self, indices: np.ndarray, seed: int, *, same_order: bool = False) -> None:
        self.indices = np.asarray(indices, dtype=np.int64)
        self.seed = seed
        self.same_order = same_order
        self._passes: dict[int, np.ndarray] = {}
        self._phase = np.random.default_rng([seed, 3]).integers(0, 1 << 30, len(self.indices))

    def _pass_rows(self, number: int) -> np.ndarray:
        if self.same_order:
            number = 0
        if number not in self._passes:
            if len(self._passes) > 4:
                self._passes.pop(min(self._passes))
            rng = np.random.default_rng([self.seed, 1, number])
            self._passes[number] = rng.permutation(len(self.indices))
        return self._passes[number]

    def rows(self, positions: range) -> np.ndarray:
        """Split rows (positions in ``indices``) streamed at ``positions``."""
        where = np.arange(positions.start, positions.stop, dtype=np.int64)
        n = len(self.indices)
        out = np.empty(len(where), dtype=np.int64)
        for number in np.unique(where // n):
            chosen = where // n == number
            out[chosen] = self._pass_rows(int(number))[where[chosen] % n]
        return out

    def __getitem__(self, positions: range) -> np.ndarray:
        return self.indices[self.rows(positions)]

    def lattice_offsets(
        self, positions: range, stride: int, rows: np.ndarray | None = None
    ) -> np.ndarray:
        """``[m, 2]`` (row, col) offset of the pixel lattice each position's slot holds
        (``rows``: ``self.rows(positions)`` where the caller has it already).

        Image i takes lattice ``(phase_i + pass) mod stride**2``: images differ within a pass,
        and any ``stride**2`` consecutive passes give each image every lattice once, so every
        pixel comes round. All zero at stride 1."""
        count = positions.stop - positions.start
        if stride == 1:
            return np.zeros((max(count, 0), 2), dtype=np.int64)
        passes = np.arange(positions.start, positions.stop, dtype=np.int64) // len(self.indices)
        rows = self.rows(positions) if rows is None else rows
        lattice = (self._phase[rows] + passes) % (stride * stride)
        return np.stack([lattice // stride, lattice % stride], axis=-1)
