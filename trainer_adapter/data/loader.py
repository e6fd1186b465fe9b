"""A batched, lazy ray loader whose memory is bounded by a budget, not by the dataset size.

nerfstudio keeps every training image decoded as float32 (127 GB for ``apartment`` at 2K).
Here each batch draws rays from a *pool* of K decoded images held as uint8 (JPEG) or float16
(EXR). The pool is a window sliding over a stream of image indices (a fresh seeded permutation
of the split per epoch): every ``refresh_every`` steps it advances by M images (the M oldest
leave, the next M arrive). Background threads decode the images that will arrive next into
free slots of a ring buffer of K + M·prefetch slots, so decoding overlaps training.

Determinism: the pool contents at step t and the rays of step t are functions of
(seed, t, split, K, M, R) and of the pixel data only, never of timing; ``mode="full"`` (all
images decoded up front, nerfstudio-style) follows the same schedule, so lazy == eager.

Valid pixels only: a ray's image is a uniform pool position; its pixel is uniform inside the
image's valid region (the fisheye crop circle around the principal point, and the mask when
the dataset has masks), by rejection sampling inside the circle's bounding box.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict

import numpy as np
import torch

from eyeful_tools.errors import InputFormatError, SplitError, UsageError
from trainer_adapter.data.cache import DiskCache
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

log = logging.getLogger(__name__)

__all__ = ["RayBatch", "RayLoader", "EvalImage", "iter_eval_images", "plan_pool", "PoolPlan"]

_MAX_REJECTION_ROUNDS = 200


class RayBatch(TypedDict, total=False):
    """One training batch. All tensors on the loader's device."""

    origins: torch.Tensor  # [B, 3] float32, normalised world
    directions: torch.Tensor  # [B, 3] float32, unit
    rgb: torch.Tensor  # [B, 3] float32: LDR in [0, 1]; EXR linear radiance (may exceed 1)
    image_index: torch.Tensor  # [B] int64, index into the ParsedDataset
    pixels: torch.Tensor  # [B, 2] int64 (row, col)


# ---------------------------------------------------------------------------------------------
# The schedule (pure functions of the seed and the step).


@dataclass(frozen=True)
class PoolPlan:
    """Pool size K, images replaced per refresh M (0: all images fit, no refresh), slots."""

    pool_images: int
    refresh_images: int
    refresh_every: int
    prefetch_refreshes: int
    bytes_per_image: int

    @property
    def slots(self) -> int:
        return self.pool_images + self.refresh_images * self.prefetch_refreshes

    @property
    def pool_bytes(self) -> int:
        return self.slots * self.bytes_per_image


def plan_pool(
    num_images: int,
    bytes_per_image: int,
    *,
    pool_images: int,
    refresh_every: int,
    refresh_images: int | None,
    cache_bytes: int | None,
    prefetch_refreshes: int = 1,
) -> PoolPlan:
    """Fit the pool (K active + M·prefetch staging slots) into ``cache_bytes``."""
    if pool_images < 1 or refresh_every < 1 or prefetch_refreshes < 1:
        raise UsageError(None, "pool_images, refresh_every and prefetch must be at least 1")
    max_slots = None if cache_bytes is None else int(cache_bytes // bytes_per_image)
    if max_slots is not None and max_slots >= num_images:
        pool_images = max(pool_images, num_images)  # everything fits the budget: keep it all
    if pool_images >= num_images and (max_slots is None or max_slots >= num_images):
        return PoolPlan(num_images, 0, refresh_every, prefetch_refreshes, bytes_per_image)
    k = min(pool_images, num_images - 1)
    m = refresh_images if refresh_images is not None else max(1, k // 8)
    m = max(1, min(m, k))
    if max_slots is not None:
        if max_slots < 2:
            raise UsageError(
                None,
                f"cache budget of {cache_bytes} bytes holds fewer than 2 decoded images "
                f"({bytes_per_image} bytes each); raise --cache-bytes",
            )
        if k + m * prefetch_refreshes > max_slots:
            m = max(1, min(m, max_slots // (4 * prefetch_refreshes)))
            k = max(1, min(k, max_slots - m * prefetch_refreshes))
            if k + m * prefetch_refreshes > max_slots:
                prefetch_refreshes = 1
                k = max_slots - m
    return PoolPlan(k, m, refresh_every, prefetch_refreshes, bytes_per_image)


class ImageStream:
    """Position j -> dataset index: epoch j // n is a seeded permutation of the split."""

    def __init__(self, indices: np.ndarray, seed: int) -> None:
        self.indices = np.asarray(indices, dtype=np.int64)
        self.seed = seed
        self._epochs: dict[int, np.ndarray] = {}

    def _epoch(self, epoch: int) -> np.ndarray:
        if epoch not in self._epochs:
            if len(self._epochs) > 4:
                self._epochs.pop(min(self._epochs))
            rng = np.random.default_rng([self.seed, 1, epoch])
            self._epochs[epoch] = self.indices[rng.permutation(len(self.indices))]
        return self._epochs[epoch]

    def __getitem__(self, positions: range) -> np.ndarray:
        n = len(self.indices)
        return np.array([self._epoch(j // n)[j % n] for j in positions], dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# The loader.


class RayLoader:
    """Batches of rays from one split, drawn from a bounded pool of decoded images.

    Args:
        dataset: from :func:`trainer_adapter.data.parser.parse_dataset`.
        split: "train", "val" or "test".
        rays_per_batch: B.
        pool_images: K, images held decoded and sampled from at once.
        refresh_every: R, steps between pool refreshes.
        refresh_images: M, images swapped per refresh (default K // 8, at least 1).
        cache_bytes: bound on the decoded pool (slots x image bytes); shrinks K and M to fit.
        workers: decoding threads (OpenCV and OpenEXR release the GIL).
        mode: "lazy" (the pool) or "full" (every image of the split decoded up front).
        seed: the batches are a function of the seed only.
        disk_cache: folder of decoded ``.npy`` copies, reused across refreshes and runs.
        device: where the batch tensors (and the ray maths) go.
    """

    def __init__(
        self,
        dataset: ParsedDataset,
        split: str = "train",
        *,
        rays_per_batch: int = 4096,
        pool_images: int = 32,
        refresh_every: int = 64,
        refresh_images: int | None = None,
        cache_bytes: int | None = None,
        workers: int = 2,
        mode: Literal["lazy", "full"] = "lazy",
        seed: int = 0,
        disk_cache: str | Path | None = None,
        device: torch.device | str = "cpu",
        prefetch_refreshes: int = 1,
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
        self.device = torch.device(device)
        self.disk_cache = None if disk_cache is None else DiskCache(disk_cache)
        self.dtype = pixel_dtype(dataset)
        self._max_hw = (
            max(dataset.cameras[i].height_px for i in self.indices),
            max(dataset.cameras[i].width_px for i in self.indices),
        )
        self._has_masks = dataset.has_masks
        bytes_per_image = self._max_hw[0] * self._max_hw[1] * (3 * self.dtype.itemsize)
        if self._has_masks:
            bytes_per_image += self._max_hw[0] * self._max_hw[1]
        self.plan = plan_pool(
            len(self.indices),
            bytes_per_image,
            pool_images=pool_images,
            refresh_every=refresh_every,
            refresh_images=refresh_images,
            cache_bytes=cache_bytes,
            prefetch_refreshes=prefetch_refreshes,
        )
        self._stream = ImageStream(self.indices, self.seed)
        self._region = _SamplingRegions(dataset)
        self._ray_dtype = RAY_DTYPE  # float32: float64 is slow on GPUs and not needed
        self._packed: CameraTensors = pack_cameras(
            dataset.cameras, device=self.device, dtype=self._ray_dtype
        )
        self._world_from_cam = torch.as_tensor(  # [N, 3, 4]: gathering per ray moves less
            dataset.world_from_cam[:, :3], dtype=self._ray_dtype, device=self.device
        )
        self._executor = ThreadPoolExecutor(max(1, workers), thread_name_prefix="ray-decode")
        self._futures: dict[int, Future[None]] = {}
        self._closed = False
        self._step = 0
        self._refresh = -1
        slots = len(self.indices) if mode == "full" else self.plan.slots
        height, width = self._max_hw
        self._pixels = np.zeros((slots, height, width, 3), dtype=self.dtype)
        self._masks = np.ones((slots, height, width), dtype=bool) if self._has_masks else None
        self._row_of = {int(index): row for row, index in enumerate(self.indices)}
        if mode == "full":
            try:
                self._load_all()
            except BaseException:
                self.close()
                raise

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

    def state_dict(self) -> dict[str, int]:
        return {"step": self._step, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume at a step: the next batch is the one an uninterrupted run would give."""
        self._drain()
        self._step = int(state["step"])
        self._refresh = -1

    def next_batch(self) -> RayBatch:
        if self._closed:
            raise RuntimeError("RayLoader is closed")
        step = self._step
        refresh = step // self.plan.refresh_every if self.plan.refresh_images else 0
        if refresh != self._refresh:
            self._enter_refresh(refresh)
        batch = self._sample(step)
        self._step += 1
        return batch

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

    def _window(self, refresh: int) -> range:
        start = refresh * self.plan.refresh_images
        return range(start, start + self.plan.pool_images)

    def _slot_of_position(self, position: int) -> int:
        return position % self.plan.slots

    def _enter_refresh(self, refresh: int) -> None:
        """Make the window of ``refresh`` resident (lazy) and queue the next images' decodes."""
        window = self._window(refresh)
        images = self._stream[window]
        if self.mode == "full":
            self._pool_slots = np.array([self._row_of[int(i)] for i in images], dtype=np.int64)
        else:
            ahead = range(
                window.start, window.stop + self.plan.refresh_images * self.plan.prefetch_refreshes
            )
            for position in list(self._futures):  # positions now behind the window
                if position < window.start:
                    self._futures.pop(position)
            for position in ahead:
                if position not in self._futures:
                    self._submit(position)
            for position in window:
                self._futures[position].result()  # re-raises decode errors here
            self._pool_slots = np.array([self._slot_of_position(p) for p in window], dtype=np.int64)
        self._window_images = images
        self._refresh = refresh

    def _drain(self) -> None:
        """Wait for every queued decode (a slot must never have two writers) and forget them."""
        for future in self._futures.values():
            future.cancel()
        wait(list(self._futures.values()))
        self._futures.clear()

    def _submit(self, position: int) -> None:
        index = int(self._stream[range(position, position + 1)][0])
        slot = self._slot_of_position(position)
        masks = None if self._masks is None else self._masks[slot]
        if masks is not None:
            masks[...] = True
        self._futures[position] = self._executor.submit(
            decode_into, self.dataset, index, self._pixels[slot], masks, self.disk_cache
        )

    def _load_all(self) -> None:
        futures = [
            self._executor.submit(
                decode_into,
                self.dataset,
                int(index),
                self._pixels[row],
                None if self._masks is None else self._masks[row],
                self.disk_cache,
            )
            for row, index in enumerate(self.indices)
        ]
        for future in futures:
            future.result()

    # -- sampling -------------------------------------------------------------------------------

    def _sample(self, step: int) -> RayBatch:
        rng = np.random.default_rng([self.seed, 2, step])
        count = self.rays_per_batch
        position = rng.integers(0, len(self._window_images), count)
        image = self._window_images[position]
        slot = self._pool_slots[position]
        rows, cols = self._region.sample(rng, image, slot, self._masks)
        rgb = to_float_rgb(self._pixels[slot, rows, cols])
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
    ) -> tuple[np.ndarray, np.ndarray]:
        """Uniform valid (row, col) per ray; rejected draws are redrawn (deterministic in rng)."""
        rows = np.empty(len(image), dtype=np.int64)
        cols = np.empty(len(image), dtype=np.int64)
        todo = np.arange(len(image))
        for _ in range(_MAX_REJECTION_ROUNDS):
            which = image[todo]
            uniform = rng.random((2, len(todo)))
            r = self.row_lo[which] + (uniform[0] * self.row_span[which]).astype(np.int64)
            c = self.col_lo[which] + (uniform[1] * self.col_span[which]).astype(np.int64)
            ok = np.ones(len(todo), dtype=bool)
            if self.has_circle:
                du = c + 0.5 - self.cx[which]
                dv = r + 0.5 - self.cy[which]
                ok &= du * du + dv * dv <= self.radius2[which]
            if masks is not None:
                ok &= masks[slot[todo], r, c]
            rows[todo[ok]] = r[ok]
            cols[todo[ok]] = c[ok]
            todo = todo[~ok]
            if len(todo) == 0:
                return rows, cols
        raise InputFormatError(None, "could not sample valid pixels: masks are (nearly) empty")
