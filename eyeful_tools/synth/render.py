"""Rendering the analytic scene through the canonical camera model.

Every ray comes from :func:`eyeful_tools.cameras.unproject` of the image's own (rescaled) camera
at pixel positions in corner-origin coordinates, so an image rendered here is exactly consistent
with the intrinsics and distortion the capture files claim.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from eyeful_tools import cameras
from eyeful_tools.cameras import Camera
from eyeful_tools.synth.scene import trace

#: sRGB OETF (IEC 61966-2-1), as in the EyefulTower README's JPEG example
_SRGB_THRESHOLD = 0.0031308


def supersample_offsets(factor: int) -> np.ndarray:
    """A regular ``factor x factor`` grid of sub-pixel offsets around the centre. -> [S, 2]"""
    steps = (np.arange(factor) + 0.5) / factor - 0.5
    u, v = np.meshgrid(steps, steps)
    return np.stack([u.ravel(), v.ravel()], axis=-1)


def pixel_rays(
    camera: Camera, world_from_cam: np.ndarray, pixels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World rays through ``pixels`` [N, 2] (corner origin) of ``camera`` at ``world_from_cam``.

    Returns (origins [N, 3], unit directions [N, 3], valid [N] bool). Fisheye pixels outside
    the image circle (``camera.fisheye_crop_radius_px`` around the principal point) are invalid.
    """
    pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
    directions_cam = cameras.unproject(camera, pixels)
    rotation = np.asarray(world_from_cam)[:3, :3]
    directions = directions_cam @ rotation.T
    origins = np.broadcast_to(np.asarray(world_from_cam)[:3, 3], directions.shape).copy()
    valid = np.ones(pixels.shape[0], dtype=bool)
    if camera.is_fisheye and camera.fisheye_crop_radius_px is not None:
        # the circle in the distorted normalised plane; rescale_camera keeps this ratio exact
        limit = camera.fisheye_crop_radius_px / ((camera.fx + camera.fy) / 2.0)
        plane_radius = np.hypot(
            (pixels[:, 0] - camera.cx) / camera.fx, (pixels[:, 1] - camera.cy) / camera.fy
        )
        valid = plane_radius <= limit
    return origins, directions, valid


@lru_cache(maxsize=8)
def _camera_rays(camera: Camera, offset: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Unit directions in the camera frame [H*W, 3] and validity [H*W] for every pixel centre
    plus ``offset``. Cached: all cameras of a rig share intrinsics, so each size is solved once."""
    pixels = cameras.pixel_centers(camera.width_px, camera.height_px).reshape(-1, 2)
    _, directions, valid = pixel_rays(camera, np.eye(4), pixels + np.asarray(offset))
    directions.setflags(write=False)
    valid.setflags(write=False)
    return directions, valid


def render(
    camera: Camera, world_from_cam: np.ndarray, seed: int, supersample: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Linear radiance [H, W, 3] float32 and centre-ray distance [H, W] float64 (metres).

    Rays are exactly :func:`pixel_rays` of the pixel centres (plus, with ``supersample`` > 1, a
    regular sub-pixel grid that is averaged: anti-aliasing, still deterministic). The distance
    is that of the pixel-centre ray. Fisheye pixels outside the image circle are 0 / inf.
    """
    height, width = camera.height_px, camera.width_px
    pose = np.asarray(world_from_cam, dtype=np.float64)
    rotation_t = pose[:3, :3].T
    origin = pose[:3, 3]
    directions_cam, valid = _camera_rays(camera, (0.0, 0.0))
    directions = directions_cam[valid] @ rotation_t
    radiance_c, distance = trace(np.broadcast_to(origin, directions.shape), directions, seed)
    radiance = np.zeros((height * width, 3), dtype=np.float64)
    depth = np.full(height * width, np.inf)
    depth[valid] = distance
    if supersample <= 1:
        radiance[valid] = radiance_c
    else:
        for offset in supersample_offsets(supersample):
            sample_cam, sample_ok = _camera_rays(camera, (float(offset[0]), float(offset[1])))
            ok = valid & sample_ok
            directions = sample_cam[ok] @ rotation_t
            sample, _ = trace(np.broadcast_to(origin, directions.shape), directions, seed)
            radiance[ok] += sample
        radiance /= supersample * supersample
    return radiance.reshape(height, width, 3).astype(np.float32), depth.reshape(height, width)


def srgb_from_linear(linear: np.ndarray) -> np.ndarray:
    """sRGB-encoded uint8 from linear values (clipped to [0, 1] first)."""
    x = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0)
    encoded = np.where(x <= _SRGB_THRESHOLD, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)
    return np.round(encoded * 255.0).astype(np.uint8)
