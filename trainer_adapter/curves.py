"""A run's training curves: TensorBoard event files, ``metrics.jsonl`` and ``curves.png``.

:class:`CurvesWriter` is a :class:`~trainer_adapter.observers.TrainObserver` the trainer adds
on rank 0 (``runtime.curves``). At the log cadence it writes every scalar of the step's stats
(loss terms, PSNR, learning rates, rays/s, the loader's coverage and decode wait) to an event
file directly in the run folder, so ``tensorboard --logdir outputs`` shows every run, and the
same numbers as one JSON line of ``metrics.jsonl``; every ``steps_per_eval_image`` steps it adds
a held-out view (ground truth | render, :mod:`trainer_adapter.eval_image`). At the end it plots
loss and PSNR against step into ``curves.png``.

Resume: a resumed run starts its ``metrics.jsonl`` with the rows of the run it resumed up to
the checkpoint's step (and replays them into its event file), so its curves are whole; when it
writes into the same folder, TensorBoard is told to drop the events past the checkpoint
(``purge_step``). Without the ``tensorboard`` package the event files are skipped with one
warning; ``metrics.jsonl`` and the PNG are still written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eyeful_tools.fsio import atomic_write_text, naming
from trainer_adapter.curves_plot import write_curves_png
from trainer_adapter.data.coverage import PROGRESS_KEYS

if TYPE_CHECKING:
    from trainer_adapter.observers import Trainer

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "curves.png"
#: the TensorBoard tag of the eval image (ground truth | render) and of its PSNR
EVAL_IMAGE_TAG = "eval/held_out"
EVAL_PSNR_KEY = "eval_image_psnr"
_SPEED_KEYS = ("rays_per_sec", "step_seconds")


def tag_for(key: str) -> str:
    """The TensorBoard tag of a stats key, grouped as TensorBoard shows them: ``loss/*``,
    ``train/psnr``, ``lr/<optimizer>``, ``speed/*``, ``loader/*``, ``eval/*``."""
    if key == "loss":
        return "loss/total"
    if key.endswith("_loss") or key.endswith("_regularizer"):
        return f"loss/{key}"
    if key.startswith("lr_"):
        return f"lr/{key[3:]}"
    if key in _SPEED_KEYS:
        return f"speed/{key}"
    if key in PROGRESS_KEYS:
        return f"loader/{key}"
    if key == EVAL_PSNR_KEY:
        return "eval/psnr"
    return f"train/{key}"


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` (none if it is missing); a line a kill cut short is
    skipped."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN


def _summary_writer(run_dir: Path, purge_step: int | None) -> Any:
    """TensorBoard's ``SummaryWriter`` on ``run_dir``, or None (one warning) without the
    ``tensorboard`` package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning(
            "tensorboard is not installed: no TensorBoard event files for this run "
            "(metrics.jsonl and curves.png are still written; pip install 'eyeful[train]')"
        )
        return None
    _quiet_writer_thread_errors()
    return SummaryWriter(log_dir=str(run_dir), purge_step=purge_step, flush_secs=30)


def _quiet_writer_thread_errors() -> None:
    """TensorBoard writes events on a thread of its own; a write that fails there (a full disk)
    is raised in that thread, which prints a traceback, and handed to the writer's next call
    in ours, which :func:`_events_named` turns into the run's one error line. Only the thread's
    copy of an ``OSError`` is silenced; every other thread error reaches the previous hook."""
    previous = threading.excepthook
    if getattr(previous, "eyeful_quiet_tensorboard", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        from_tensorboard = type(args.thread).__module__.startswith("tensorboard.")
        if not (from_tensorboard and isinstance(args.exc_value, OSError)):
            previous(args)

    hook.eyeful_quiet_tensorboard = True  # type: ignore[attr-defined]
    threading.excepthook = hook


@contextlib.contextmanager
def _events_named(run_dir: Path) -> Iterator[None]:
    """An event file's failed write (it names no file) as an error naming the run folder."""
    try:
        yield
    except OSError as error:
        raise naming(error, run_dir) from error


class CurvesWriter:
    """The curves of one run folder (see the module docstring)."""

    def __init__(self, trainer: Trainer) -> None:
        self.run_dir = trainer.run_dir
        self.path = self.run_dir / METRICS_FILE
        runtime = trainer.options.runtime
        self.eval_every = max(0, runtime.steps_per_eval_image)
        self.eval_max_px = runtime.eval_image_max_px
        start = trainer.start_step
        self.last_eval = start // self.eval_every if self.eval_every else 0
        previous = trainer.resume_from.parent.parent if trainer.resume_from else None
        earlier = read_rows(previous / METRICS_FILE) if previous is not None else []
        self.rows = [row for row in earlier if row["step"] < start]
        same_folder = previous is not None and previous.resolve() == self.run_dir.resolve()
        # the file starts as what this run continues (nothing for a new run)
        atomic_write_text(self.path, "".join(self._line(row) for row in self.rows))
        self.fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            with _events_named(self.run_dir):
                self.writer = _summary_writer(
                    self.run_dir, start if same_folder and start else None
                )
        except BaseException:
            os.close(self.fd)
            raise
        if self.writer is not None and not same_folder:
            for row in self.rows:  # a resumed run's event file holds its whole curve
                self._add_scalars(row)

    @staticmethod
    def _line(row: Mapping[str, Any]) -> str:
        return json.dumps(row, allow_nan=False) + "\n"

    def _add_scalars(self, row: Mapping[str, Any]) -> None:
        step, wall = int(row["step"]), row.get("wall_time")
        with _events_named(self.run_dir):
            for key, value in row.items():
                if key not in ("step", "wall_time") and value is not None:
                    self.writer.add_scalar(tag_for(key), float(value), step, walltime=wall)

    def on_step(self, trainer: Trainer, step: int, stats: Mapping[str, float]) -> None:
        row: dict[str, Any] = {"step": step, "wall_time": time.time()}
        row.update({key: _json_number(float(value)) for key, value in stats.items()})
        if self.eval_every and (step + 1) // self.eval_every > self.last_eval:
            self.last_eval = (step + 1) // self.eval_every
            row[EVAL_PSNR_KEY] = _json_number(self._eval_image(trainer, step))
        self.rows.append(row)
        self._append(row)
        if self.writer is not None:
            self._add_scalars(row)

    def _append(self, row: Mapping[str, Any]) -> None:
        """One ``write`` of a whole line: a kill leaves whole lines (and maybe a cut last one)."""
        if self.fd is None:
            return
        data = self._line(row).encode()
        try:
            written = os.write(self.fd, data)
        except OSError as error:
            raise naming(error, self.path) from error
        if written != len(data):
            raise OSError(28, "No space left on device (metrics line cut short)", str(self.path))

    def _eval_image(self, trainer: Trainer, step: int) -> float:
        from trainer_adapter.eval_image import render_view
        from trainer_adapter.model.inference import chunk_rays

        view = render_view(
            trainer.model,
            trainer.dataset,
            tonemap=trainer.tonemap,
            max_px=self.eval_max_px,
            chunk=chunk_rays(trainer.options),
            device=trainer.device,
        )
        if self.writer is not None:
            with _events_named(self.run_dir):
                self.writer.add_image(EVAL_IMAGE_TAG, view.picture, step, dataformats="HWC")
        return view.psnr

    def on_end(self, trainer: Trainer) -> None:
        """Close the files, then plot the whole curve into ``curves.png``."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.writer is not None:
            writer, self.writer = self.writer, None
            with _events_named(self.run_dir):
                writer.close()
        if self.rows:
            write_curves_png(self.run_dir / PLOT_FILE, self.rows)
