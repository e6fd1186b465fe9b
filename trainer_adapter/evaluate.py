"""``eyeful eval``: render a split of a trained run and compute ``ns-eval``'s metrics.

Per image: PSNR (data range 1) over the valid pixels, SSIM as torchmetrics computes it
(Gaussian 11x11, sigma 1.5, k1 0.01, k2 0.03, data range = the larger value range of the two
images, valid-window average), timing of render + metrics (``num_rays_per_sec = H W / seconds``,
``fps = 1 / seconds``). Aggregated as ``torch.std_mean`` (unbiased ``_std``). HDR datasets are
compared in the tonemapped space the model trains in. LPIPS needs AlexNet weights that cannot be
fetched or verified offline here, so ``lpips`` is ``null`` with a note.

Outputs (default ``RUN_DIR/eval/<split>/``): ``metrics.json`` (``ns-eval`` layout),
``renders/<name>.png`` and ``side_by_side/<name>.png`` (ground truth | render).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eyeful_tools.fsio import atomic_write_json
from eyeful_tools.imageio import write_image
from trainer_adapter import device as devices
from trainer_adapter.hdr import run_tonemapper
from trainer_adapter.model.nerfacto import NerfactoModel
from trainer_adapter.presets import TrainConfig
from trainer_adapter.trainer import (
    CHECKPOINT_DIR,
    dataparser_options,
    latest_checkpoint,
    load_checkpoint,
    load_model_state,
    read_run_config,
)

LPIPS_NOTE = (
    "lpips is null: LPIPS-alex needs AlexNet backbone weights that cannot be downloaded or "
    "verified offline in this build"
)
METRIC_KEYS = ("psnr", "ssim", "lpips", "num_rays_per_sec", "fps")


@dataclass
class LoadedRun:
    run_dir: Path
    meta: dict[str, Any]
    config: TrainConfig
    model: NerfactoModel
    dataset: Any  # trainer_adapter.data.parser.ParsedDataset
    checkpoint: Path
    step: int
    device: torch.device


def load_run(run_dir: str | Path, device: str = "auto") -> LoadedRun:
    """Rebuild the model of a run from ``config.json`` and its latest checkpoint (eval mode)."""
    from trainer_adapter.data.parser import parse_dataset

    run_dir = Path(run_dir)
    meta = read_run_config(run_dir)
    if run_dir.name == CHECKPOINT_DIR:
        run_dir = run_dir.parent
    config = TrainConfig.from_dict(meta["config"])
    checkpoint = latest_checkpoint(run_dir)
    state = load_checkpoint(checkpoint)
    torch_device = devices.resolve_device(device)
    orientation, center, eval_mode, eval_interval = dataparser_options(meta)
    dataset = parse_dataset(  # the normalised world and split the run was trained with
        meta["data"],
        downscale=int(meta.get("downscale", 1)),
        orientation=orientation,
        center=center,
        eval_mode=eval_mode,
        eval_interval=eval_interval,
    )
    model = NerfactoModel(config, int(meta["num_train_images"]))
    load_model_state(model, state, checkpoint)
    model.to(torch_device).eval()
    return LoadedRun(
        run_dir, meta, config, model, dataset, checkpoint, int(state["step"]), torch_device
    )


def psnr(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None) -> float:
    """``-10 log10(MSE)`` with data range 1; ``[H, W, 3]`` images, optional ``[H, W]`` mask."""
    err = (pred.float() - gt.float()) ** 2
    mse = err[valid].mean() if valid is not None else err.mean()
    return float(-10.0 * torch.log10(mse.clamp_min(1e-10)))


def _gaussian_kernel(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    dist = torch.arange((1 - size) / 2, (1 + size) / 2, 1.0, dtype=torch.float64)
    gauss = torch.exp(-((dist / sigma) ** 2) / 2)
    gauss = gauss / gauss.sum()
    return torch.outer(gauss, gauss)


def ssim(
    pred: torch.Tensor,
    gt: torch.Tensor,
    *,
    kernel_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    data_range: float | None = None,
) -> float:
    """SSIM of ``[H, W, C]`` images, as ``torchmetrics.functional.structural_similarity_index_measure``
    with its defaults (reflect padding + crop is the same as averaging over valid windows)."""
    # float64 like torchmetrics; MPS has no float64, so there the images go to the CPU
    work = torch.device("cpu") if pred.device.type == "mps" else pred.device
    x = pred.to(work, torch.float64).permute(2, 0, 1)[None]  # [1, C, H, W]
    y = gt.to(work, torch.float64).permute(2, 0, 1)[None]
    if data_range is None:
        data_range = float(torch.maximum(x.max() - x.min(), y.max() - y.min()))
    channels = x.shape[1]
    kernel = _gaussian_kernel(kernel_size, sigma).to(x)[None, None].expand(channels, 1, -1, -1)
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=0)  # [5, C, H, W]
    filtered = torch.nn.functional.conv2d(stack, kernel, groups=channels)
    mu_x, mu_y, e_xx, e_yy, e_xy = filtered
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    var_x = (e_xx - mu_x**2).clamp_min(0)
    var_y = (e_yy - mu_y**2).clamp_min(0)
    cov = e_xy - mu_x * mu_y
    value = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return float(value.mean())


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
    """Render row chunks of rays into an ``[H, W, 3]`` image."""
    pieces = []
    for origins, directions in chunks:
        out = run.model.render_rays_chunked(
            origins.to(run.device, torch.float32),
            directions.to(run.device, torch.float32),
            run.config.eval_num_rays_per_chunk,
        )
        pieces.append(out["rgb"])
    return torch.cat(pieces, dim=0).reshape(height, width, 3)


def evaluate(
    run_dir: str | Path,
    *,
    split: str = "test",
    output: str | Path | None = None,
    images_dir: str | Path | None = None,
    device: str = "auto",
    max_images: int | None = None,
) -> EvalResult:
    """Render every image of ``split`` and write the metrics JSON, renders and side-by-sides."""
    from trainer_adapter.data.loader import iter_eval_images

    run = load_run(run_dir, device)
    out_dir = Path(images_dir) if images_dir else run.run_dir / "eval" / split
    metrics_path = Path(output) if output else out_dir / "metrics.json"
    tonemap = run_tonemapper(run.meta.get("hdr"))
    widest = max(camera.width_px for camera in run.dataset.cameras)
    chunk_rows = max(1, run.config.eval_num_rays_per_chunk // widest)  # rays per chunk, not rows
    per_image: list[dict[str, Any]] = []
    for count, item in enumerate(
        iter_eval_images(run.dataset, split, chunk_rows=chunk_rows, device=run.device)
    ):
        if max_images is not None and count >= max_images:
            break
        tic = time.perf_counter()
        pred = render_image(run, item.chunks, item.height, item.width)
        gt = tonemap(item.rgb.float()).clamp(0, 1)
        valid = item.valid.bool()
        # outside the valid region (fisheye circle, masks) both images are black
        pred = pred * valid[..., None]
        gt = gt * valid[..., None]
        metrics: dict[str, Any] = {"psnr": psnr(pred, gt, valid), "ssim": ssim(pred, gt)}
        devices.synchronize(run.device)
        elapsed = time.perf_counter() - tic
        num_rays = item.height * item.width
        metrics.update(
            lpips=None,
            num_rays_per_sec=num_rays / elapsed,
            fps=1.0 / elapsed,
            image_index=item.index,
        )
        name = Path(run.dataset.image_paths[item.index]).stem
        metrics["image"] = name
        pred8, gt8 = to_uint8(pred), to_uint8(gt)
        write_image(out_dir / "renders" / f"{name}.png", pred8)
        write_image(out_dir / "side_by_side" / f"{name}.png", np.concatenate([gt8, pred8], axis=1))
        per_image.append(metrics)
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
