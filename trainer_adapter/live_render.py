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
import math
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from eyeful_tools.view.live import LiveRender, LiveSettings
from trainer_adapter.data.images import camera_ray_chunks
from trainer_adapter.evaluate import load_run, to_uint8
from trainer_adapter.model.nerfacto import NerfactoModel
from trainer_adapter.render import pinhole

if TYPE_CHECKING:
    from trainer_adapter.observers import Trainer

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


def run_renderer(run_dir: str | Path, device: str = "auto") -> tuple[ModelRenderer, int]:
    """The renderer of a trained run's latest checkpoint, and the step it holds."""
    run = load_run(run_dir, device)
    return ModelRenderer(run.model, run.device, run.chunk_rays), run.step


def attach_run(
    server: Any, normalised_from_scene: np.ndarray, renderer: ModelRenderer
) -> LiveRender:
    """Start rendering ``renderer`` into every browser of ``server`` (``eyeful view RUN``)."""
    return LiveRender(server, normalised_from_scene, renderer.render).start()


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
