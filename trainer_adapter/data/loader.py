"""A batched, lazy ray loader whose memory is bounded by a budget, not by the dataset size.

nerfstudio keeps every training image decoded as float32 (127 GB for ``apartment`` at 2K) and
draws every batch from all of them. Here, when the split does not fit ``cache_bytes``, each
batch draws rays from a *pool* of K decoded images held as uint8 (JPEG) or float16 (EXR), and
the whole capture streams through the pool: the stream is one fresh seeded permutation of the
split per pass, and the pool is the window ``[head - K, head)`` of it. Background threads decode
the S positions after ``head`` into the free slots of a ring of K + S slots; advancing ``head``
by m swaps the m oldest images out and the m decoded ones in, so every pass puts every training
image in the pool, whatever the budget.

A slot may hold a lattice of its image instead of all of it (``pool_stride``): every n-th row
and column from an offset that changes each pass, so the budget holds n*n times the images and
every pixel still comes round. ``"auto"`` picks the smallest stride (up to 4) whose pool holds
the whole split, among those whose lattice holds 16 batches' worth of pixels; a pool of the
whole split repeats the first pass's order, so each image is always in it exactly once
(docs/loader.md, "Pixel stride").

How fast ``head`` moves (``swap_rate``):

- ``"auto"`` (default): before every batch, every image decoded since the last batch enters the
  pool (the ready prefix of the staging slots). The pool turns over as fast as the workers
  decode (at ``decode_duty``) and a step never waits for a decode; which images a batch mixes
  then depends on timing, so batches are not reproducible from run to run.
- a number r: ``head = K + floor(step * r)`` (r at most S), a pure function of the step. The
  batches then depend on (seed, step, split, plan, r) and the pixels only, never on timing or
  worker count, so N steps + resume + N steps equals 2N steps; a step waits when decoding falls
  behind (counted in the coverage report).

When the split fits the budget, every image is decoded once and every batch draws from all of
them, exactly as ``mode="full"`` (nerfstudio-style) does, so the two give the same batches.

Valid pixels only: a ray's image is a uniform pool position; its pixel is uniform inside the
image's valid region (the fisheye crop circle around the principal point, and the mask when
the dataset has masks), by rejection sampling inside the circle's bounding box.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np
import torch

from eyeful_tools.errors import InputFormatError, SplitError, UsageError
from trainer_adapter.data.cache import DiskCache
from trainer_adapter.data.coverage import Coverage
from trainer_adapter.data.images import (  # noqa: F401 - re-exported: part of the loader API
    EvalImage,
    decode_into,
    iter_eval_images,
    load_eval_image,
    pixel_dtype,
    to_float_rgb,
)
from trainer_adapter.data.parser import ParsedDataset
from trainer_adapter.data.rays import (
    RAY_DTYPE,
    CameraTensors,
    camera_rays,
    pack_cameras,
    valid_pixel_mask,
)
from trainer_adapter.data.schedule import (
    ImageStream,
    PoolPlan,
    PoolStride,
    SwapRate,
    advance_head,
    check_decode_duty,
    check_pool_stride,
    check_swap_rate,
    default_workers,
    plan_for,
    plan_pool,
)

log = logging.getLogger(__name__)

__all__ = [
    "Coverage",
    "EvalImage",
    "ImageStream",
    "PoolPlan",
    "RayBatch",
    "RayLoader",
    "SwapRate",
    "advance_head",
    "iter_eval_images",
    "plan_pool",
]

_MAX_REJECTION_ROUNDS = 200


class RayBatch(TypedDict, total=False):
    """One training batch. All tensors on the loader's device."""

    origins: torch.Tensor  # [B, 3] float32, normalised world
    directions: torch.Tensor  # [B, 3] float32, unit
    rgb: torch.Tensor  # [B, 3] float32: LDR in [0, 1]; EXR linear radiance (may exceed 1)
    image_index: torch.Tensor  # [B] int64, index into the ParsedDataset
    pixels: torch.Tensor  # [B, 2] int64 (row, col)


# ---------------------------------------------------------------------------------------------
# The loader.


def _timed_decode(
    dataset: ParsedDataset,
    index: int,
    pixels_out: np.ndarray,
    mask_out: np.ndarray | None,
    disk_cache: DiskCache | None,
    duty: float = 1.0,
    lattice: tuple[int, int, int] = (1, 0, 0),
) -> float:
    """:func:`decode_into` on a worker thread; returns its wall-clock seconds. With ``duty``
    below 1 the thread then rests so that decoding is that share of its time."""
    tic = time.perf_counter()
    decode_into(dataset, index, pixels_out, mask_out, disk_cache, lattice)
    seconds = time.perf_counter() - tic
    if duty < 1.0:
        time.sleep(seconds * (1.0 / duty - 1.0))
    return seconds


class RayLoader:
    """Batches of rays from one split, drawn from a bounded pool that the capture streams through.

    Args:
        dataset: from :func:`trainer_adapter.data.parser.parse_dataset`.
        split: "train", "val" or "test".
        rays_per_batch: B.
        pool_images: cap on K, the images sampled from at once (default: all the budget holds).
        pool_stride: ``"auto"`` or the pixel stride of a pool slot (see the module docstring).
        swap_rate: ``"auto"`` or images entering the pool per step (see the module docstring).
        cache_bytes: bound on the decoded slots (pool + staging); None: no bound.
        workers: decoding threads (OpenCV and OpenEXR release the GIL); default
            :func:`default_workers`.
        mode: "lazy" (the pool) or "full" (every image of the split decoded up front).
        seed: the stream order and the rays are functions of the seed.
        disk_cache: folder of decoded ``.npy`` copies, reused across passes and runs.
        device: where the batch tensors (and the ray maths) go.
    """

    def __init__(
        self,
        dataset: ParsedDataset,
        split: str = "train",
        *,
        rays_per_batch: int = 4096,
        pool_images: int | None = None,
        pool_stride: PoolStride = "auto",
        swap_rate: SwapRate = "auto",
        cache_bytes: int | None = None,
        workers: int | None = None,
        decode_duty: float | None = None,
        mode: Literal["lazy", "full"] = "lazy",
        seed: int = 0,
        disk_cache: str | Path | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if mode not in ("lazy", "full"):
            raise UsageError(None, f"mode must be 'lazy' or 'full', got {mode!r}")
        if rays_per_batch < 1:
            raise UsageError(None, "rays_per_batch must be at least 1")
        self.dataset = dataset
        self.split = split
        self.indices = dataset.indices(split)
        if len(self.indices) == 0:
            raise SplitError(dataset.transforms_path, f"split {split} has no images")
        self.rays_per_batch = int(rays_per_batch)
        self.mode = mode
        self.seed = int(seed)
        self.swap_rate = check_swap_rate(swap_rate)
        self.decode_duty = check_decode_duty(decode_duty, self.swap_rate)
        self.device = torch.device(device)
        self.disk_cache = None if disk_cache is None else DiskCache(disk_cache)
        self.dtype = pixel_dtype(dataset)
        workers = default_workers() if workers is None else max(1, int(workers))
        cameras = [dataset.cameras[i] for i in self.indices]
        self._max_hw = (max(c.height_px for c in cameras), max(c.width_px for c in cameras))
        self._min_side = min(min(c.height_px, c.width_px) for c in cameras)  # a lattice's limit
        self._has_masks = dataset.has_masks
        count = len(self.indices)
        if mode == "full":  # unused, but a bad value is the same error as in lazy mode
            check_pool_stride(pool_stride, self._min_side)
            self.plan = self._plan(None, None, "auto")
        else:
            self.plan = self._plan(cache_bytes, pool_images, pool_stride)
        same_order = self.plan.streams_whole_split(count)
        self._stream = ImageStream(self.indices, self.seed, same_order=same_order)
        self._region = _SamplingRegions(dataset)
        self._ray_dtype = RAY_DTYPE  # float32: float64 is slow on GPUs and not needed
        self._packed: CameraTensors = pack_cameras(
            dataset.cameras, device=self.device, dtype=self._ray_dtype
        )
        self._world_from_cam = torch.as_tensor(  # [N, 3, 4]: gathering per ray moves less
            dataset.world_from_cam[:, :3], dtype=self._ray_dtype, device=self.device
        )
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="ray-decode")
        self._futures: dict[int, Future[float]] = {}
        self._closed = False
        self._step = 0
        self._head: int | None = None  # None: the pool is (re)filled before the next batch
        self._resumed_head: int | None = None
        height, width = (-(-side // self.plan.stride) for side in self._max_hw)
        self._pixels = np.zeros((self.plan.slots, height, width, 3), dtype=self.dtype)
        self._masks = (
            np.ones((self.plan.slots, height, width), dtype=bool) if self._has_masks else None
        )
        self._row_of = np.full(len(dataset), -1, dtype=np.int64)  # dataset index -> split row
        self._row_of[self.indices] = np.arange(count)
        self._pool_index = self.indices  # [K] dataset index of each pool position
        self._pool_slots = np.arange(count)  # [K] slot of each pool position
        self._pool_lattice = np.zeros((count, 2), dtype=np.int64)  # [K] (dy, dx) of each slot
        self._start_counters(count)
        if mode == "full":
            try:
                self._fill_resident()
            except BaseException:
                self.close()
                raise

    def _plan(
        self, cache_bytes: int | None, pool_images: int | None, pool_stride: PoolStride
    ) -> PoolPlan:
        """Slots, pool and stride for the split's images under the budget (``schedule``)."""
        bytes_per_pixel = 3 * self.dtype.itemsize + (1 if self._has_masks else 0)
        return plan_for(
            len(self.indices),
            self._max_hw,
            bytes_per_pixel,
            cache_bytes=cache_bytes,
            stride=pool_stride,
            rays_per_batch=self.rays_per_batch,
            pool_images=pool_images,
            min_side=self._min_side,
        )

    def _start_counters(self, count: int) -> None:
        """Coverage counters (in the state dict, so a resumed run reports the whole run)."""
        self._rays = np.zeros(count, dtype=np.int64)  # [n] rays drawn per split image
        self._visits = np.zeros(count, dtype=np.int64)  # [n] entries into the pool
        self._wait_s = self._fill_s = self._decode_s = self._wall_s = 0.0
        self._decoded = 0
        self._clock: float | None = None
        self._names: tuple[str, ...] | None = None

    # -- public ---------------------------------------------------------------------------------

    @property
    def pool_images(self) -> int:
        return self.plan.pool_images

    @property
    def pool_bytes(self) -> int:
        """Bytes of decoded pixels (and masks) held: the part ``cache_bytes`` bounds."""
        return self._pixels.nbytes + (0 if self._masks is None else self._masks.nbytes)

    @property
    def step(self) -> int:
        return self._step

    def state_dict(self) -> dict[str, Any]:
        """Plain numbers and lists (checkpoints load with ``weights_only=True``).

        State only, no measurements: the timings (decode wait, decode time, wall time) count
        from the start of this process, so the same run writes byte-identical checkpoints."""
        return {
            "step": self._step,
            "seed": self.seed,
            "head": self._head if self._head is not None else self._resumed_head,
            "rays": self._rays.tolist(),
            "pool_visits": self._visits.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at a step, with the pool and stream position the state was taken at: with a
        fixed ``swap_rate`` the next batch is the one an uninterrupted run would give."""
        self._drain()
        self._step = int(state["step"])
        head = state.get("head")
        self._resumed_head = None if head is None else int(head)
        if len(state.get("rays", ())) == len(self.indices):
            self._rays = np.asarray(state["rays"], dtype=np.int64)
            self._visits = np.asarray(state["pool_visits"], dtype=np.int64)

    def next_batch(self) -> RayBatch:
        if self._closed:
            raise RuntimeError("RayLoader is closed")
        now = time.perf_counter()
        if self._clock is None:
            self._clock = now
        if not self.plan.resident:
            self._advance(self._step)
        elif self._head is None:
            self._fill_resident()
        batch = self._sample(self._step)
        self._step += 1
        self._wall_s += time.perf_counter() - self._clock
        self._clock = time.perf_counter()
        return batch

    def coverage(self) -> Coverage:
        """What the batches so far covered (see :mod:`trainer_adapter.data.coverage`)."""
        count = len(self.indices)
        head = self.plan.pool_images if self._head is None else self._head
        swapped = 0 if self.plan.resident else head - self.plan.pool_images
        if self._names is None:
            root = self.dataset.transforms_path.parent
            self._names = tuple(
                str(p.relative_to(root)) if p.is_relative_to(root) else str(p)
                for p in (self.dataset.image_paths[i] for i in self.indices)
            )
        return Coverage(
            names=self._names,
            rays=self._rays.copy(),
            pool_visits=self._visits.copy(),
            pool_images=self.plan.pool_images,
            resident=self.plan.resident,
            passes=0 if self.plan.resident else head // count,
            steps=self._step,
            decode_wait_s=self._wait_s,
            fill_s=self._fill_s,
            wall_s=self._wall_s,
            decode_ms=1000.0 * self._decode_s / self._decoded if self._decoded else None,
            swap_per_step=swapped / max(self._step, 1),
            pool_stride=self.plan.stride,
        )

    def __iter__(self) -> Iterator[RayBatch]:
        return self

    def __next__(self) -> RayBatch:
        return self.next_batch()

    def close(self) -> None:
        """Stop the decoding threads (pending decodes are cancelled)."""
        if not self._closed:
            self._closed = True
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._futures.clear()

    def __enter__(self) -> RayLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

    # -- pool management ------------------------------------------------------------------------

    def _advance(self, step: int) -> None:
        """Move the window to where ``step`` wants it (see :func:`advance_head`)."""
        if self._head is None:
            self._fill(step)
            return
        head = advance_head(self._head, step, self.plan, self.swap_rate, self._ready)
        if head > self._head:
            self._take(range(self._head, head))
            self._set_head(head, entered=self._head)

    def _ready(self, position: int) -> bool:
        future = self._futures.get(position)
        return future is not None and future.done()

    def _fill(self, step: int) -> None:
        """Decode the window (and queue the staging) for a fresh or resumed loader."""
        start = self.plan.pool_images
        if self.swap_rate != "auto":
            head = advance_head(start, step, self.plan, self.swap_rate, self._ready)
        else:
            head = max(start, self._resumed_head or start)
        tic = time.perf_counter()
        for position in range(head - start, head + self.plan.staging):
            self._submit(position, paced=position >= head)  # the first fill at full speed
        self._take(range(head - start, head))
        self._fill_s += time.perf_counter() - tic
        # after a resume, only the positions past the saved window are new to the pool
        entered = head - start if self._resumed_head is None else self._resumed_head
        self._resumed_head = None
        self._set_head(head, entered=entered)

    def _take(self, positions: range) -> None:
        """Wait for the decodes of ``positions`` (re-raising their errors)."""
        tic = time.perf_counter()
        for position in positions:
            if position not in self._futures:
                self._submit(position, paced=False)  # waited for: never paced
            self._decode_s += self._futures.pop(position).result()
            self._decoded += 1
        self._wait_s += time.perf_counter() - tic

    def _set_head(self, head: int, *, entered: int) -> None:
        """The pool is now ``[head - K, head)``, positions from ``entered`` on new to it; queue
        decodes for the freed staging slots."""
        window = range(head - self.plan.pool_images, head)
        rows = self._stream.rows(window)  # split rows, as the visit counters are kept
        np.add.at(self._visits, rows[max(entered, window.start) - window.start :], 1)
        self._pool_index = self._stream.indices[rows]
        self._pool_slots = np.arange(window.start, window.stop) % self.plan.slots
        self._pool_lattice = self._stream.lattice_offsets(window, self.plan.stride, rows)
        self._head = head
        for position in range(head, head + self.plan.staging):
            if position not in self._futures:
                self._submit(position)

    def _drain(self) -> None:
        """Wait for every queued decode (a slot must never have two writers) and forget them."""
        for future in self._futures.values():
            future.cancel()
        wait(list(self._futures.values()))
        self._futures.clear()
        if not self.plan.resident:
            self._head = None

    def _submit(self, position: int, paced: bool = True) -> None:
        """Queue the decode of stream ``position`` into its slot; ``paced``: at the duty."""
        rows = self._stream.rows(range(position, position + 1))
        index = int(self._stream.indices[rows[0]])
        slot = position % self.plan.slots
        masks = None if self._masks is None else self._masks[slot]
        if masks is not None:
            masks[...] = True
        duty = self.decode_duty if paced else 1.0
        stride = self.plan.stride
        dy, dx = self._stream.lattice_offsets(range(position, position + 1), stride, rows)[0]
        self._futures[position] = self._executor.submit(
            _timed_decode,
            self.dataset,
            index,
            self._pixels[slot],
            masks,
            self.disk_cache,
            duty,
            (stride, int(dy), int(dx)),
        )

    def _fill_resident(self) -> None:
        """Decode every image of the split into its own slot (the split fits, or mode full)."""
        tic = time.perf_counter()
        futures = [
            self._executor.submit(
                _timed_decode,
                self.dataset,
                int(index),
                self._pixels[row],
                None if self._masks is None else self._masks[row],
                self.disk_cache,
            )
            for row, index in enumerate(self.indices)
        ]
        for future in futures:
            self._decode_s += future.result()
            self._decoded += 1
        if self.mode == "lazy":
            self._wait_s += time.perf_counter() - tic
            self._fill_s += time.perf_counter() - tic
        self._visits = np.maximum(self._visits, 1)
        self._head = len(self.indices)

    # -- sampling -------------------------------------------------------------------------------

    def _sample(self, step: int) -> RayBatch:
        rng = np.random.default_rng([self.seed, 2, step])
        count = self.rays_per_batch
        position = rng.integers(0, len(self._pool_index), count)
        image = self._pool_index[position]
        slot = self._pool_slots[position]
        stride = self.plan.stride
        offsets = self._pool_lattice[position]
        try:
            rows, cols = self._region.sample(rng, image, slot, self._masks, stride, offsets)
        except InputFormatError as error:
            if stride == 1:
                raise
            raise InputFormatError(
                None,
                f"{error.reason}, or too thin for the pool's pixel stride {stride}: "
                "train with --pool-stride 1",
            ) from None
        rgb = to_float_rgb(self._pixels[slot, rows // stride, cols // stride])
        self._rays += np.bincount(self._row_of[image], minlength=len(self._rays))
        pixels = np.stack([rows, cols], axis=-1)  # [B, 2] (row, col)
        uv = pixels[:, ::-1] + 0.5  # [B, 2] (u, v) pixel centres, exact in float32
        on_device = torch.from_numpy(image).to(self.device)
        origins, directions = camera_rays(
            self._packed[on_device],
            self._world_from_cam[on_device],
            torch.from_numpy(uv).to(self.device, self._ray_dtype),
        )
        return RayBatch(
            origins=origins.float(),
            directions=directions.float(),
            rgb=torch.from_numpy(rgb).to(self.device),
            image_index=on_device,
            pixels=torch.from_numpy(pixels).to(self.device),
        )


class _SamplingRegions:
    """Per-image bounding box of the valid region and the crop circle, for rejection sampling."""

    def __init__(self, dataset: ParsedDataset) -> None:
        count = len(dataset.cameras)
        self.row_lo = np.zeros(count, dtype=np.int64)
        self.row_span = np.zeros(count, dtype=np.int64)
        self.col_lo = np.zeros(count, dtype=np.int64)
        self.col_span = np.zeros(count, dtype=np.int64)
        self.cx = np.zeros(count)
        self.cy = np.zeros(count)
        self.radius2 = np.full(count, np.inf)
        self.has_circle = False
        for i, camera in enumerate(dataset.cameras):
            height, width = camera.height_px, camera.width_px
            r_lo, r_hi, c_lo, c_hi = 0, height, 0, width
            radius = camera.fisheye_crop_radius_px
            if radius:
                self.has_circle = True
                self.radius2[i] = radius * radius
                # pixel centres within the circle: |j + .5 - cx| <= r
                c_lo = max(0, math.floor(camera.cx - radius - 0.5))
                c_hi = min(width, math.ceil(camera.cx + radius + 0.5))
                r_lo = max(0, math.floor(camera.cy - radius - 0.5))
                r_hi = min(height, math.ceil(camera.cy + radius + 0.5))
                if r_hi <= r_lo or c_hi <= c_lo or not valid_pixel_mask(camera).any():
                    raise InputFormatError(
                        dataset.image_paths[i], "fisheye crop circle contains no pixel centre"
                    )
            self.row_lo[i], self.row_span[i] = r_lo, r_hi - r_lo
            self.col_lo[i], self.col_span[i] = c_lo, c_hi - c_lo
            self.cx[i], self.cy[i] = camera.cx, camera.cy

    def sample(
        self,
        rng: np.random.Generator,
        image: np.ndarray,
        slot: np.ndarray,
        masks: np.ndarray | None,
        stride: int = 1,
        offsets: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Uniform valid (row, col) per ray, in image pixels; rejected draws are redrawn
        (deterministic in rng). With ``stride`` > 1 only the slot's lattice
        (``offsets`` [B, 2] (dy, dx) + ``stride`` * k) is drawn from."""
        rows = np.empty(len(image), dtype=np.int64)
        cols = np.empty(len(image), dtype=np.int64)
        todo = np.arange(len(image))
        if offsets is None:
            offsets = np.zeros((len(image), 2), dtype=np.int64)
        for _ in range(_MAX_REJECTION_ROUNDS):
            which = image[todo]
            uniform = rng.random((2, len(todo)))
            r, r_ok = _on_lattice(
                uniform[0], self.row_lo[which], self.row_span[which], offsets[todo, 0], stride
            )
            c, c_ok = _on_lattice(
                uniform[1], self.col_lo[which], self.col_span[which], offsets[todo, 1], stride
            )
            ok = r_ok & c_ok
            if self.has_circle:
                du = c + 0.5 - self.cx[which]
                dv = r + 0.5 - self.cy[which]
                ok &= du * du + dv * dv <= self.radius2[which]
            if masks is not None:
                ok[ok] &= masks[slot[todo[ok]], r[ok] // stride, c[ok] // stride]
            rows[todo[ok]] = r[ok]
            cols[todo[ok]] = c[ok]
            todo = todo[~ok]
            if len(todo) == 0:
                return rows, cols
        raise InputFormatError(None, "could not sample valid pixels: masks are (nearly) empty")


def _on_lattice(
    uniform: np.ndarray, low: np.ndarray, span: np.ndarray, offset: np.ndarray, stride: int
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform pixel indices in ``[low, low + span)`` on the lattice ``offset + stride * k``,
    and whether the range holds a lattice index at all. At stride 1 (offset 0) this is
    ``low + floor(uniform * span)``, the unstrided draw."""
    first = -(-(low - offset) // stride)  # lattice index of the first pixel >= low
    count = -(-(low + span - offset) // stride) - first
    index = offset + stride * (first + (uniform * np.maximum(count, 0)).astype(np.int64))
    return index, count > 0
