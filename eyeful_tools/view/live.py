"""Rendering a model from each browser's camera into the viewer's background, progressively.

nerfstudio's viewer does the same (its ``render_state_machine``): while a browser's camera moves,
frames are rendered at a low resolution so they keep up; once it has been still for a moment,
the same view is rendered at full resolution, and a full render is abandoned between chunks as
soon as the camera moves again. One background thread serves every browser, so the server
(and training, for ``eyeful train --viewer``) never waits for a render.

No torch here: the model is behind a :data:`RenderFn` (``trainer_adapter.live_render``). The
browser camera (viser: OpenCV axes, ``wxyz`` and position in the drawn world, the transforms.json
world) is moved into the trainer's normalised world by :func:`eyeful_tools.cameras.pose_in_world`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eyeful_tools.cameras import pose_from_quaternion_wxyz, pose_in_world

log = logging.getLogger(__name__)

#: ``render(world_from_cam, fov_rad, width, height, interrupted)``: ``world_from_cam`` is 4x4,
#: OpenCV axes, in the normalised world; ``fov_rad`` is the vertical field of view. Returns
#: [H, W, 3] uint8, or None when ``interrupted()`` turned true before it finished.
RenderFn = Callable[[np.ndarray, float, int, int, Callable[[], bool]], "np.ndarray | None"]


@dataclass
class LiveSettings:
    """How much rendering a viewer does."""

    preview_height: int = 96  # pixels, while the camera moves
    full_height: int = 480  # pixels, once it has been still for ``still_s``
    still_s: float = 0.25
    #: most of the wall-clock time the render thread may spend rendering (training: a little)
    busy_fraction: float = 1.0
    poll_s: float = 0.05  # how often the thread looks at the cameras when nothing wakes it


@dataclass
class ShownFrame:
    """What one browser was last sent."""

    shape: tuple[int, ...]
    full: bool
    version: int  # the model version it was rendered from (see :meth:`LiveRender.invalidate`)
    mean: float  # mean pixel value: a test tells a render from a blank


@dataclass
class _ViewState:
    key: tuple[Any, ...] | None = None  # camera and model version of the last render
    full: bool = False
    changed_at: float = 0.0


@dataclass
class LiveRender:
    """The render thread of one viser server (``start()`` / ``stop()``)."""

    server: Any  # viser.ViserServer
    normalised_from_scene: np.ndarray  # 4x4 similarity: drawn world -> the model's world
    render: RenderFn
    settings: LiveSettings = field(default_factory=LiveSettings)
    #: the browsers to serve (default the server's clients; a benchmark passes its own camera)
    clients: Callable[[], Mapping[int, Any]] | None = None
    #: client id -> the last frame sent to it
    shown: dict[int, ShownFrame] = field(default_factory=dict)
    renders: int = 0
    failures: int = 0
    version: int = 0
    _states: dict[int, _ViewState] = field(default_factory=dict)
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _next_allowed: float = 0.0

    def start(self) -> LiveRender:
        self.server.on_client_connect(self._connected)
        for client in self._clients().values():
            self._connected(client)
        self._thread = threading.Thread(target=self._loop, name="eyeful-live-render", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def invalidate(self) -> None:
        """The model changed (new weights): every view is rendered again."""
        self.version += 1
        self._wake.set()

    def _clients(self) -> Mapping[int, Any]:
        return self.clients() if self.clients is not None else self.server.get_clients()

    def _connected(self, client: Any) -> None:
        client.camera.on_update(lambda _camera: self._wake.set())
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.settings.poll_s)
            self._wake.clear()
            clients = self._clients()
            for gone in set(self._states) - set(clients):
                self._states.pop(gone, None)
                self.shown.pop(gone, None)
            for client_id, client in list(clients.items()):
                if self._stop.is_set() or time.perf_counter() < self._next_allowed:
                    break
                try:
                    self._serve(client_id, client)
                except Exception as error:  # a frame that fails must not end the viewer
                    self.failures += 1
                    # one line, once (no traceback on the terminal, no line a second after it)
                    level = logging.WARNING if self.failures == 1 else logging.DEBUG
                    log.log(level, "live render failed: %s", error)
                    self._next_allowed = time.perf_counter() + 1.0

    def _serve(self, client_id: int, client: Any) -> None:
        """Render the client's view if its camera or the model changed (preview) or it has
        been still long enough (full resolution)."""
        camera = client.camera
        if camera.update_timestamp == 0.0:  # the browser has not reported its camera yet
            return
        state = self._states.setdefault(client_id, _ViewState())
        key = _camera_key(camera, self.version)
        now = time.perf_counter()
        if key != state.key:
            state.key, state.full, state.changed_at = key, False, now
            self._render(client_id, client, key, full=False)
        elif not state.full and now - state.changed_at >= self.settings.still_s:
            state.full = self._render(client_id, client, key, full=True)
            if not state.full:  # moved while rendering: a preview next
                state.key = None

    def _render(self, client_id: int, client: Any, key: tuple[Any, ...], full: bool) -> bool:
        """One frame into the client's background; False when the camera moved meanwhile."""
        camera = client.camera
        height = self.settings.full_height if full else self.settings.preview_height
        width = max(1, round(height * float(camera.aspect)))
        pose = pose_in_world(
            self.normalised_from_scene, pose_from_quaternion_wxyz(camera.wxyz, camera.position)
        )
        version = self.version

        def interrupted() -> bool:
            return self._stop.is_set() or (full and _camera_key(camera, self.version) != key)

        tic = time.perf_counter()
        image = self.render(pose, float(camera.fov), width, height, interrupted)
        if image is not None:
            client.scene.set_background_image(image, format="jpeg", jpeg_quality=90)
            self.renders += 1
            self.shown[client_id] = ShownFrame(image.shape, full, version, float(image.mean()))
        seconds = time.perf_counter() - tic
        busy = min(max(self.settings.busy_fraction, 1e-3), 1.0)
        self._next_allowed = time.perf_counter() + seconds * (1.0 / busy - 1.0)
        return image is not None


def _camera_key(camera: Any, version: int) -> tuple[Any, ...]:
    """What a render depends on: the camera's pose, field of view and shape, and the model."""
    return (
        tuple(np.round(np.asarray(camera.wxyz, dtype=np.float64), 6)),
        tuple(np.round(np.asarray(camera.position, dtype=np.float64), 6)),
        round(float(camera.fov), 6),
        round(float(camera.aspect), 4),
        version,
    )
