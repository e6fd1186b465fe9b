"""Camera rays in torch: pixel centres -> world-space origins and unit directions.

The maths mirrors :mod:`eyeful_tools.cameras` (``unproject``/``undistort``) exactly, vectorised
in torch so it runs on the training device: normalise with (fx, fy, cx, cy), invert the
[k1 k2 k3 k4 p1 p2] distortion with Newton's method (analytic 2x2 Jacobian), then a pinhole ray
(x, y, 1) or, for OPENCV_FISHEYE, the equidistant ray (x sin(t)/t, y sin(t)/t, cos t) with
t = |(x, y)|, or for EQUIRECTANGULAR (rendering) the panorama direction of longitude pi x and polar
angle pi (1/2 + y). Stereo eyes (VR180, ODS) move each ray's origin off the camera centre
(``cameras.eye_origins``). Directions are in OpenCV camera axes and rotated to the world by the OpenCV
``world_from_cam``; a world-space direction is the same vector whichever camera-axis convention
(OpenCV or nerfstudio's OpenGL) the pose is written in, so no axis flip is needed here.

Pixel coordinates are corner-origin: the centre of pixel (row i, col j) is (u, v) = (j + .5, i + .5).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from eyeful_tools.cameras import Camera, CameraModel, StereoRig

#: Newton iterations at most (3-4 suffice for real lenses: convergence is quadratic)
MAX_ITERATIONS = 40

#: dtype of the ray maths in training and eval: GPUs run float64 at 1/64 of float32 or worse.
#: float32 keeps directions within ~5e-7 rad of the float64 reference, fisheye included
#: (tests/test_rays.py); pixel centres (integer + 0.5) are exact in float32 up to 2^23 px.
RAY_DTYPE = torch.float32


_COLUMNS = (
    *("fx", "fy", "cx", "cy", "k1", "k2", "k3", "k4", "p1", "p2"),
    *("fisheye", "equirectangular", "eye_half_baseline", "ods"),
)


@dataclass(frozen=True)
class CameraTensors:
    """Per-image intrinsics packed in one float table (row i = image i), so gathering one camera
    per ray is a single indexing op. Units: pixels.

    Columns: fx fy cx cy k1 k2 k3 k4 p1 p2 (zero for PINHOLE), is-fisheye (0/1),
    is-equirectangular (0/1), the stereo eye's signed half-baseline ``side * ipd / 2`` (0 without
    an eye) and is-ODS (0/1: the eye circles; else the eye is a fixed VR180 offset). The ``may_*``
    flags are known at packing time, so the ray maths skips what no camera needs without a device
    sync.
    """

    table: torch.Tensor  # [N, 14]
    may_distort: bool = True
    may_fisheye: bool = True
    may_equirectangular: bool = False
    may_stereo: bool = False

    def __len__(self) -> int:
        return int(self.table.shape[0])

    def __getitem__(self, index: torch.Tensor | slice | int) -> CameraTensors:
        """Gather the intrinsics of some images (e.g. one per ray)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return dataclasses.replace(self, table=self.table[index])

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> CameraTensors:
        return dataclasses.replace(self, table=self.table.to(device, dtype))

    fx = property(lambda self: self.table[:, 0])  # [N]
    is_fisheye = property(lambda self: self.table[:, 10] > 0.5)  # [N] bool
    is_equirectangular = property(lambda self: self.table[:, 11] > 0.5)  # [N] bool
    eye_half_baseline = property(lambda self: self.table[:, 12])  # [N]
    is_ods = property(lambda self: self.table[:, 13] > 0.5)  # [N] bool


def pack_cameras(
    cameras: Sequence[Camera],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> CameraTensors:
    """Pack canonical cameras into :class:`CameraTensors` on ``device``."""
    rows = []
    for camera in cameras:
        spec = camera.spec
        distortion = camera.distortion if spec.is_distorted else (0.0,) * 6
        eye = camera.eye
        rows.append(
            (
                *(camera.fx, camera.fy, camera.cx, camera.cy, *distortion),
                float(spec.is_fisheye),
                float(camera.model is CameraModel.EQUIRECTANGULAR),
                0.0 if eye is None else eye.side * eye.ipd / 2.0,
                float(eye is not None and eye.rig is StereoRig.ODS),
            )
        )
    table = torch.as_tensor(np.asarray(rows, dtype=np.float64).reshape(-1, len(_COLUMNS)))
    return CameraTensors(
        table.to(device=device, dtype=dtype),
        may_distort=bool(np.any(table[:, 4:10].numpy() != 0)),
        may_fisheye=any(camera.is_fisheye for camera in cameras),
        may_equirectangular=bool(np.any(table[:, 11].numpy() > 0.5)),
        may_stereo=any(camera.eye is not None for camera in cameras),
    )


def distort(points: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """Radial (k1..k4) + tangential (p1, p2) distortion. points [B, 2], coefficients [B, 6]."""
    k1, k2, k3, k4, p1, p2 = coefficients.unbind(-1)
    x, y = points.unbind(-1)
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * (k3 + r2 * k4)))
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return torch.stack([xd, yd], dim=-1)


def undistort(
    points: torch.Tensor,
    coefficients: torch.Tensor,
    *,
    iterations: int = MAX_ITERATIONS,
    tolerance: float | None = None,
    check_every: int | None = None,
) -> torch.Tensor:
    """Invert :func:`distort` by Newton's method, like ``eyeful_tools.cameras.undistort``.

    points [B, 2] (distorted, normalised), coefficients [B, 6] -> undistorted [B, 2]. Stops
    when every residual |distort(x) - points| is below ``tolerance`` (default 1e-13 for float64,
    2.5e-7, about two float32 ulps at 1, for float32); checking the residual before the Jacobian saves the last step's work.
    Reading the residual back waits for the device, so off the CPU it is looked at only every
    ``check_every``-th step (default 4; a Newton step at the solution stays there).
    """
    if tolerance is None:
        tolerance = 1e-13 if points.dtype == torch.float64 else 2.5e-7
    if check_every is None:
        check_every = 1 if points.device.type == "cpu" else 4
    k1, k2, k3, k4, p1, p2 = coefficients.unbind(-1)
    tx, ty = points.unbind(-1)
    x, y = tx, ty
    for iteration in range(iterations):
        r2 = x * x + y * y
        radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * (k3 + r2 * k4)))
        two_xy = 2.0 * x * y
        fx = x * radial + p1 * two_xy + p2 * (r2 + 2.0 * x * x) - tx
        fy = y * radial + p1 * (r2 + 2.0 * y * y) + p2 * two_xy - ty
        if (
            iteration > 0
            and iteration % check_every == 0
            and (x.numel() == 0 or float(torch.maximum(fx.abs().max(), fy.abs().max())) < tolerance)
        ):
            break
        d_radial = k1 + r2 * (2.0 * k2 + r2 * (3.0 * k3 + r2 * 4.0 * k4))  # d radial / d r2
        cross = two_xy * d_radial + 2.0 * p1 * x + 2.0 * p2 * y
        dfx_dx = radial + 2.0 * x * x * d_radial + 2.0 * p1 * y + 6.0 * p2 * x
        dfy_dy = radial + 2.0 * y * y * d_radial + 6.0 * p1 * y + 2.0 * p2 * x
        det = dfx_dx * dfy_dy - cross * cross
        det = torch.where(det.abs() < 1e-300, torch.full_like(det, 1e-300), det)
        x = x - (fx * dfy_dy - fy * cross) / det
        y = y - (fy * dfx_dx - fx * cross) / det
    return torch.stack([x, y], dim=-1)


def camera_directions(intrinsics: CameraTensors, pixels_uv: torch.Tensor) -> torch.Tensor:
    """Unit ray directions in OpenCV camera axes. ``intrinsics`` has one entry per ray.

    pixels_uv [B, 2] continuous (u = col + 0.5, v = row + 0.5) -> [B, 3].
    """
    table = intrinsics.table
    distorted = (pixels_uv - table[:, 2:4]) / table[:, 0:2]  # [B, 2]
    plane = undistort(distorted, table[:, 4:10]) if intrinsics.may_distort else distorted
    pinhole = torch.cat([plane, torch.ones_like(plane[:, :1])], dim=-1)
    directions = pinhole
    if intrinsics.may_fisheye:
        theta = torch.linalg.vector_norm(plane, dim=-1)
        small = theta <= 1e-12
        sin_over_theta = torch.where(
            small, torch.ones_like(theta), torch.sin(theta) / torch.where(small, 1.0, theta)
        )
        fisheye = torch.cat([plane * sin_over_theta[:, None], torch.cos(theta)[:, None]], dim=-1)
        directions = torch.where(intrinsics.is_fisheye[:, None], fisheye, pinhole)
    if intrinsics.may_equirectangular:
        longitude = torch.pi * plane[:, 0]
        polar = torch.pi * (0.5 + plane[:, 1])
        sin_polar = torch.sin(polar)
        panorama = torch.stack(
            [torch.sin(longitude) * sin_polar, -torch.cos(polar), torch.cos(longitude) * sin_polar],
            dim=-1,
        )
        directions = torch.where(intrinsics.is_equirectangular[:, None], panorama, directions)
    return directions / torch.linalg.vector_norm(directions, dim=-1, keepdim=True)


def camera_rays(
    intrinsics: CameraTensors, world_from_cam: torch.Tensor, pixels_uv: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """World-space rays through pixels. One camera and pose per ray.

    Args:
        intrinsics: [B] entries (gather with ``packed[image_index]``).
        world_from_cam: [B, 4, 4] (or its top [B, 3, 4]) OpenCV axes, as ParsedDataset holds.
        pixels_uv: [B, 2] corner-origin (u, v); pixel centres are integer + 0.5.

    Returns:
        origins [B, 3] and unit directions [B, 3], in the world of ``world_from_cam``.
    """
    directions_cam = camera_directions(intrinsics, pixels_uv.to(intrinsics.fx.dtype))
    rotation = world_from_cam[:, :3, :3].to(directions_cam.dtype)
    directions = (rotation @ directions_cam[:, :, None])[:, :, 0]
    directions = directions / torch.linalg.vector_norm(directions, dim=-1, keepdim=True)
    origins = world_from_cam[:, :3, 3].to(directions.dtype)
    if intrinsics.may_stereo:
        offsets = eye_origins(intrinsics, pixels_uv.to(directions.dtype))
        origins = origins + (rotation @ offsets[:, :, None])[:, :, 0]
    return origins, directions


def eye_origins(intrinsics: CameraTensors, pixels_uv: torch.Tensor) -> torch.Tensor:
    """Ray origins in OpenCV camera axes [B, 3], as ``cameras.eye_origins``: zero without an eye,
    ``(h, 0, 0)`` for VR180 and ``h (cos L, 0, -sin L)`` for ODS (L: the pixel's longitude),
    ``h = side * ipd / 2``."""
    table = intrinsics.table
    half = intrinsics.eye_half_baseline
    longitude = torch.pi * (pixels_uv[:, 0] - table[:, 2]) / table[:, 0]
    ods = intrinsics.is_ods
    x = torch.where(ods, half * torch.cos(longitude), half)
    z = torch.where(ods, -half * torch.sin(longitude), torch.zeros_like(half))
    return torch.stack([x, torch.zeros_like(x), z], dim=-1)


def pixel_rays(
    packed: CameraTensors,
    world_from_cam: torch.Tensor,
    image_index: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through the centres of integer pixels of dataset images.

    packed: [N] intrinsics, world_from_cam: [N, 4, 4], image_index/rows/cols: [B] int64.
    """
    uv = torch.stack([cols, rows], dim=-1).to(packed.fx.dtype) + 0.5
    return camera_rays(packed[image_index], world_from_cam[image_index], uv)


def valid_pixel_mask(camera: Camera) -> np.ndarray:
    """[H, W] bool: pixels whose centre lies inside the fisheye crop circle (all True without).

    The circle is centred on the principal point; its radius is ``fisheye_crop_radius_px``.
    """
    height, width = camera.height_px, camera.width_px
    if not camera.fisheye_crop_radius_px:
        return np.ones((height, width), dtype=bool)
    v = (np.arange(height) + 0.5 - camera.cy)[:, None]
    u = (np.arange(width) + 0.5 - camera.cx)[None, :]
    return (u * u + v * v) <= camera.fisheye_crop_radius_px**2
