"""One held-out view rendered during training, for the curves (``steps_per_eval_image``).

nerfstudio logs a full-size eval image; on an 8K capture that is 50 M rays, minutes of a run.
Here the view is rendered at an integer fraction ``1/s`` of its size (the longest side at most
``max_px``) and compared with the ground truth averaged over ``s x s`` blocks (what a camera
with ``s``-times larger pixels sees), so it costs about a training step's worth of rays a
thousand pixels. The image is decoded as stored (uint8 / float16) and pooled a band of rows at
a time, so an 8K image adds ~0.2 GB, not the 0.6 GB of a float32 copy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from eyeful_tools.cameras import rescale_camera
from trainer_adapter.data.images import camera_ray_chunks, decode_eval_image
from trainer_adapter.data.parser import ParsedDataset
from trainer_adapter.evaluate import psnr, to_uint8
from trainer_adapter.model.nerfacto import NerfactoModel

#: output rows pooled at once (keeps the float32 band of an 8K image near 70 MB)
_POOL_ROWS = 64


@dataclass
class EvalView:
    index: int  # the dataset image
    split: str  # the split it was taken from: test, else val, else train
    picture: np.ndarray  # [h, 2w, 3] uint8: ground truth | render
    psnr: float  # over the valid pixels, at the rendered size


def held_out_image(dataset: ParsedDataset) -> tuple[int, str]:
    """The first test image, else the first val image, else the first train image."""
    for split in ("test", "val", "train"):
        indices = dataset.indices(split)
        if len(indices):
            return int(indices[0]), split
    raise ValueError("the dataset has no images")


def _pooled(image: torch.Tensor, factor: int, rows: int, cols: int) -> torch.Tensor:
    """``[H, W, C]`` (any dtype) -> ``[rows, cols, C]`` float32 means of ``factor``-blocks."""
    out = torch.empty((rows, cols, image.shape[-1]), dtype=torch.float32)
    for start in range(0, rows, _POOL_ROWS):
        stop = min(rows, start + _POOL_ROWS)
        band = image[start * factor : stop * factor, : cols * factor].float()
        out[start:stop] = band.view(stop - start, factor, cols, factor, -1).mean(dim=(1, 3))
    return out


def render_view(
    model: NerfactoModel,
    dataset: ParsedDataset,
    *,
    tonemap: Callable[[torch.Tensor], torch.Tensor],
    max_px: int,
    chunk: int,
    device: torch.device,
) -> EvalView:
    """Render :func:`held_out_image` at ``1/s`` size (``s`` the smallest integer bringing its
    longest side to ``max_px`` or less) with the model in eval mode, and score it (PSNR over the
    pixels that are valid in most of their block). The model's mode is restored."""
    index, split = held_out_image(dataset)
    camera = dataset.cameras[index]
    factor = max(1, math.ceil(max(camera.width_px, camera.height_px) / max(1, max_px)))
    cols, rows = camera.width_px // factor, camera.height_px // factor
    cropped = replace(camera, width_px=cols * factor, height_px=rows * factor)  # same centre
    small = rescale_camera(cropped, cols, rows)  # exactly 1/factor
    pixels, valid = decode_eval_image(dataset, index)
    scale = 1.0 / 255.0 if pixels.dtype == np.uint8 else 1.0
    gt = tonemap(_pooled(torch.from_numpy(pixels), factor, rows, cols) * scale).clamp(0, 1)
    mask = _pooled(torch.from_numpy(valid)[..., None], factor, rows, cols)[..., 0] > 0.5
    chunks = camera_ray_chunks(
        small,
        dataset.world_from_cam[index],
        chunk_rows=max(1, chunk // cols),
        device=device,
    )
    was_training = model.training
    model.eval()
    try:
        parts = [model.render_rays_chunked(o, d, chunk)["rgb"].float() for o, d in chunks]
    finally:
        model.train(was_training)
    pred = torch.cat(parts).view(rows, cols, 3).cpu() * mask[..., None]
    gt = gt * mask[..., None]
    picture = np.concatenate([to_uint8(gt), to_uint8(pred)], axis=1)
    return EvalView(index, split, picture, psnr(pred, gt, mask))
