"""Draw a :class:`~eyeful_tools.view.content.ViewContent` with viser (the library nerfstudio's
viewer is built on). viser is the optional ``view`` extra, imported only here, lazily."""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from eyeful_tools.cameras import Camera, default_fisheye_crop_radius_px, rescale_camera
from eyeful_tools.errors import EyefulError, UnsupportedError
from eyeful_tools.imageio import read_image, read_jpeg
from eyeful_tools.view.content import ViewCamera, ViewContent, scene_box_corners

#: frustum colours (RGB) by split; held-out frustums are also drawn thicker
SPLIT_COLORS: dict[str, tuple[int, int, int]] = {
    "train": (40, 110, 230),
    "val": (240, 150, 20),
    "test": (220, 30, 60),
    "none": (120, 120, 120),
}
THUMBNAIL_PX = 160  # longest side of a frustum's image
FISHEYE_CIRCLE_COLOR = (255, 220, 0)
DEFAULT_PORT = 8080
VIEW_FOV_DEG = 50.0  # the browser's vertical field of view


class MissingExtraError(UnsupportedError):
    """An optional dependency of a command is not installed."""


def import_viser() -> Any:
    """The viser module, or the one-line error that names the extra to install."""
    try:
        return importlib.import_module("viser")
    except ImportError as error:
        raise MissingExtraError(
            None, f"eyeful view needs viser: pip install 'eyeful[view]' ({error})"
        ) from error


@dataclass
class Viewer:
    """A running viewer: the viser server and the handles of what it draws."""

    server: Any  # viser.ViserServer
    frustums: dict[str, Any] = field(default_factory=dict)  # scene name -> frustum handle
    cameras: dict[str, ViewCamera] = field(default_factory=dict)  # scene name -> camera
    details: Any = None  # the panel's markdown handle that a click fills
    frustum_depth: float = 0.0  # world units from a camera's centre to its image

    def show(self, name: str) -> None:
        """What clicking the frustum ``name`` does: its image and details in the panel."""
        if self.show_view is not None:
            self.show_view(self.cameras[name])

    show_view: Callable[[ViewCamera], None] | None = None

    @property
    def url(self) -> str:
        host = self.server.get_host()
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{shown}:{self.server.get_port()}"

    def stop(self) -> None:
        self.server.stop()


def start_viewer(content: ViewContent, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> Viewer:
    """Serve ``content`` on ``host:port`` (the next free port when taken) and return at once."""
    viser = import_viser()
    with contextlib.redirect_stdout(sys.stderr):  # viser's banner; stdout has our one line
        server = viser.ViserServer(host=host, port=port, verbose=False)
    server.scene.set_up_direction("+z")
    viewer = Viewer(server=server)
    _add_frames(server, content)
    _add_scene(server, content)
    viewer.details, viewer.show_view = _add_panel(server, content)
    size = viewer.frustum_depth = frustum_size(content)
    server.on_client_connect(lambda client: frame_cameras(client, content))
    for index, view in enumerate(content.cameras):
        name = f"/cameras/position_{view.rig_position}/{view.camera_id or index}_{index}"
        handle = _add_frustum(server, viser, name, view, size)
        handle.on_click(lambda _event, name=name: viewer.show(name))
        viewer.frustums[name] = handle
        viewer.cameras[name] = view
    return viewer


def frame_cameras(client: Any, content: ViewContent) -> None:
    """Start a browser looking down at the rig from above one side, all cameras in view."""
    centres = np.stack([v.world_from_cam[:3, 3] for v in content.cameras])
    middle = centres.mean(axis=0)
    reach = max(float(np.max(np.linalg.norm(centres - middle, axis=1))), 0.5)
    client.camera.up_direction = (0.0, 0.0, 1.0)
    client.camera.fov = np.radians(VIEW_FOV_DEG)  # set, so the server's copy is the browser's
    client.camera.position = middle + reach * np.array([2.0, -2.0, 1.6])
    client.camera.look_at = middle


def frustum_size(content: ViewContent) -> float:
    """A frustum depth that suits the rig: a fifth of the median camera spacing to the centre."""
    centres = np.stack([v.world_from_cam[:3, 3] for v in content.cameras])
    spread = float(np.median(np.linalg.norm(centres - centres.mean(axis=0), axis=1)))
    return max(spread / 5.0, 0.05)


def _add_frustum(server: Any, viser: Any, name: str, view: ViewCamera, size: float) -> Any:
    camera = view.camera
    rotation = viser.transforms.SO3.from_matrix(view.world_from_cam[:3, :3])
    return server.scene.add_camera_frustum(
        name,
        fov=2.0 * np.arctan2(camera.height_px / 2.0, camera.fy),
        aspect=camera.width_px / camera.height_px,
        scale=size,
        thickness=size * (0.06 if view.held_out else 0.02),
        color=SPLIT_COLORS[view.split],
        image=thumbnail(view),
        format="jpeg",
        wxyz=rotation.wxyz,
        position=view.world_from_cam[:3, 3],
    )


def thumbnail(view: ViewCamera, longest: int = THUMBNAIL_PX) -> np.ndarray | None:
    """A small sRGB uint8 copy of the image (``None`` when it cannot be read: the frustum is
    drawn empty and a click says why), with the fisheye image circle on fisheye cameras."""
    try:
        pixels = to_display(_decode_small(view, longest))
    except (EyefulError, OSError):
        return None
    height, width = pixels.shape[:2]
    factor = min(1.0, longest / max(height, width))
    small = cv2.resize(pixels, (max(1, round(width * factor)), max(1, round(height * factor))))
    if view.camera.is_fisheye:
        _draw_fisheye_circle(small, view.camera)
    return np.ascontiguousarray(small[..., :3])


def _decode_small(view: ViewCamera, longest: int) -> np.ndarray:
    """The image, decoded at 1/2, 1/4 or 1/8 of its size when it is a JPEG that big (libjpeg's
    DCT scaling: thousands of 8K thumbnails in seconds rather than minutes)."""
    if view.image_path.suffix.lower() not in (".jpg", ".jpeg"):
        return read_image(view.image_path)
    side = max(view.camera.width_px, view.camera.height_px)
    reduce = max((r for r in (1, 2, 4, 8) if side / r >= longest), default=1)
    return read_jpeg(view.image_path, reduce=reduce)


def to_display(pixels: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 for the browser: 16-bit cut to 8, linear HDR clipped and gamma'd."""
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=-1)
    if pixels.dtype == np.uint16:
        return (pixels >> 8).astype(np.uint8)
    if pixels.dtype != np.uint8:
        linear = np.clip(pixels.astype(np.float32), 0.0, 1.0)
        return (linear ** (1 / 2.2) * 255.0 + 0.5).astype(np.uint8)
    return pixels


def _draw_fisheye_circle(image: np.ndarray, camera: Camera) -> None:
    """The image circle, on ``image`` (the camera's image at any size)."""
    radius = camera.fisheye_crop_radius_px or default_fisheye_crop_radius_px(camera)
    height, width = image.shape[:2]
    small = rescale_camera(replace(camera, fisheye_crop_radius_px=radius), width, height)
    assert small.fisheye_crop_radius_px is not None
    centre = (round(small.cx), round(small.cy))
    radius_px = max(1, round(small.fisheye_crop_radius_px))
    cv2.circle(image, centre, radius_px, FISHEYE_CIRCLE_COLOR, 1, cv2.LINE_AA)


def _add_frames(server: Any, content: ViewContent) -> None:
    """World axes and up arrows: the transforms.json world, the capture's own world and (when
    known) the trainer's normalised one. Labels sit in a column below the origin."""
    size = 4.0 * frustum_size(content)
    identity = np.eye(4)
    up = _up_axis(content.transforms_from_capture)
    worlds = [
        ("transforms", identity, size, "transforms.json world (z up, magenta)"),
        ("capture", content.transforms_from_capture, size * 0.8, f"capture world ({up} up)"),
    ]
    if content.normalised_from_transforms is not None:
        inverse = np.linalg.inv(content.normalised_from_transforms)
        scale = float(np.cbrt(np.linalg.det(inverse[:3, :3])))
        rigid = inverse.copy()
        rigid[:3, :3] /= scale
        worlds.append(("normalised", rigid, scale, "trainer's normalised world (z up)"))
    for row, (name, pose, length, label) in enumerate(worlds):
        _add_world(server, f"/worlds/{name}", pose, length, name != "capture")
        below = pose[:3, 3] - np.array([0.0, 0.0, (row + 1) * 0.15 * size])
        server.scene.add_label(f"/worlds/{name}_label", label, position=below)


def _up_axis(transforms_from_capture: np.ndarray) -> str:
    """Which of the capture's axes is the transforms world's up (+z)."""
    up = transforms_from_capture[2, :3]  # row 2: z of the capture's unit axes
    axis = int(np.argmax(np.abs(up)))
    return f"{'+' if up[axis] > 0 else '-'}{'xyz'[axis]}"


def _add_world(server: Any, name: str, pose: np.ndarray, size: float, z_up: bool) -> None:
    """Axes (x red, y green, z blue) at ``pose``; a magenta up arrow along z when z is up."""
    import viser.transforms as tf

    wxyz = tf.SO3.from_matrix(pose[:3, :3]).wxyz
    server.scene.add_frame(
        name, axes_length=size, axes_radius=size / 40, wxyz=wxyz, position=pose[:3, 3]
    )
    if z_up:
        arrow = np.array([[[0.0, 0.0, size], [0.0, 0.0, 1.5 * size]]])
        server.scene.add_line_segments(f"{name}/up", arrow, (255, 0, 255), thickness=size / 30)


def _add_scene(server: Any, content: ViewContent) -> None:
    """The point cloud and the trainer's scene box (its 12 edges)."""
    if content.points is not None and content.point_colors is not None:
        server.scene.add_point_cloud(
            "/scene/points", content.points, content.point_colors, point_size=0.01
        )
    if content.normalised_from_transforms is not None:
        corners = scene_box_corners(content.normalised_from_transforms)
        edges = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]
        segments = np.stack([corners[[a, b]] for a, b in edges])
        server.scene.add_line_segments("/scene/box", segments, (0, 180, 0), thickness=0.01)


def _add_panel(server: Any, content: ViewContent) -> tuple[Any, Callable[[ViewCamera], None]]:
    """The side panel: its details handle and the function that shows one camera in it."""
    counts = {s: sum(v.split == s for v in content.cameras) for s in SPLIT_COLORS}
    legend = ", ".join(f"{s}: {n}" for s, n in counts.items() if n)
    server.gui.add_markdown(
        f"**{content.transforms_path}**  \n{len(content.cameras)} images ({legend})"
    )
    text = server.gui.add_markdown("Click a camera to see its image.")
    image = server.gui.add_image(np.zeros((8, 8, 3), np.uint8), label="image", visible=False)

    def show(view: ViewCamera) -> None:
        pixels = thumbnail(view, longest=512)
        problem = "" if pixels is not None else f"  \n**image unreadable**: {_read_problem(view)}"
        text.content = camera_details(view) + problem
        image.visible = pixels is not None
        if pixels is not None:
            image.image = pixels

    return text, show


def _read_problem(view: ViewCamera) -> str:
    try:
        read_image(view.image_path)
    except (EyefulError, OSError) as error:
        return error.one_line() if isinstance(error, EyefulError) else str(error)
    return "unknown"


def camera_details(view: ViewCamera) -> str:
    """Markdown: file name, split, camera and rig position, intrinsics."""
    camera = view.camera
    distortion = ", ".join(f"{k}={v:.4g}" for k, v in camera.distortion_dict().items() if v)
    return "  \n".join(
        [
            f"**{view.file_path}**",
            f"split: {'+'.join(view.splits) or 'none'}{' (held-out camera)' if view.held_out else ''}",
            f"camera {view.camera_id}, rig position {view.rig_position}",
            f"{camera.model.value} {camera.width_px}x{camera.height_px}",
            f"fx={camera.fx:.2f} fy={camera.fy:.2f} cx={camera.cx:.2f} cy={camera.cy:.2f}",
            f"distortion: {distortion or 'none'}",
        ]
    )
