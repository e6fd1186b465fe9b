"""``eyeful eval``: render a split of a trained run and compute ``ns-eval``'s metrics.

Per image: PSNR (data range 1) and SSIM over the valid pixels (fisheye circle, masks); SSIM as
torchmetrics computes it (Gaussian 11x11, sigma 1.5, k1 0.01, k2 0.03, data range = the larger
value range of the two images, reflect padding), with window statistics restricted to valid
pixels where a mask applies, timing of render + metrics (``num_rays_per_sec = H W / seconds``,
``fps = 1 / seconds``). Aggregated as ``torch.std_mean`` (unbiased ``_std``). HDR datasets are
compared in the tonemapped space the model trains in. LPIPS needs AlexNet weights that cannot be
fetched or verified offline here, so ``lpips`` is ``null`` with a note.

Outputs (default ``RUN_DIR/eval/<split>/``): ``metrics.json`` (``ns-eval`` layout),
``renders/<name>.png`` and ``side_by_side/<name>.png`` (ground truth | render).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eyeful_tools.fsio import atomic_write_json
from eyeful_tools.imageio import write_image
from trainer_adapter import device as devices
from trainer_adapter.checkpoints import (
    CHECKPOINT_DIR,
    implementation_for,
    latest_checkpoint,
    load_checkpoint,
    load_model_state,
)
from trainer_adapter.hdr import run_tonemapper
from trainer_adapter.model.encodings import use_eager_kernels
from trainer_adapter.model.inference import chunk_rays
from trainer_adapter.model.nerfacto import NerfactoModel
from trainer_adapter.options import ModelOptions, TrainOptions
from trainer_adapter.runs import read_run_config, run_facts, run_options

log = logging.getLogger(__name__)

LPIPS_NOTE = (
    "lpips is null: LPIPS-alex needs AlexNet backbone weights that cannot be downloaded or "
    "verified offline in this build"
)
METRIC_KEYS = ("psnr", "ssim", "lpips", "num_rays_per_sec", "fps")
#: pixels per band of the metrics and the outputs (the float64 SSIM band: ~0.6 KB a pixel;
#: bands below glibc's 32 MB mmap threshold come from the heap, which keeps what it grew to)
TILE_PIXELS = 1 << 16


@dataclass
class LoadedRun:
    run_dir: Path
    meta: dict[str, Any]  # the run's facts (is_hdr, hdr, num_train_images, hash_grid, ...)
    options: TrainOptions
    model: NerfactoModel
    dataset: Any  # trainer_adapter.data.parser.ParsedDataset
    checkpoint: Path
    step: int
    device: torch.device
    chunk_rays: int  # rays per render chunk (a memory budget; see model.inference)

    @property
    def config(self) -> ModelOptions:
        return self.options.model


def load_run(
    run_dir: str | Path, device: str = "auto", *, chunk_bytes: int | None = None
) -> LoadedRun:
    """Rebuild the model of a run from ``config.json`` and its latest checkpoint (eval mode),
    with the hash grid the checkpoint holds and the rays per render chunk that fit
    ``chunk_bytes`` (see :func:`chunk_rays`)."""
    from trainer_adapter.data.parser import parse_dataset

    run_dir = Path(run_dir)
    meta = read_run_config(run_dir)
    if run_dir.name == CHECKPOINT_DIR:
        run_dir = run_dir.parent
    options, facts = run_options(meta), run_facts(meta)
    checkpoint = latest_checkpoint(run_dir)
    state = load_checkpoint(checkpoint, mmap=True)  # the optimizer state is never paged in
    options.model.implementation = implementation_for(state, checkpoint)
    torch_device = devices.resolve_device(device)
    # the normalised world and split the run was trained with
    dataset = parse_dataset(options.data.data, **options.data.parser_kwargs())
    model = NerfactoModel(options.model, int(facts["num_train_images"]))
    if why := devices.fused_kernel_problem(model, torch_device):
        log.warning("%s: hash encodings run eagerly (the same maths): %s", run_dir, why)
        options.model.compile_encodings = False
        use_eager_kernels(model)
    load_model_state(model, state, checkpoint)
    step = int(state["step"])
    del state
    model.to(torch_device).eval()
    return LoadedRun(
        run_dir,
        facts,
        options,
        model,
        dataset,
        checkpoint,
        step,
        torch_device,
        chunk_rays(options, chunk_bytes),
    )


def psnr(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None) -> float:
    """``-10 log10(MSE)`` with data range 1; ``[H, W, 3]`` images, optional ``[H, W]`` mask.

    Summed a band of rows at a time in float64, so no full-image temporaries."""
    total, count = 0.0, 0
    step = _band_rows(pred.shape[1])
    for start in range(0, pred.shape[0], step):
        err = (pred[start : start + step].float() - gt[start : start + step].float()) ** 2
        if valid is not None:
            err = err[valid[start : start + step]]
        # float64 sums except on MPS, which has no float64 (bands keep float32 sums accurate)
        total += float(err.sum(dtype=None if err.device.type == "mps" else torch.float64))
        count += err.numel()
    mse = torch.tensor(total / count if count else float("nan"), dtype=torch.float64)
    return float(-10.0 * torch.log10(mse.clamp_min(1e-10)))


def _gaussian_taps(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The 1-D factor of torchmetrics' Gaussian window (the 2-D window is its outer product)."""
    dist = torch.arange((1 - size) / 2, (1 + size) / 2, 1.0, dtype=torch.float64)
    gauss = torch.exp(-((dist / sigma) ** 2) / 2)
    return gauss / gauss.sum()


def _blur_valid(planes: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """'valid' Gaussian filter of ``[..., h, W]`` -> ``[..., h - k + 1, W - k + 1]``, separable,
    as shifted in-place sums: the same window as ``conv2d`` with the outer-product kernel (to
    rounding), without its im2col buffer (~1.5-5 KB a pixel in float64 on CPU, measured)."""
    k = taps.numel()
    height, width = planes.shape[-2:]
    if height < k or width < k:
        raise ValueError(f"SSIM needs images of at least {k}x{k} pixels, got {width}x{height}")
    weights = taps.tolist()
    rows = torch.zeros(
        (*planes.shape[:-1], width - k + 1), dtype=planes.dtype, device=planes.device
    )
    for i, weight in enumerate(weights):
        rows.add_(planes[..., i : i + width - k + 1], alpha=weight)
    out = torch.zeros(
        (*planes.shape[:-2], height - k + 1, width - k + 1),
        dtype=planes.dtype,
        device=planes.device,
    )
    for i, weight in enumerate(weights):
        out.add_(rows[..., i : i + height - k + 1, :], alpha=weight)
    return out


def ssim(
    pred: torch.Tensor,
    gt: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    kernel_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    data_range: float | None = None,
) -> float:
    """SSIM of ``[H, W, C]`` images over the valid pixels of an optional ``[H, W]`` mask.

    Without a mask: ``torchmetrics.functional.structural_similarity_index_measure`` with its
    defaults (torchmetrics >= 1.3 reflect-pads the images and averages the SSIM map over every
    pixel). With a mask (fisheye circle, masked pixels), each window's means, variances and
    covariance are Gaussian-weighted over its valid pixels only (weights renormalised; the mask
    is reflect-padded with the images), and the map is averaged over the valid pixels, so the
    blank area outside counts neither as perfect agreement nor in any statistic.

    float64 like torchmetrics, but in bands of output rows (each with its ``kernel_size - 1``
    rows of reflected context), so the memory is ~``TILE_PIXELS`` pixels' worth whatever the
    image size: over a whole 8K image the float64 statistics alone were ~12 GB."""
    if valid is not None and bool(valid.all()):
        valid = None  # every pixel valid: the plain (cheaper) path, the same value
    if data_range is None:
        data_range = _value_range(pred, gt, valid)
    height, width = pred.shape[:2]
    pad = kernel_size // 2
    if min(height, width) <= pad:  # as torchmetrics' reflect padding
        raise ValueError(f"SSIM needs images of at least {pad + 1}x{pad + 1} pixels")
    columns = _reflected(-pad, width + pad, width, pred.device)
    step = max(2 * (kernel_size - 1), _band_rows(width))  # context rows are at most 1/3
    taps = _gaussian_taps(kernel_size, sigma)
    total, count = 0.0, 0
    for start in range(0, height, step):
        stop = min(height, start + step)
        rows = _reflected(start - pad, stop + pad, height, pred.device)

        def band(image: torch.Tensor, rows: torch.Tensor = rows) -> torch.Tensor:
            return image.index_select(0, rows).index_select(1, columns)

        mask = None if valid is None else band(valid)
        value = _ssim_map(band(pred), band(gt), mask, taps, data_range, k1, k2)  # [C, n, W]
        if valid is not None:
            value = value[:, valid[start:stop].to(value.device).bool()]
        total += float(value.sum())
        count += value.numel()
    return total / count if count else math.nan


def _reflected(start: int, stop: int, size: int, device: torch.device) -> torch.Tensor:
    """Indices ``start .. stop - 1`` reflected into ``0 .. size - 1`` (``F.pad``'s "reflect":
    -1 -> 1, size -> size - 2)."""
    index = torch.arange(start, stop, device=device).abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index)


def _value_range(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None) -> float:
    """torchmetrics' data range: the larger value range of the two images (over the valid
    pixels), found a band at a time without full-image copies."""
    lows, highs = [math.inf, math.inf], [-math.inf, -math.inf]
    step = _band_rows(pred.shape[1])
    for start in range(0, pred.shape[0], step):
        for i, image in enumerate((pred, gt)):
            values = image[start : start + step]
            if valid is not None:
                values = values[valid[start : start + step].bool()]
            if values.numel():
                lows[i] = min(lows[i], float(values.min()))
                highs[i] = max(highs[i], float(values.max()))
    return max(highs[0] - lows[0], highs[1] - lows[1])


def _ssim_map(
    pred: torch.Tensor,  # [h, W, C]
    gt: torch.Tensor,  # [h, W, C]
    mask: torch.Tensor | None,  # [h, W] valid pixels, or None for all
    taps: torch.Tensor,  # [k] float64
    data_range: float,
    k1: float,
    k2: float,
) -> torch.Tensor:
    """The SSIM map ``[C, h - k + 1, W - k + 1]`` (float64) of a band of rows."""
    # MPS has no float64, so there the images go to the CPU
    work = torch.device("cpu") if pred.device.type == "mps" else pred.device
    x = pred.to(work, torch.float64).permute(2, 0, 1)  # [C, h, W]
    y = gt.to(work, torch.float64).permute(2, 0, 1)
    stack = torch.empty((5, *x.shape), dtype=torch.float64, device=work)  # [5, C, h, W]
    stack[0], stack[1] = x, y
    torch.mul(x, x, out=stack[2])
    torch.mul(y, y, out=stack[3])
    torch.mul(x, y, out=stack[4])
    del x, y
    taps = taps.to(work)
    if mask is not None:
        weights = mask.to(work, torch.float64)
        stack.mul_(weights)
        weights = _blur_valid(weights[None], taps)[0].clamp_min_(1e-12)  # valid share per window
    blurred = _blur_valid(stack, taps)
    del stack
    if mask is not None:
        blurred.div_(weights)
    mu_x, mu_y, e_xx, e_yy, e_xy = blurred
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    var_x = (e_xx - mu_x**2).clamp_min(0)
    var_y = (e_yy - mu_y**2).clamp_min(0)
    cov = e_xy - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )


def aggregate(per_image: list[dict[str, float | None]]) -> dict[str, float | None]:
    """Mean and unbiased std over images for every key (``ns-eval``'s ``get_std``)."""
    results: dict[str, float | None] = {}
    for key in METRIC_KEYS:
        values = [m[key] for m in per_image if m.get(key) is not None]
        if not values:
            results[key], results[f"{key}_std"] = None, None
            continue
        tensor = torch.tensor(values, dtype=torch.float64)
        std = float(tensor.std()) if len(values) > 1 else 0.0
        results[key], results[f"{key}_std"] = float(tensor.mean()), std
    return results


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """[H, W, 3] float in [0, 1] (clamped) -> uint8, rounded."""
    return (image.clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


@dataclass
class EvalResult:
    metrics_path: Path
    images_dir: Path
    results: dict[str, float | None]
    per_image: list[dict[str, Any]]


def render_image(run: LoadedRun, chunks: Any, height: int, width: int) -> torch.Tensor:
    """Render row bands of rays into an ``[H, W, 3]`` float32 image, allocated once (the bands
    are rendered ``run.chunk_rays`` rays at a time)."""
    image = torch.empty((height * width, 3), dtype=torch.float32, device=run.device)
    filled = 0
    for origins, directions in chunks:
        rgb = run.model.render_rays_chunked(
            origins.to(run.device, torch.float32),
            directions.to(run.device, torch.float32),
            run.chunk_rays,
        )["rgb"]
        image[filled : filled + rgb.shape[0]] = rgb
        filled += rgb.shape[0]
    if filled != height * width:
        raise ValueError(f"rendered {filled} rays for a {width}x{height} image")
    return image.view(height, width, 3)


def ground_truth_rows(
    item: Any, tonemap: Callable[[torch.Tensor], torch.Tensor], start: int, stop: int
) -> torch.Tensor:
    """Rows of the compared ground truth ``[n, W, 3]`` float32: tonemapped (HDR), clamped to
    [0, 1] and black outside the valid region."""
    band = tonemap(item.rows(start, stop)).clamp(0, 1)
    return band * item.valid[start:stop, :, None]


def ground_truth(item: Any, tonemap: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The whole compared ground truth ``[H, W, 3]`` float32, built a band at a time."""
    gt = torch.empty((item.height, item.width, 3), dtype=torch.float32, device=item.pixels.device)
    step = _band_rows(item.width)
    for start in range(0, item.height, step):
        band = ground_truth_rows(item, tonemap, start, start + step)
        gt[start : start + band.shape[0]] = band
    return gt


def side_by_side(
    item: Any, tonemap: Callable[[torch.Tensor], torch.Tensor], pred: torch.Tensor
) -> np.ndarray:
    """``[H, 2W, 3]`` uint8, ground truth | render, converted a band at a time."""
    height, width = pred.shape[:2]
    out = np.empty((height, 2 * width, 3), dtype=np.uint8)
    step = _band_rows(width)
    for start in range(0, height, step):
        out[start : start + step, :width] = to_uint8(
            ground_truth_rows(item, tonemap, start, start + step)
        )
        out[start : start + step, width:] = to_uint8(pred[start : start + step])
    return out


def score_image(
    item: Any, pred: torch.Tensor, tonemap: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[dict[str, Any], np.ndarray]:
    """PSNR and SSIM of a render against its image (both black outside the valid region), and
    the ground truth | render picture. ``pred`` is masked in place.

    Memory: the float32 render and ground truth (24 bytes a pixel) plus bands for the metrics;
    the ground truth is dropped before the uint8 picture (6 bytes a pixel) is made."""
    valid = item.valid.bool()
    pred.mul_(valid[..., None])
    gt = ground_truth(item, tonemap)
    metrics = {"psnr": psnr(pred, gt, valid), "ssim": ssim(pred, gt, valid)}
    del gt
    return metrics, side_by_side(item, tonemap, pred)


def _band_rows(width: int) -> int:
    """Rows per band of ``TILE_PIXELS`` pixels (at least one)."""
    return max(1, TILE_PIXELS // max(1, width))


def evaluate(
    run_dir: str | Path,
    *,
    split: str = "test",
    output: str | Path | None = None,
    images_dir: str | Path | None = None,
    device: str = "auto",
    max_images: int | None = None,
    chunk_bytes: int | None = None,
) -> EvalResult:
    """Render every image of ``split`` and write the metrics JSON, renders and side-by-sides.

    One image is held at a time; the model renders ``chunk_rays`` rays at once (a
    ``chunk_bytes`` budget, default 1 GiB, and at most a training batch)."""
    from trainer_adapter.data.loader import iter_eval_images

    run = load_run(run_dir, device, chunk_bytes=chunk_bytes)
    out_dir = Path(images_dir) if images_dir else run.run_dir / "eval" / split
    metrics_path = Path(output) if output else out_dir / "metrics.json"
    tonemap = run_tonemapper(run.meta.get("hdr"))
    widest = max(camera.width_px for camera in run.dataset.cameras)
    chunk_rows = max(1, run.chunk_rays // widest)
    per_image: list[dict[str, Any]] = []
    images = iter_eval_images(run.dataset, split, chunk_rows=chunk_rows, device=run.device)
    for count, item in enumerate(images):
        if max_images is not None and count >= max_images:
            break
        tic = time.perf_counter()
        pred = render_image(run, item.chunks, item.height, item.width)
        scores, picture = score_image(item, pred, tonemap)
        metrics: dict[str, Any] = dict(scores)
        devices.synchronize(run.device)
        elapsed = time.perf_counter() - tic
        del pred  # the picture holds the render as uint8 now
        metrics.update(
            lpips=None,
            num_rays_per_sec=item.height * item.width / elapsed,
            fps=1.0 / elapsed,
            image_index=item.index,
        )
        name = Path(run.dataset.image_paths[item.index]).stem
        metrics["image"] = name
        write_image(out_dir / "renders" / f"{name}.png", picture[:, item.width :])
        write_image(out_dir / "side_by_side" / f"{name}.png", picture)
        per_image.append(metrics)
        del item, picture  # before the next image is decoded
    results = aggregate(per_image)
    document: dict[str, Any] = {
        "experiment_name": run.run_dir.parent.parent.name,
        "method_name": "nerfacto",
        "checkpoint": str(run.checkpoint),
        "results": results,
        "split": split,
        "num_images": len(per_image),
        "notes": {"lpips": LPIPS_NOTE},
        "per_image": per_image,
    }
    if any(v is not None and not math.isfinite(v) for v in results.values()):
        document["notes"]["nonfinite"] = "some metrics are not finite"
    atomic_write_json(metrics_path, document)
    return EvalResult(metrics_path, out_dir, results, per_image)
