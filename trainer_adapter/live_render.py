"""The model side of the live viewer: render a trained run, or the weights of a run in training,
from a browser camera (``eyeful view RUN``, ``eyeful train --viewer``).

Frames go through the same chunked inference as ``eyeful eval`` (at most ``chunk_rays`` rays at
once: memory bounded), under ``torch.inference_mode`` on the run's device. During training the
render thread never touches the weights the optimizer updates: it renders a snapshot, refreshed
between steps (every ``refresh_s``) by :class:`TrainingView`, an observer of the trainer; the
refresh is skipped, never waited for, while a frame is being rendered.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from eyeful_tools.errors import EyefulError, InputFormatError, first_line
from eyeful_tools.view.live import LiveRender, LiveSettings
from trainer_adapter import device as devices
from trainer_adapter.checkpoints import (
    HASH_GRIDS,
    checkpoint_dir,
    checkpoints_in,
    hash_grid_of,
    load_checkpoint,
    load_model_state,
)
from trainer_adapter.data.images import camera_ray_chunks
from trainer_adapter.evaluate import load_run, to_uint8
from trainer_adapter.model.nerfacto import NerfactoModel
from trainer_adapter.render import pinhole

if TYPE_CHECKING:
    from trainer_adapter.observers import Trainer

log = logging.getLogger(__name__)

#: eyeful train --viewer: small frames, rendered at most 5% of the time, new weights every 2 s
TRAINING_SETTINGS = LiveSettings(preview_height=64, full_height=192, busy_fraction=0.05)
TRAINING_REFRESH_S = 2.0
#: rays per chunk during training (a frame of TRAINING_SETTINGS is a few chunks). Not capped by
#: the training batch: inference keeps no autograd state, and at tiny's 512-ray batches the
#: per-chunk Python work of ~100 chunks a frame held the GIL against training (bench.train part 3)
TRAINING_CHUNK_RAYS = 4096


class ModelRenderer:
    """Renders frames of ``model`` (eval mode) on ``device``, ``chunk`` rays at a time, holding
    ``lock`` while it reads the weights."""

    def __init__(self, model: NerfactoModel, device: torch.device, chunk: int) -> None:
        self.model = model
        self.device = device
        self.chunk = max(1, chunk)
        self.lock = threading.Lock()

    def render(
        self,
        world_from_cam: np.ndarray,
        fov_rad: float,
        width: int,
        height: int,
        interrupted: Callable[[], bool],
    ) -> np.ndarray | None:
        """[H, W, 3] uint8 of a pinhole camera (vertical ``fov_rad``) at ``world_from_cam``
        (OpenCV axes, normalised world); None when ``interrupted()`` before it finished."""
        camera = pinhole(width, height, math.degrees(fov_rad))
        rows = max(1, self.chunk // width)
        image = torch.empty((height * width, 3), dtype=torch.float32, device=self.device)
        filled = 0
        with self.lock, torch.inference_mode():
            for origins, directions in camera_ray_chunks(
                camera, world_from_cam, chunk_rows=rows, device=self.device
            ):
                if interrupted():
                    return None
                rgb = self.model.render_rays_chunked(origins, directions, self.chunk)["rgb"]
                image[filled : filled + rgb.shape[0]] = rgb
                filled += rgb.shape[0]
            return to_uint8(image.view(height, width, 3))


#: how often ``eyeful view RUN`` looks for a new checkpoint (a listing of one folder)
CHECKPOINT_POLL_S = 2.0
#: how long ``RunFollower.stop`` waits for a load in progress (Ctrl-C stays prompt: the thread
#: is a daemon, and whatever it loads after is never shown)
STOP_WAIT_S = 1.0


def _identity(path: Path) -> tuple[Path, int, int] | None:
    """A file as it is now (path, size, mtime_ns): a checkpoint refused while half-written (a
    save in place, as nerfstudio's ns-train does) is tried again once it changes. None: gone."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return path, stat.st_size, stat.st_mtime_ns


class RunFollower:
    """``eyeful view RUN``: renders the run's latest checkpoint into every browser of a viewer
    and follows the run. A daemon thread lists ``nerfstudio_models/`` every ``poll_s`` and loads
    the first checkpoint of a run that had none, then each newer one, as a user watching a run
    in training expects (``ns-viewer`` loads one). It sees complete files only: the trainer
    writes a hidden temp file and renames it to ``step-*.ckpt``. Newer weights are copied into
    the model shown between frames (one model in memory); a checkpoint that does not load is
    one warning line, tried again only once the file changes, and the model shown stays."""

    def __init__(
        self,
        run_dir: str | Path,
        device: str = "auto",
        *,
        say: Callable[[str], None] = print,
        poll_s: float = CHECKPOINT_POLL_S,
        settings: LiveSettings | None = None,
        clients: Callable[[], Mapping[int, Any]] | None = None,
    ) -> None:
        devices.resolve_device(device)  # a bad --device is refused now, not at the first save
        self.run_dir, self.device, self.say, self.poll_s = Path(run_dir), device, say, poll_s
        self.settings = settings or LiveSettings()
        self.clients = clients  # see LiveRender.clients
        self.renderer: ModelRenderer | None = None
        self.live: LiveRender | None = None
        self.checkpoint: Path | None = None
        self.step: int | None = None
        self._refused: tuple[Path, int, int] | None = None  # a checkpoint file that did not load
        self._view: tuple[Any, np.ndarray] | None = None  # server, normalised_from_scene
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def folder(self) -> Path:
        """Where the run's checkpoints appear."""
        return checkpoint_dir(self.run_dir)

    def shown(self) -> str:
        """What is rendered, as the lines printed say it."""
        assert self.renderer is not None
        return f"the model of step {self.step} rendered on {self.renderer.device}"

    def load(self) -> bool:
        """Load the run's latest checkpoint (a bad one raises); False when it has none yet."""
        if not checkpoints_in(self.folder):
            return False
        run = load_run(self.run_dir, self.device)
        self.renderer = ModelRenderer(run.model, run.device, run.chunk_rays)
        self.checkpoint, self.step = run.checkpoint, run.step
        return True

    def start(self, server: Any, normalised_from_scene: np.ndarray) -> RunFollower:
        """Render into ``server``'s browsers (once there is a model) and start following."""
        self._view = (server, normalised_from_scene)
        self._attach()
        self._thread = threading.Thread(target=self._follow, name="eyeful-run-follow", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop following and rendering, waiting at most ``STOP_WAIT_S`` for a load."""
        with self._lock:
            self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_WAIT_S)
        if self.live is not None:
            self.live.stop()

    def _attach(self) -> None:
        with self._lock:
            if self._stop.is_set() or self.renderer is None or self._view is None:
                return
            server, normalised = self._view
            self.live = LiveRender(
                server, normalised, self.renderer.render, self.settings, self.clients
            ).start()

    def _follow(self) -> None:
        """The thread: never ends with a traceback (a stdout closed by ``| head`` included)."""
        while not self._stop.wait(self.poll_s):
            try:
                self.poll()
            except Exception as error:
                log.warning("eyeful view: following %s: %s", self.folder, first_line(error))

    def poll(self) -> None:
        """Load the latest checkpoint if it is not the one shown (nor a file that failed)."""
        found = checkpoints_in(self.folder)
        if not found or found[-1] == self.checkpoint:
            return
        latest, first, before = found[-1], self.renderer is None, self.step
        identity = _identity(latest)  # before reading: a file still being written changes after
        if identity is None or identity == self._refused:
            return  # deleted by the trainer for a newer one (the next poll), or refused as is
        try:
            if first:
                if not self.load():  # gone meanwhile (a folder emptied by hand)
                    return
                self._attach()
            else:
                self._load_weights(latest)
        except Exception as error:  # the viewer goes on showing what it has
            if latest.exists() and not self._stop.is_set():  # else deleted for a newer one
                self._refused = identity
                what = (
                    error.one_line()
                    if isinstance(error, EyefulError)
                    else f"{latest}: {first_line(error)}"
                )
                shown = "waiting for the next one" if first else f"still showing step {before}"
                log.warning("%s; %s", what, shown)
            return
        if not self._stop.is_set():
            self.say(f"eyeful view: {self.shown()} ({_which(before, self.step)})")

    def _load_weights(self, path: Path) -> None:
        """Copy a newer checkpoint's weights into the model shown, between two frames."""
        assert self.renderer is not None
        state = load_checkpoint(path, mmap=True)  # the optimizer state is never paged in
        if state["hash_grid"] != hash_grid_of(self.renderer.model):
            grid = HASH_GRIDS[state["hash_grid"]]
            raise InputFormatError(path, f"holds {grid}, unlike the model of step {self.step}")
        with self.renderer.lock:
            load_model_state(self.renderer.model, state, path)
        self.checkpoint, self.step = path, int(state["step"])
        if self.live is not None:
            self.live.invalidate()


def _which(before: int | None, step: int | None) -> str:
    """Which checkpoint a line announces: a run restarted in its folder saves lower steps."""
    if before is None:
        return "its first checkpoint"
    if step is not None and step < before:
        return f"replacing step {before}: the run's latest checkpoint is now an earlier one"
    return "a newer checkpoint"


class TrainingView:
    """A :class:`~trainer_adapter.observers.TrainObserver` that shows the run in training in a
    viewer: at its first call it copies the model and starts rendering that copy into every
    browser of ``server`` (whose drawn world is the run's transforms.json world); every ``refresh_s`` after, it copies the new weights (between steps,
    unless a frame is being rendered: then the next call does) and has every view re-rendered."""

    def __init__(
        self,
        server: Any,
        *,
        refresh_s: float = TRAINING_REFRESH_S,
        settings: LiveSettings = TRAINING_SETTINGS,
        clients: Callable[[], Mapping[int, Any]] | None = None,
    ) -> None:
        self.server = server
        self.clients = clients  # see LiveRender.clients
        self.refresh_s = refresh_s
        self.settings = settings
        self.renderer: ModelRenderer | None = None
        self.live: LiveRender | None = None
        self.copied_step = -1
        self._copied_at = 0.0

    def on_step(self, trainer: Trainer, step: int, stats: Mapping[str, float]) -> None:
        if self.renderer is None:
            with torch.no_grad():
                snapshot = copy.deepcopy(trainer.model).eval().requires_grad_(False)
            self.renderer = ModelRenderer(snapshot, trainer.device, TRAINING_CHUNK_RAYS)
            self.copied_step, self._copied_at = step, time.perf_counter()
            normalised = trainer.dataset.normalised_from_transforms_world()
            self.live = LiveRender(
                self.server, normalised, self.renderer.render, self.settings, self.clients
            ).start()
            return
        if time.perf_counter() - self._copied_at < self.refresh_s:
            return
        if not self.renderer.lock.acquire(blocking=False):
            return  # a frame is being rendered: the next call copies
        try:
            copy_weights(trainer.model, self.renderer.model)
        finally:
            self.renderer.lock.release()
        self.copied_step, self._copied_at = step, time.perf_counter()
        assert self.live is not None
        self.live.invalidate()

    def on_end(self, trainer: Trainer) -> None:
        if self.live is not None:
            self.live.stop()


def copy_weights(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Copy every parameter and buffer of ``source`` into ``target`` (the same architecture)."""
    with torch.no_grad():
        targets = target.state_dict()
        for name, value in source.state_dict().items():
            targets[name].copy_(value)
