"""The training loop as a :class:`Trainer` object: setup, train step, eval, save and load.

Following gsplat's ``simple_trainer`` (one ``Runner`` owning data, model, optimizers and the
loop) and NerfBaselines' method/trainer split: the model (``model/``) knows nothing of runs;
options are :class:`~trainer_adapter.options.TrainOptions`; run folders and resume rules live in
:mod:`trainer_adapter.runs`, checkpoints in :mod:`trainer_adapter.checkpoints`, optimizers in
:mod:`trainer_adapter.optim`.

Determinism: step ``k`` seeds the global RNG with ``(seed + rank, k)`` and the loader's state
(stream position, coverage counters) rides in the checkpoint; with a fixed ``swap_rate`` the
loader yields the same batch for the same seed and batch number, so ``N`` steps + save + resume
+ ``N`` steps equals ``2N`` straight steps on CPU (the default ``"auto"`` rate follows the decode
speed, see docs/loader.md). Every run writes ``coverage.json``: what the batches covered.

Non-finite guard: a step whose loss or gradients are not finite does not update the weights
(under fp16 the grad scaler already skips overflowing steps and lowers its scale; that only
counts once the scale is below 1). ``nonfinite_patience`` such steps in a row stop the run with
:class:`TrainingError` naming the first of them; the checkpoints already written stay, and no
checkpoint holding NaN is ever written.

DDP: launched by ``torchrun`` (even with one process); nccl on CUDA, gloo elsewhere; every rank
samples its own full batch (seed ``42 + rank``), gradients are averaged, the non-finite verdict
is agreed by all ranks, only rank 0 writes.

Observers (:class:`~trainer_adapter.observers.TrainObserver`) see the stats at the log cadence
and the end of the run, on rank 0: the run's curves (:mod:`trainer_adapter.curves`, on unless
``runtime.curves`` is off) are one, so the loop writes no log files itself.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn

from eyeful_tools.errors import TrainingError, UsageError
from eyeful_tools.fsio import atomic_write_json, clean_stale_temps
from trainer_adapter import device as devices
from trainer_adapter.checkpoints import (  # noqa: F401 - re-exported: the trainer's API
    CHECKPOINT_DIR,
    checkpoint_dir,
    hash_grid_of,
    implementation_for,
    latest_checkpoint,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from trainer_adapter.data.coverage import Coverage
from trainer_adapter.hdr import run_tonemapper
from trainer_adapter.model.nerfacto import NerfactoModel
from trainer_adapter.observers import TrainObserver, end_all
from trainer_adapter.optim import gradients_finite, make_optimizers
from trainer_adapter.options import TrainOptions
from trainer_adapter.runs import (  # noqa: F401 - re-exported: the trainer's API
    read_run_config,
    resolve_options,
    run_dir_for,
    write_run_config,
)

log = logging.getLogger(__name__)

#: ``report(step, max_steps, stats)`` is called after every step on rank 0; ``stats`` (loss and
#: its terms, psnr, rays_per_sec, step_seconds, learning rates, coverage) are refreshed every
#: ``steps_per_log`` steps, when the observers (:mod:`trainer_adapter.observers`) see them
ProgressFn = Callable[[int, int, dict[str, float]], None]


def _dist_env() -> tuple[bool, int, int, int]:
    """(launched by torchrun, world size, rank, local rank). Under torchrun the run is DDP even
    with one process, so one GPU exercises the same path as eight."""
    distributed = "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return distributed, world, rank, local


def launch_rank() -> int:
    """This process's rank under torchrun (0 otherwise): only rank 0 logs, saves and shows."""
    return _dist_env()[2]


@dataclass
class TrainResult:
    run_dir: Path
    last_step: int
    checkpoint: Path | None
    stats: dict[str, float]
    #: what the batches covered (also in ``coverage.json``); None only for runs with no step
    coverage: Coverage | None = None


class NonFiniteGuard:
    """Counts consecutive non-finite steps; raises once there are ``patience`` of them."""

    def __init__(self, patience: int, run_dir: Path) -> None:
        self.patience = max(1, patience)
        self.run_dir = run_dir
        self.streak = 0
        self.first_bad = -1

    def update(self, step: int, finite: bool, last_checkpoint: Path | None) -> None:
        if finite:
            self.streak = 0
            return
        if self.streak == 0:
            self.first_bad = step
            log.warning("step %d: non-finite loss or gradients; the update is skipped", step)
        self.streak += 1
        if self.streak >= self.patience:
            kept = (
                f"the last good checkpoint is {last_checkpoint}"
                if last_checkpoint
                else ("no checkpoint was written")
            )
            raise TrainingError(
                self.run_dir,
                f"loss or gradients non-finite for {self.streak} steps in a row from step "
                f"{self.first_bad}; training stopped at step {step} ({kept})",
            )


class RateMeter:
    """Loss, PSNR and rays/s, read back every ``steps_per_log`` steps (the only per-step wait
    for the device besides the finiteness verdict); saves are left out of rays/s, and so are
    the first steps of the mean, as nerfstudio does."""

    def __init__(self, rays_per_step: int, start_step: int, steps_per_log: int) -> None:
        self.rays_per_step = rays_per_step
        self.start_step = start_step
        self.steps_per_log = max(1, steps_per_log)
        self.window_first, self.window_tic = start_step, time.perf_counter()
        self.timed_rays, self.timed_seconds = 0, 0.0

    def due(self, step: int, last_step: int) -> bool:
        """The first step, every ``steps_per_log`` steps and the last one."""
        return step == self.start_step or (step + 1) % self.steps_per_log == 0 or step == last_step

    def read(self, step: int, loss: float, rgb_loss: float) -> dict[str, float]:
        now = time.perf_counter()
        steps_done = step - self.window_first + 1
        seconds = now - self.window_tic
        if self.window_first - self.start_step >= 2:
            self.timed_rays += self.rays_per_step * steps_done
            self.timed_seconds += seconds
        finite = math.isfinite(rgb_loss)
        stats = {
            "loss": loss,
            "psnr": -10.0 * math.log10(max(rgb_loss, 1e-10)) if finite else math.nan,
            "rays_per_sec": self.rays_per_step * steps_done / seconds,
            "step_seconds": seconds / steps_done,
        }
        self.window_first, self.window_tic = step + 1, now
        return stats

    def pause(self, seconds: float) -> None:
        self.window_tic += seconds

    def mean_rays_per_sec(self) -> float | None:
        return self.timed_rays / self.timed_seconds if self.timed_seconds > 0 else None


class Trainer:
    """One run: ``setup()`` builds everything, ``train()`` loops over ``train_step()``,
    ``save()`` / ``load()`` handle checkpoints, ``evaluate()`` scores the latest checkpoint."""

    def __init__(
        self,
        options: TrainOptions,
        *,
        resume_from: Path | None = None,
        report: ProgressFn | None = None,
        observers: Sequence[TrainObserver] = (),
    ) -> None:
        self.options = copy.deepcopy(options)  # setup() resolves it (paths, downscale, grid)
        self.resume_from = resume_from
        self.report = report
        #: called on rank 0 at the log cadence and at the end (setup() adds the run's curves)
        self.observers: list[TrainObserver] = list(observers)
        self._observers_ended = False
        self.distributed, self.world, self.rank, local_rank = _dist_env()
        self.device = devices.resolve_device(options.runtime.device, local_rank)
        if self.device.type == "cpu" and options.runtime.keep_host_memory:
            devices.keep_freed_host_memory()
        self.start_step = 0
        self.last_step = -1
        self.checkpoint: Path | None = None
        self.stats: dict[str, float] = {}
        self.coverage: Coverage | None = None
        self._resumed_loader_state: dict[str, Any] | None = None

    # -- setup ---------------------------------------------------------------------------------

    def setup(self) -> None:
        """Process group, dataset, model, optimizers, resume state, loader, run folder."""
        if self.distributed and not dist.is_initialized():
            devices.set_device(self.device)
            dist.init_process_group(backend=devices.distributed_backend(self.device))
        if self.distributed:
            self.options.model.sparse_grad = False  # sparse gradients do not all-reduce on nccl
        self._setup_data()
        if self.resume_from is None:
            self._setup_model()
        else:  # the model is built with the hash grid the checkpoint holds
            state = load_checkpoint(self.resume_from)
            self.options.model.implementation = implementation_for(state, self.resume_from)
            self._setup_model()
            self.load(state, self.resume_from)
        self._setup_loader()  # its options are checked before the run folder is written
        self._setup_run_dir()
        if self.rank == 0 and self.options.runtime.curves:
            from trainer_adapter.curves import CurvesWriter

            self.observers.insert(0, CurvesWriter(self))

    def _setup_data(self) -> None:
        from trainer_adapter.data.parser import parse_dataset, resolve_downscale
        from trainer_adapter.data.verify import verify_dataset

        data = self.options.data
        data.downscale = resolve_downscale(data.data, data.downscale)
        self.dataset = parse_dataset(data.data, **data.parser_kwargs())
        verify_dataset(self.dataset)  # a corrupt image is refused before the run folder is written
        data.data = str(self.dataset.transforms_path.resolve())
        train_indices = torch.as_tensor(self.dataset.indices("train"), dtype=torch.long)
        if train_indices.numel() == 0:
            raise UsageError(self.dataset.transforms_path, "the train split is empty")
        self.num_train_images = int(train_indices.numel())
        # dataset image index -> training image index (appearance embedding, camera optimizer)
        position = torch.full((len(self.dataset),), -1, dtype=torch.long)
        position[train_indices] = torch.arange(self.num_train_images)
        self.train_position = position.to(self.device)
        self.hdr: dict[str, Any] | None = None
        if self.dataset.is_hdr:
            from trainer_adapter.data.images import estimate_radiance_scale
            from trainer_adapter.hdr import DEFAULT_TONEMAP

            scale = estimate_radiance_scale(self.dataset, "train")
            self.hdr = {"tonemap": DEFAULT_TONEMAP, "scale": scale}
        self.tonemap = run_tonemapper(self.hdr)

    def _setup_model(self) -> None:
        torch.manual_seed(self.options.runtime.seed)
        self.model = NerfactoModel(self.options.model, self.num_train_images).to(self.device)
        if why := devices.fused_kernel_problem(self.model, self.device):
            raise UsageError("--compile", why)
        self.optimizers = make_optimizers(self.model, self.options.optim, self.device)
        optim = self.options.optim
        self.amp_dtype = devices.autocast_dtype(
            self.device, optim.mixed_precision, cpu_bf16=optim.cpu_autocast_bf16
        )
        self.scaler = devices.grad_scaler(self.device, self.amp_dtype)
        self.ddp_model: nn.Module = self.model
        if self.distributed:
            index = [self.device.index] if self.device.type in ("cuda", "xpu") else None
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=index, find_unused_parameters=True
            )

    def _setup_run_dir(self) -> None:
        # the folder's name only: config.json stays the same for the same run (a killed and
        # re-run run writes identical files)
        stamp = self.options.runtime.timestamp or datetime.now().strftime("%Y-%m-%d_%H%M%S")
        self.run_dir = run_dir_for(self.options, stamp)
        self.guard = NonFiniteGuard(self.options.optim.nonfinite_patience, self.run_dir)
        # config.json says what ran ("tcnn" asks for tiny-cuda-nn only where it imports)
        self.options.model.implementation = hash_grid_of(self.model)
        if self.rank != 0:
            return
        for earlier in self.run_dir.parent.glob("*/"):  # temp files of killed runs (safety.md)
            clean_stale_temps(earlier)
            clean_stale_temps(checkpoint_dir(earlier))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        facts = {
            "is_hdr": bool(self.dataset.is_hdr),
            "hdr": self.hdr,
            "num_train_images": self.num_train_images,
            "world_size": self.world,
            "distributed": self.distributed,
            "hash_grid": hash_grid_of(self.model),
            "resumed_from": str(self.resume_from) if self.resume_from else None,
        }
        write_run_config(self.run_dir, self.options, facts)
        self.dataset.save_dataparser_transforms(self.run_dir / "dataparser_transforms.json")

    def _setup_loader(self) -> None:
        from trainer_adapter.data.loader import RayLoader

        loader = self.options.loader
        self.loader = RayLoader(
            self.dataset,
            "train",
            rays_per_batch=loader.train_num_rays_per_batch,
            pool_images=loader.pool_images,
            pool_stride=loader.pool_stride,
            swap_rate=loader.swap_rate,
            cache_bytes=loader.cache_bytes,
            workers=loader.workers,
            decode_duty=loader.decode_duty,
            mode=loader.loader_mode,
            seed=self.options.runtime.seed + self.rank,
            device=self.device,
        )
        if self.start_step > 0:  # resume continues the stream (pool, position, coverage)
            state = self._resumed_loader_state
            if state is None or int(state.get("step", -1)) != self.start_step:
                state = {"step": self.start_step, "seed": self.loader.seed}
            self.loader.load_state_dict(state)

    # -- checkpoints ---------------------------------------------------------------------------

    def state_dict(self, step: int) -> dict[str, Any]:
        return {
            "step": step,
            "pipeline": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.optimizers.schedulers.items()},
            "scalers": self.scaler.state_dict(),
            "loader": self.loader.state_dict(),  # stream position, coverage counters
            "hash_grid": hash_grid_of(self.model),
        }

    def save(self, step: int) -> Path:
        """Write the checkpoint of ``step`` (rank 0 only; see :mod:`trainer_adapter.checkpoints`)."""
        keep = self.options.runtime.keep_checkpoints
        self.checkpoint = save_checkpoint(self.run_dir, step, self.state_dict(step), keep)
        return self.checkpoint

    def load(self, state: dict[str, Any], path: Path) -> None:
        """Weights, optimizer, scheduler and scaler state of a checkpoint; training continues at
        its step + 1."""
        load_model_state(self.model, state, path)
        for name, optimizer in self.optimizers.optimizers.items():
            if name in state.get("optimizers", {}):
                optimizer.load_state_dict(state["optimizers"][name])
        for name, scheduler in self.optimizers.schedulers.items():
            if name in state.get("schedulers", {}):
                scheduler.load_state_dict(state["schedulers"][name])
        if state.get("scalers"):
            self.scaler.load_state_dict(state["scalers"])
        self._resumed_loader_state = state.get("loader")  # applied when the loader is built
        self.start_step = int(state["step"]) + 1
        self.last_step = self.start_step - 1
        log.info("resuming from %s at step %d", path, self.start_step)

    # -- training ------------------------------------------------------------------------------

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        """One batch: forward, losses, backward and, if everything is finite, the update.
        Returns the losses (``loss`` is their sum) as device tensors, without a sync."""
        seed = (self.options.runtime.seed + self.rank) * 1_000_003 + step
        torch.manual_seed(seed)
        batch = self.loader.next_batch()
        origins = batch["origins"].to(self.device, torch.float32)
        directions = batch["directions"].to(self.device, torch.float32)
        image_index = self.train_position[batch["image_index"].to(self.device).long()]
        gt = self.tonemap(batch["rgb"].to(self.device, torch.float32))
        with devices.autocast(self.device, self.amp_dtype):
            outputs = self.ddp_model(origins, directions, image_index, step=step)
            losses = self.model.loss_dict(outputs, gt)
            loss = cast(torch.Tensor, sum(losses.values()))
        self.scaler.scale(loss).backward()
        finite = self._finite(loss)
        if finite:
            stepped = self.optimizers.step(self.scaler)
            # under fp16 a skipped step is the scaler's business until even scale 1 overflows
            finite = stepped or self.scaler.get_scale() >= 1.0
        self.optimizers.zero_grad()
        self.guard.update(step, finite, self.checkpoint)
        return {**losses, "loss": loss}

    def _finite(self, loss: torch.Tensor) -> bool:
        """The loss, and (without a grad scaler, which checks them itself) the gradients, are
        finite on every rank. One device sync."""
        ok = torch.isfinite(loss.detach()).all()
        if not self.scaler.is_enabled():
            ok = ok & gradients_finite(self.model).to(ok.device)
        flag = ok.to(torch.float32)
        if self.distributed:
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag > 0)

    def train(self, time_budget_s: float | None = None) -> TrainResult:
        """Steps ``start_step .. max_steps - 1``, saving every ``steps_per_save`` and at the end.
        ``time_budget_s`` stops early after that much wall-clock time (benchmarks)."""
        max_steps = self.options.optim.max_steps
        rays = self.world * self.options.loader.train_num_rays_per_batch
        meter = RateMeter(rays, self.start_step, self.options.runtime.steps_per_log)
        started = time.perf_counter()
        self.model.train()
        failed = True
        try:
            for step in range(self.start_step, max_steps):
                losses = self.train_step(step)
                self.last_step = step
                spent = time_budget_s is not None and time.perf_counter() - started > time_budget_s
                if self.rank == 0:
                    self._after_step(step, losses, meter, last=spent)
                if spent:
                    break
            if self.rank == 0 and self.last_step >= self.start_step:
                self.save(self.last_step)
            self.coverage = self.loader.coverage()
            if self.rank == 0:  # what the run trained on (docs/loader.md): never a silent subset
                atomic_write_json(self.run_dir / "coverage.json", self.coverage.to_json())
            failed = False
        finally:
            self.close(failed=failed)
        if (mean := meter.mean_rays_per_sec()) is not None:
            self.stats["mean_rays_per_sec"] = mean
        self.stats["peak_memory_mb"] = devices.peak_memory_bytes(self.device) / 2**20
        return TrainResult(self.run_dir, self.last_step, self.checkpoint, self.stats, self.coverage)

    def _after_step(
        self, step: int, losses: dict[str, torch.Tensor], meter: RateMeter, last: bool = False
    ) -> None:
        """Rank 0: progress, and a checkpoint every ``steps_per_save`` steps. ``last``: the run
        stops after this step before ``max_steps`` (a time budget), so it is logged too."""
        max_steps = self.options.optim.max_steps
        if meter.due(step, step if last else max_steps - 1):
            devices.synchronize(self.device)
            terms = self._loss_terms(losses)
            self.stats = meter.read(step, terms.pop("loss"), terms["rgb_loss"])
            self.stats.update(terms)
            self.stats.update(self.learning_rates())
            self.stats.update(self.loader.coverage().progress_stats())
            if self.observers:
                watching = time.perf_counter()
                for observer in self.observers:
                    observer.on_step(self, step, self.stats)
                meter.pause(time.perf_counter() - watching)  # eval images are not training
        if self.report is not None:
            self.report(step, max_steps, self.stats)
        save_due = step > self.start_step and step % self.options.runtime.steps_per_save == 0
        if save_due and self.guard.streak == 0:  # never in a run of non-finite steps
            saving = time.perf_counter()
            self.save(step)
            meter.pause(time.perf_counter() - saving)

    @staticmethod
    def _loss_terms(losses: dict[str, torch.Tensor]) -> dict[str, float]:
        """Every loss term and the total as host floats, in one device read."""
        names = list(losses)
        values = torch.stack([losses[n].detach().float() for n in names]).cpu().tolist()
        return dict(zip(names, values, strict=True))

    def learning_rates(self) -> dict[str, float]:
        """``lr_<optimizer>`` (``lr_<optimizer>_<i>`` past its first param group); host values."""
        rates = {}
        for name, optimizer in self.optimizers.optimizers.items():
            for i, group in enumerate(optimizer.param_groups):
                rates[f"lr_{name}" + (f"_{i}" if i else "")] = float(group["lr"])
        return rates

    def close(self, *, failed: bool = True) -> None:
        """End the observers (rank 0, once), stop the loader's workers and leave the process
        group. ``failed``: the run did not finish, so an observer's error is only logged."""
        try:
            if self.rank == 0 and not self._observers_ended:
                self._observers_ended = True
                end_all(self.observers, self, failed=failed)
        finally:
            self._close_loader_and_group()

    def _close_loader_and_group(self) -> None:
        loader = getattr(self, "loader", None)
        if loader is not None:
            loader.close()
        if self.distributed and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    def evaluate(self, split: str = "test", max_images: int | None = None) -> Any:
        """``eyeful eval`` of this run's latest checkpoint (an :class:`EvalResult`)."""
        from trainer_adapter.evaluate import evaluate

        device = self.options.runtime.device
        return evaluate(self.run_dir, split=split, device=device, max_images=max_images)


def train(
    data: str | Path,
    *,
    preset: str | None = None,
    load_dir: str | Path | None = None,
    report: ProgressFn | None = None,
    observers: Sequence[TrainObserver] = (),
    time_budget_s: float | None = None,
    overrides: dict[str, Any] | None = None,
    **settings: Any,
) -> TrainResult:
    """Train Nerfacto on a ``transforms.json`` dataset (a folder or the file).

    ``settings`` (and ``overrides``, the same thing as a dict) are flat option names of
    :mod:`trainer_adapter.options` (``max_steps``, ``device``, ``output_dir``, ``downscale``,
    ``train_num_rays_per_batch``, ...). ``load_dir`` resumes a run under the rules of
    :func:`~trainer_adapter.runs.resolve_options`."""
    options, checkpoint = resolve_options(
        data, preset=preset, load_dir=load_dir, settings={**(overrides or {}), **settings}
    )
    return run_training(
        options, checkpoint, report=report, observers=observers, time_budget_s=time_budget_s
    )


def run_training(
    options: TrainOptions,
    resume_from: Path | None = None,
    *,
    report: ProgressFn | None = None,
    observers: Sequence[TrainObserver] = (),
    time_budget_s: float | None = None,
) -> TrainResult:
    """Set up a :class:`Trainer` and train it (the loader is closed and the observers ended
    whatever happens)."""
    trainer = Trainer(options, resume_from=resume_from, report=report, observers=observers)
    try:
        trainer.setup()
    except BaseException:
        trainer.close()
        raise
    return trainer.train(time_budget_s=time_budget_s)
