"""What watches a run: the :class:`TrainObserver` hook of the :class:`~trainer_adapter.trainer.Trainer`.

The loop knows nothing of TensorBoard, files or viewers: it calls each observer at the log
cadence (``steps_per_log``, when the loss has been read back anyway) and once at the end, on
rank 0 only. The run's curves (:mod:`trainer_adapter.curves`) are one such observer; the viewer
of ``eyeful train --viewer`` is another.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

    from trainer_adapter.data.parser import ParsedDataset
    from trainer_adapter.model.nerfacto import NerfactoModel
    from trainer_adapter.options import TrainOptions

log = logging.getLogger(__name__)


class Trainer(Protocol):
    """What an observer may read of the running :class:`~trainer_adapter.trainer.Trainer`
    (a protocol, so observers never import the trainer that imports them)."""

    @property
    def options(self) -> TrainOptions: ...
    @property
    def model(self) -> NerfactoModel: ...
    @property
    def device(self) -> torch.device: ...
    @property
    def dataset(self) -> ParsedDataset: ...
    @property
    def run_dir(self) -> Path: ...
    @property
    def start_step(self) -> int: ...
    @property
    def resume_from(self) -> Path | None: ...
    @property
    def tonemap(self) -> Callable[[torch.Tensor], torch.Tensor]: ...


class TrainObserver(Protocol):
    """Called by the trainer on rank 0. ``stats`` hold every loss term, ``psnr``, the learning
    rates (``lr_<optimizer>``), ``rays_per_sec``, ``step_seconds`` and the loader's coverage
    (``images_seen``, ``images``, ``passes``, ``decode_wait_s``). Time spent in ``on_step`` is
    left out of rays/s, but is still training's wall time: keep it short or sparse."""

    def on_step(self, trainer: Trainer, step: int, stats: Mapping[str, float]) -> None:
        """At the log cadence (the first step, every ``steps_per_log`` steps, the last one)."""
        ...

    def on_end(self, trainer: Trainer) -> None:
        """Once, after the last checkpoint, and also when the run fails (from a ``finally``)."""
        ...


def end_all(observers: Sequence[TrainObserver], trainer: Trainer, *, failed: bool) -> None:
    """``on_end`` of every observer, each even when an earlier one raised. When the run has
    failed already, their errors are only logged at info level (the run's error is the one line
    the user gets: a full disk also fails the curves' last write); otherwise the first is
    raised."""
    first: BaseException | None = None
    for observer in observers:
        try:
            observer.on_end(trainer)
        except Exception as error:
            if failed:
                log.info("%s at the end of a failed run: %s", type(observer).__name__, error)
            elif first is None:
                first = error
    if first is not None:
        raise first
