"""Decoding images into preallocated pool slots, and whole images for evaluation/rendering.

Pixels are kept as uint8 (8-bit images) or float16 (EXR linear radiance), never float32, until
a batch or an evaluation image is handed out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from eyeful_tools.cameras import Camera
from eyeful_tools.errors import InputFormatError, SplitError
from eyeful_tools.imageio import read_image, read_image_into
from trainer_adapter.data.cache import DiskCache
from trainer_adapter.data.parser import ParsedDataset
from trainer_adapter.data.rays import RAY_DTYPE, camera_rays, pack_cameras, valid_pixel_mask

#: largest finite float16; brighter EXR radiance is clipped to it in the pool
FLOAT16_MAX = 65504.0


def pixel_dtype(dataset: ParsedDataset) -> np.dtype:
    """What the pool stores: uint8 for 8-bit images, float16 for EXR. Never float32."""
    return np.dtype(np.float16) if dataset.is_hdr else np.dtype(np.uint8)


def decode_into(
    dataset: ParsedDataset,
    index: int,
    pixels_out: np.ndarray,
    mask_out: np.ndarray | None,
    disk_cache: DiskCache | None = None,
    lattice: tuple[int, int, int] = (1, 0, 0),
) -> None:
    """Decode image ``index`` (and its mask) into the top-left of preallocated slot arrays.

    pixels_out: [Hmax, Wmax, 3] uint8/float16; mask_out: [Hmax, Wmax] bool or None.
    ``lattice`` (stride, row offset, col offset): keep only rows ``dy::stride`` and columns
    ``dx::stride`` (a strided pool slot); the whole image is decoded into a buffer first.
    """
    camera = dataset.cameras[index]
    height, width = camera.height_px, camera.width_px
    stride, dy, dx = lattice
    if stride == 1:
        _decode_pixels(dataset, index, pixels_out[:height, :width], disk_cache)
    else:
        whole = np.empty((height, width, 3), dtype=pixels_out.dtype)
        _decode_pixels(dataset, index, whole, disk_cache)
        kept = whole[dy::stride, dx::stride]
        pixels_out[: kept.shape[0], : kept.shape[1]] = kept
        del whole, kept
    mask_path = dataset.mask_paths[index] if dataset.mask_paths else None
    if mask_out is not None and mask_path is not None:
        mask = _checked(read_image(mask_path), mask_path, height, width, channels=None)
        if mask.ndim == 3:
            mask = mask[..., 0]
        kept = mask[dy::stride, dx::stride] > 0
        mask_out[: kept.shape[0], : kept.shape[1]] = kept


def _decode_pixels(
    dataset: ParsedDataset, index: int, target: np.ndarray, disk_cache: DiskCache | None
) -> None:
    """Image ``index`` into ``target`` ([H, W, 3], the pool's dtype), through the disk cache."""
    path = dataset.image_paths[index]
    height, width = target.shape[:2]
    if disk_cache is not None and disk_cache.load_into(path, target):
        return
    # 8-bit files decode straight into the slot; EXR, 16-bit and odd shapes take a copy
    leftover = read_image_into(path, target)
    if leftover is not None:
        image = _checked(leftover, path, height, width)
        if dataset.is_hdr:
            np.clip(np.nan_to_num(image, nan=0.0, posinf=FLOAT16_MAX), 0.0, FLOAT16_MAX, out=image)
        target[...] = image
        del image
    if disk_cache is not None:
        disk_cache.store(path, target)


def _checked(
    image: np.ndarray, path: Path, height: int, width: int, channels: int | None = 3
) -> np.ndarray:
    """A decoded image of the declared size, as RGB (``channels=3``) in the pool's 8 bits."""
    if image.shape[:2] != (height, width):
        raise InputFormatError(
            path,
            f"image is {image.shape[1]}x{image.shape[0]}, transforms.json says {width}x{height}",
        )
    if channels == 3 and image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if channels == 3 and image.dtype == np.uint16:  # 16-bit PNG into the 8-bit pool
        image = (image >> 8).astype(np.uint8)
    return image


def to_float_rgb(values: np.ndarray) -> np.ndarray:
    """Pool pixels -> float32 (uint8 / 255, float16 as is). [..., 3]"""
    if values.dtype == np.uint8:
        return values.astype(np.float32) * np.float32(1.0 / 255.0)
    return values.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Whole images, for evaluation and rendering.


@dataclass
class EvalImage:
    """One image of a split: rays in row chunks (row-major order), ground truth, valid mask.

    The pixels stay as decoded (uint8, or float16 for EXR: 3 or 6 bytes a pixel); ``rows``
    converts a band at a time, so evaluating an 8K image never holds it in float32 twice.
    """

    index: int
    height: int
    width: int
    chunks: Iterator[tuple[torch.Tensor, torch.Tensor]]  # (origins [n, 3], directions [n, 3])
    pixels: torch.Tensor  # [H, W, 3] uint8 (LDR) or float16 (EXR linear radiance)
    valid: torch.Tensor  # [H, W] bool (fisheye circle and mask)

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` as float32 ``[n, W, 3]`` (LDR in [0, 1]; EXR linear radiance)."""
        band = self.pixels[start:stop]
        if band.dtype == torch.uint8:
            return band.float() * (1.0 / 255.0)
        return band.float()

    @property
    def rgb(self) -> torch.Tensor:
        """The whole image as float32 ``[H, W, 3]`` (a new tensor: 12 bytes a pixel)."""
        return self.rows(0, self.height)


def camera_ray_chunks(
    camera: Camera,
    world_from_cam: np.ndarray,
    *,
    chunk_rows: int,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Rays of every pixel of one camera at a pose (``[4, 4]``, OpenCV axes), ``chunk_rows`` rows
    at a time, row-major, float32 (computed in float32: see ``rays.RAY_DTYPE``)."""
    device = torch.device(device)
    dtype = RAY_DTYPE
    packed = pack_cameras([camera], device=device, dtype=dtype)
    pose = torch.as_tensor(world_from_cam, dtype=dtype, device=device)
    cols = torch.arange(camera.width_px, device=device, dtype=dtype) + 0.5
    for row0 in range(0, camera.height_px, max(1, chunk_rows)):
        row1 = min(camera.height_px, row0 + chunk_rows)
        rows = torch.arange(row0, row1, device=device, dtype=dtype) + 0.5
        v, u = torch.meshgrid(rows, cols, indexing="ij")
        uv = torch.stack([u.reshape(-1), v.reshape(-1)], dim=-1)
        count = uv.shape[0]
        selector = torch.zeros(count, dtype=torch.int64, device=device)
        origins, directions = camera_rays(packed[selector], pose.expand(count, 4, 4), uv)
        yield origins.float(), directions.float()


def image_ray_chunks(
    dataset: ParsedDataset,
    index: int,
    *,
    chunk_rows: int,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Rays of every pixel of image ``index``, ``chunk_rows`` rows at a time, float32."""
    return camera_ray_chunks(
        dataset.cameras[index],
        dataset.world_from_cam[index],
        chunk_rows=chunk_rows,
        device=device,
    )


def decode_eval_image(dataset: ParsedDataset, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels [H, W, 3] as the pool stores them (uint8 / float16) and valid mask [H, W] bool."""
    camera = dataset.cameras[index]
    height, width = camera.height_px, camera.width_px
    pixels = np.zeros((height, width, 3), dtype=pixel_dtype(dataset))
    mask = np.ones((height, width), dtype=bool) if dataset.has_masks else None
    decode_into(dataset, index, pixels, mask)
    valid = valid_pixel_mask(camera)
    if mask is not None:
        valid &= mask
    return pixels, valid


def load_eval_image(dataset: ParsedDataset, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth [H, W, 3] float32 and valid mask [H, W] bool of one image."""
    pixels, valid = decode_eval_image(dataset, index)
    return to_float_rgb(pixels), valid


def _eval_image(
    dataset: ParsedDataset, index: int, chunk_rows: int, device: torch.device | str
) -> EvalImage:
    pixels, valid = decode_eval_image(dataset, index)
    camera = dataset.cameras[index]
    return EvalImage(
        index=index,
        height=camera.height_px,
        width=camera.width_px,
        chunks=image_ray_chunks(dataset, index, chunk_rows=chunk_rows, device=device),
        pixels=torch.from_numpy(pixels).to(device),
        valid=torch.from_numpy(valid).to(device),
    )


def iter_eval_images(
    dataset: ParsedDataset,
    split: str = "test",
    *,
    chunk_rows: int = 8,
    device: torch.device | str = "cpu",
) -> Iterator[EvalImage]:
    """Every image of a split in index order, decoded one at a time (memory: one image, as
    decoded, while the consumer drops the previous one before asking for the next)."""
    indices = dataset.indices(split)
    if len(indices) == 0:
        raise SplitError(dataset.transforms_path, f"split {split} has no images to evaluate")
    for index in indices:
        yield _eval_image(dataset, int(index), chunk_rows, device)


def estimate_radiance_scale(
    dataset: ParsedDataset,
    split: str = "train",
    *,
    percentile: float = 99.9,
    max_images: int = 8,
    stride: int = 4,
) -> float:
    """A per-dataset radiance normaliser for HDR tonemapping: a high percentile of the valid
    pixel values of up to ``max_images`` evenly spaced images (every ``stride``-th pixel).

    Deterministic; 1.0 for 8-bit data or when everything is black.
    """
    if not dataset.is_hdr:
        return 1.0
    indices = dataset.indices(split)
    if len(indices) == 0:
        return 1.0
    picks = indices[np.linspace(0, len(indices) - 1, min(max_images, len(indices))).astype(int)]
    samples = []
    for index in np.unique(picks):
        rgb, valid = load_eval_image(dataset, int(index))
        samples.append(rgb[::stride, ::stride][valid[::stride, ::stride]].reshape(-1))
    values = np.concatenate(samples) if samples else np.zeros(0, dtype=np.float32)
    scale = float(np.percentile(values, percentile)) if values.size else 0.0
    return scale if scale > 0 else 1.0
