"""The training loop: optimizers and schedules as nerfstudio, checkpoints, resume, DDP.

Run layout (as nerfstudio): ``<output_dir>/<capture>/<preset>/<timestamp>/`` with ``config.json``
(the resolved :class:`TrainConfig` plus run facts), ``dataparser_transforms.json`` and
``nerfstudio_models/step-%09d.ckpt`` (atomic, the latest ``keep_checkpoints`` kept), plus
``coverage.json``. A checkpoint is ``{step, pipeline, optimizers, schedulers, scalers, loader}``
of tensors and primitive containers only, so it loads with ``torch.load(weights_only=True)``.

Determinism: step ``k`` seeds the global RNG with ``(seed + rank, k)`` and the loader's state
(stream position, coverage counters) rides in the checkpoint; with a fixed ``swap_rate`` the
loader yields the same batch for the same seed and batch number, so ``N`` steps + save + resume
+ ``N`` steps equals ``2N`` straight steps on CPU (the default ``"auto"`` rate follows the decode
speed, see docs/loader.md). Every run writes ``coverage.json``: what the batches covered.

DDP: launched by ``torchrun`` (``WORLD_SIZE`` > 1); nccl on CUDA, gloo elsewhere; every rank
samples its own full batch (seed ``42 + rank``), gradients are averaged, only rank 0 writes.
"""

from __future__ import annotations

import functools
import logging
import math
import operator
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from eyeful_tools.errors import InputFormatError, MissingFileError, UsageError
from eyeful_tools.fsio import atomic_stream, atomic_write_json, clean_stale_temps, read_json
from trainer_adapter import device as devices
from trainer_adapter.data.coverage import Coverage
from trainer_adapter.hdr import run_tonemapper
from trainer_adapter.model.nerfacto import NerfactoModel
from trainer_adapter.presets import TrainConfig, make_config

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "nerfstudio_models"
_CKPT_RE = re.compile(r"step-(\d+)\.ckpt$")

#: ``report(step, max_steps, stats)`` is called after every step on rank 0; ``stats`` (loss,
#: psnr, rays_per_sec, step_seconds) are refreshed every ``steps_per_log`` steps
ProgressFn = Callable[[int, int, dict[str, float]], None]


class ExponentialDecay:
    """nerfstudio's ``ExponentialDecayScheduler`` multiplier (no warmup):
    ``lr(step) = exp((1 - t) ln lr_init + t ln lr_final)``, ``t = clip(step / max_steps, 0, 1)``.
    A callable object (not a closure) so ``LambdaLR.state_dict`` stores plain numbers."""

    def __init__(self, lr_init: float, lr_final: float, max_steps: int) -> None:
        self.lr_init = lr_init
        self.lr_final = lr_final
        self.max_steps = max_steps

    def __call__(self, step: int) -> float:
        t = min(max(step / self.max_steps, 0.0), 1.0)
        lr = math.exp((1 - t) * math.log(self.lr_init) + t * math.log(self.lr_final))
        return lr / self.lr_init


@dataclass
class Optimizers:
    """One optimizer (and optional scheduler) per parameter group, by group name."""

    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = field(default_factory=dict)

    def zero_grad(self) -> None:
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)

    def step(self, scaler: torch.amp.GradScaler) -> bool:
        """Step every group that received gradients (nerfstudio's ``optimizer_scaler_step_some``);
        then the schedulers, unless the scaler skipped the step (scale decreased)."""
        for optimizer in self.optimizers.values():
            if any(p.grad is not None for g in optimizer.param_groups for p in g["params"]):
                scaler.step(optimizer)
        scale = scaler.get_scale() if scaler.is_enabled() else 1.0
        scaler.update()
        skipped = scaler.is_enabled() and scaler.get_scale() < scale
        if not skipped:
            for scheduler in self.schedulers.values():
                scheduler.step()
        return not skipped


def make_optimizers(model: NerfactoModel, config: TrainConfig, device: torch.device) -> Optimizers:
    """proposal_networks / fields: Adam(1e-2, eps 1e-15) decaying to 1e-4 over 200k steps;
    camera_opt: Adam(1e-3) decaying to 1e-4 over 5k steps (nerfacto). ``*_tables`` groups (sparse
    hash-table gradients) use ``SparseAdam``, the lazy Adam, with the same lr and schedule."""
    result = Optimizers()
    fused = config.fused_adam and device.type in ("cpu", "cuda", "xpu", "mps")
    for name, params in model.param_groups().items():
        base = name.removesuffix("_tables")
        lr = config.camera_lr if base == "camera_opt" else config.lr
        if name.endswith("_tables"):
            optimizer: torch.optim.Optimizer = torch.optim.SparseAdam(params, lr=lr, eps=config.eps)
        elif config.optimizer == "radam" and base != "camera_opt":
            optimizer = torch.optim.RAdam(params, lr=lr, eps=config.eps)
        else:
            optimizer = torch.optim.Adam(params, lr=lr, eps=config.eps, fused=fused)
        result.optimizers[name] = optimizer
        if base == "camera_opt":
            decay = ExponentialDecay(lr, config.camera_lr_final, config.camera_lr_decay_steps)
        elif base == "proposal_networks" and not config.proposal_lr_decay:
            continue
        else:
            decay = ExponentialDecay(lr, config.lr_final, config.lr_decay_steps)
        result.schedulers[name] = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
    return result


# -- checkpoints ------------------------------------------------------------------------------


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def latest_checkpoint(load_dir: str | Path) -> Path:
    """The highest ``step-*.ckpt`` in ``load_dir`` (a run dir or its ``nerfstudio_models``)."""
    load_dir = Path(load_dir)
    if (load_dir / CHECKPOINT_DIR).is_dir():
        load_dir = load_dir / CHECKPOINT_DIR
    found = _checkpoints(load_dir)
    if not found:
        raise MissingFileError(load_dir, "no step-*.ckpt checkpoint found")
    return found[-1]


def _checkpoints(folder: Path) -> list[Path]:
    """The ``step-*.ckpt`` files of a folder, by increasing step."""
    found = (
        (int(m.group(1)), p) for p in folder.glob("step-*.ckpt") if (m := _CKPT_RE.search(p.name))
    )
    return [p for _, p in sorted(found)]


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: nn.Module,
    optimizers: Optimizers,
    scaler: torch.amp.GradScaler,
    keep: int,
    loader_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``step-%09d.ckpt`` atomically, then delete all but the latest ``keep``; the
    loader's state (stream position, coverage counters) rides along for resume."""
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:09d}.ckpt"
    state = {
        "step": step,
        "pipeline": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizers": {k: o.state_dict() for k, o in optimizers.optimizers.items()},
        "schedulers": {k: s.state_dict() for k, s in optimizers.schedulers.items()},
        "scalers": scaler.state_dict(),
    }
    if loader_state is not None:
        state["loader"] = loader_state
    with atomic_stream(path) as handle:  # a full disk is an OSError naming the file
        torch.save(state, handle)
    others = _checkpoints(folder)
    for old in others[: max(len(others) - max(keep, 1), 0)]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, *, mmap: bool = False) -> dict[str, Any]:
    """``torch.load(weights_only=True)``; a bad file becomes an :class:`InputFormatError`.

    ``mmap`` maps the file instead of reading it: eval loads only the weights, so the optimizer
    state (twice the weights) is never read into memory."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # any unpickling failure is a bad checkpoint
        raise InputFormatError(
            path, f"not a loadable checkpoint ({error.__class__.__name__})"
        ) from error
    if not isinstance(state, dict) or "pipeline" not in state or "step" not in state:
        raise InputFormatError(path, "checkpoint lacks 'step' or 'pipeline'")
    return state


def load_model_state(model: nn.Module, state: dict[str, Any], path: Path) -> None:
    pipeline = {k.removeprefix("module."): v for k, v in state["pipeline"].items()}
    try:
        model.load_state_dict(pipeline)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise InputFormatError(path, f"checkpoint does not match the model: {first}") from error


# -- run directory ----------------------------------------------------------------------------


def capture_name(transforms_path: Path) -> str:
    """``<dest>/riverview/images-jpeg-2k/transforms.json`` -> ``riverview``."""
    folder = transforms_path.parent
    if folder.name.startswith("images") and folder.parent.name:
        return folder.parent.name
    return folder.name or "capture"


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a run (``run_dir`` may also be its ``nerfstudio_models``)."""
    run_dir = Path(run_dir)
    if run_dir.name == CHECKPOINT_DIR:
        run_dir = run_dir.parent
    path = run_dir / "config.json"
    if not path.is_file():
        raise MissingFileError(path, "not a training run (config.json missing)")
    data = read_json(path, "config.json")
    if not isinstance(data, dict) or "config" not in data or "data" not in data:
        raise InputFormatError(path, "config.json lacks 'config' or 'data'")
    return data


def dataparser_options(meta: dict[str, Any]) -> tuple[str, str, str, int]:
    """(orientation, center, eval_mode, eval_interval) of a run's ``config.json``; runs written
    before these keys existed get the defaults they were trained with."""
    return (
        str(meta.get("orientation", "up")),
        str(meta.get("center", "poses")),
        str(meta.get("eval_mode", "fraction")),
        int(meta.get("eval_interval", 8)),
    )


# -- distributed ------------------------------------------------------------------------------


def _dist_env() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


@dataclass
class TrainResult:
    run_dir: Path
    last_step: int
    checkpoint: Path | None
    stats: dict[str, float]
    #: what the batches covered (also in ``coverage.json``); None only for runs with no step
    coverage: Coverage | None = None


def train(
    data: str | Path,
    *,
    preset: str = "nerfacto",
    max_steps: int | None = None,
    output_dir: str | Path = "outputs",
    load_dir: str | Path | None = None,
    device: str = "auto",
    cache_bytes: int | None = None,
    downscale: int | str = "auto",
    orientation: str = "up",
    center: str = "poses",
    eval_mode: str = "fraction",
    eval_interval: int = 8,
    overrides: dict[str, Any] | None = None,
    timestamp: str | None = None,
    report: ProgressFn | None = None,
    time_budget_s: float | None = None,
) -> TrainResult:
    """Train Nerfacto on a ``transforms.json`` dataset; returns the run directory.

    ``max_steps`` is the total number of steps (a resumed run continues at checkpoint step + 1
    up to it). With ``load_dir`` the config of that run is reused (its ``config.json``).
    ``time_budget_s`` stops early after that much wall-clock time (benchmarks; single process).
    ``downscale`` trains on ``images_N/`` (written by ``eyeful downscale``); ``"auto"`` picks
    the copies ``ns-train`` would (:func:`~trainer_adapter.data.parser.resolve_downscale`); the
    factor is stored and eval and render of the run use the same images. ``orientation``, ``center``, ``eval_mode`` and ``eval_interval``
    are nerfstudio's dataparser options (see :func:`trainer_adapter.data.parser.parse_dataset`);
    they are stored in ``config.json`` so eval, render and resume see the same normalised world
    and split.
    """
    from trainer_adapter.data.loader import RayLoader
    from trainer_adapter.data.parser import parse_dataset, resolve_downscale
    from trainer_adapter.data.verify import verify_dataset

    world, rank, local_rank = _dist_env()
    torch_device = devices.resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        devices.set_device(torch_device)
        dist.init_process_group(backend=devices.distributed_backend(torch_device))

    resume_state: dict[str, Any] | None = None
    resume_path: Path | None = None
    config_overrides = dict(overrides or {})
    if cache_bytes is not None:
        config_overrides["cache_bytes"] = int(cache_bytes)
    if load_dir is not None:
        resume_path = latest_checkpoint(load_dir)
        previous = read_run_config(resume_path.parent.parent)
        config = TrainConfig.from_dict({**previous["config"], **config_overrides})
        preset = previous.get("preset", preset)
        downscale = int(previous.get("downscale", 1))  # runs before the key: full size
        orientation, center, eval_mode, eval_interval = dataparser_options(previous)
        resume_state = load_checkpoint(resume_path)
    else:
        config = make_config(preset, **config_overrides)
    if max_steps is not None:
        if max_steps < 1:
            raise UsageError("--max-steps", f"must be at least 1, got {max_steps}")
        config.max_num_iterations = int(max_steps)
    if world > 1:
        config.sparse_grad = False  # sparse gradients do not all-reduce on nccl

    downscale = resolve_downscale(data, downscale)
    dataset = parse_dataset(
        data,
        downscale=downscale,
        orientation=orientation,
        center=center,
        eval_mode=eval_mode,
        eval_interval=eval_interval,
    )
    verify_dataset(dataset)  # a corrupt image is refused before the run folder is written
    train_indices = torch.as_tensor(dataset.indices("train"), dtype=torch.long)
    if train_indices.numel() == 0:
        raise UsageError(dataset.transforms_path, "the train split is empty")
    # dataset image index -> training image index (appearance embedding, camera optimizer)
    train_position = torch.full((len(dataset),), -1, dtype=torch.long)
    train_position[train_indices] = torch.arange(train_indices.numel())
    train_position = train_position.to(torch_device)

    torch.manual_seed(config.seed)
    model = NerfactoModel(config, int(train_indices.numel())).to(torch_device)
    optimizers = make_optimizers(model, config, torch_device)
    amp_dtype = devices.autocast_dtype(
        torch_device, config.mixed_precision, cpu_bf16=config.cpu_autocast_bf16
    )
    scaler = devices.grad_scaler(torch_device, amp_dtype)
    start_step = 0
    if resume_state is not None and resume_path is not None:
        load_model_state(model, resume_state, resume_path)
        for name, optimizer in optimizers.optimizers.items():
            if name in resume_state.get("optimizers", {}):
                optimizer.load_state_dict(resume_state["optimizers"][name])
        for name, scheduler in optimizers.schedulers.items():
            if name in resume_state.get("schedulers", {}):
                scheduler.load_state_dict(resume_state["schedulers"][name])
        if resume_state.get("scalers"):
            scaler.load_state_dict(resume_state["scalers"])
        start_step = int(resume_state["step"]) + 1
        log.info("resuming from %s at step %d", resume_path, start_step)

    hdr: dict[str, Any] | None = None
    if dataset.is_hdr:
        from trainer_adapter.data.images import estimate_radiance_scale
        from trainer_adapter.hdr import DEFAULT_TONEMAP

        hdr = {"tonemap": DEFAULT_TONEMAP, "scale": estimate_radiance_scale(dataset, "train")}
    stamp = timestamp or datetime.now().strftime("%Y-%m-%d_%H%M%S")
    run_dir = Path(output_dir) / capture_name(dataset.transforms_path) / preset / stamp
    if rank == 0:
        for earlier in run_dir.parent.glob("*/"):  # temp files of killed runs (docs/safety.md)
            clean_stale_temps(earlier)
            clean_stale_temps(checkpoint_dir(earlier))
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            run_dir / "config.json",
            {
                "method_name": "nerfacto",
                "preset": preset,
                "data": str(dataset.transforms_path.resolve()),
                "downscale": int(downscale),
                "orientation": orientation,
                "center": center,
                "eval_mode": eval_mode,
                "eval_interval": int(eval_interval),
                "is_hdr": bool(dataset.is_hdr),
                "hdr": hdr,
                "num_train_images": int(train_indices.numel()),
                "world_size": world,
                "config": config.to_dict(),
            },
        )
        dataset.save_dataparser_transforms(run_dir / "dataparser_transforms.json")

    ddp_model: nn.Module = model
    if world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[torch_device.index] if torch_device.type in ("cuda", "xpu") else None,
            find_unused_parameters=True,
        )

    loader = RayLoader(
        dataset,
        "train",
        rays_per_batch=config.train_num_rays_per_batch,
        pool_images=config.pool_images,
        swap_rate=config.swap_rate,
        cache_bytes=config.cache_bytes,
        workers=config.workers,
        mode=config.loader_mode,
        seed=config.seed + rank,
        device=torch_device,
    )
    _skip_batches(loader, start_step, (resume_state or {}).get("loader"))
    tonemap = run_tonemapper(hdr)

    model.train()
    stats: dict[str, float] = {}
    checkpoint: Path | None = None
    last_step = start_step - 1
    timed_rays, timed_seconds = 0, 0.0  # after the warm-up steps, for mean_rays_per_sec
    started = time.perf_counter()
    window_first, window_tic = start_step, started  # steps since the last read-back
    try:
        for step in range(start_step, config.max_num_iterations):
            if time_budget_s is not None and time.perf_counter() - started > time_budget_s:
                break
            torch.manual_seed((config.seed + rank) * 1_000_003 + step)
            batch = loader.next_batch()
            origins = batch["origins"].to(torch_device, torch.float32)
            directions = batch["directions"].to(torch_device, torch.float32)
            image_index = train_position[batch["image_index"].to(torch_device).long()]
            gt = tonemap(batch["rgb"].to(torch_device, torch.float32))
            with devices.autocast(torch_device, amp_dtype):
                outputs = ddp_model(origins, directions, image_index, step=step)
                loss_dict = model.loss_dict(outputs, gt)
                loss = functools.reduce(operator.add, loss_dict.values())
            scaler.scale(loss).backward()
            optimizers.step(scaler)
            optimizers.zero_grad()
            last_step = step
            if rank == 0:
                if _log_due(step, start_step, config):
                    # the only per-step wait for the device: every steps_per_log steps
                    devices.synchronize(torch_device)
                    now = time.perf_counter()
                    steps_done = step - window_first + 1
                    rate = world * config.train_num_rays_per_batch * steps_done / (now - window_tic)
                    if window_first - start_step >= 2:  # nerfstudio skips the first steps
                        timed_rays += world * config.train_num_rays_per_batch * steps_done
                        timed_seconds += now - window_tic
                    mse = float(loss_dict["rgb_loss"].detach())
                    stats = {
                        "loss": float(loss.detach()),
                        "psnr": -10.0 * math.log10(max(mse, 1e-10)),
                        "rays_per_sec": rate,
                        "step_seconds": (now - window_tic) / steps_done,
                        **loader.coverage().progress_stats(),
                    }
                    window_first, window_tic = step + 1, now
                if report is not None:
                    report(step, config.max_num_iterations, stats)
                if step > start_step and step % config.steps_per_save == 0:
                    saving = time.perf_counter()
                    checkpoint = save_checkpoint(
                        run_dir, step, model, optimizers, scaler, config.keep_checkpoints,
                        loader_state=loader.state_dict(),
                    )  # fmt: skip
                    window_tic += time.perf_counter() - saving  # rays/s leaves saves out
        if rank == 0 and last_step >= start_step:
            checkpoint = save_checkpoint(
                run_dir, last_step, model, optimizers, scaler, config.keep_checkpoints,
                loader_state=loader.state_dict(),
            )  # fmt: skip
        coverage = loader.coverage()
        if rank == 0:  # what the run trained on (docs/loader.md): never a silent subset
            atomic_write_json(run_dir / "coverage.json", coverage.to_json())
    finally:
        loader.close()
        if world > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
    if timed_seconds > 0:  # every timed step weighs the same, whatever its window
        stats["mean_rays_per_sec"] = timed_rays / timed_seconds
    stats["peak_memory_mb"] = devices.peak_memory_bytes(torch_device) / 2**20
    return TrainResult(
        run_dir=run_dir,
        last_step=last_step,
        checkpoint=checkpoint,
        stats=stats,
        coverage=coverage,
    )


def _log_due(step: int, start_step: int, config: TrainConfig) -> bool:
    """Read the loss back on the first step (so progress has numbers), every
    ``steps_per_log`` steps and on the last one."""
    return (
        step == start_step
        or (step + 1) % max(1, config.steps_per_log) == 0
        or step + 1 == config.max_num_iterations
    )


def _skip_batches(loader: Any, count: int, state: dict[str, Any] | None = None) -> None:
    """Advance a freshly built loader to batch ``count``, with its saved state when the
    checkpoint has one (pool, stream position, coverage counters)."""
    if count <= 0:
        return
    if state is None or int(state.get("step", -1)) != count:
        state = {"step": count, "seed": loader.seed}
    loader.load_state_dict(state)
