"""Rendering the analytic scene through the canonical camera model.

Every ray comes from :func:`eyeful_tools.cameras.unproject` of the image's own (rescaled) camera
at pixel positions in corner-origin coordinates, so an image rendered here is exactly consistent
with the intrinsics and distortion the capture files claim.
"""

from __future__ import annotations

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


def render(
    camera: Camera, world_from_cam: np.ndarray, seed: int, supersample: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Linear radiance [H, W, 3] float32 and centre-ray distance [H, W] float64 (metres).

    ``supersample`` > 1 averages a regular sub-pixel grid (anti-aliasing, still deterministic);
    the distance is always that of the pixel-centre ray. Invalid fisheye pixels are 0 / inf.
    """
    height, width = camera.height_px, camera.width_px
    centers = cameras.pixel_centers(width, height).reshape(-1, 2)
    origins, directions, valid = pixel_rays(camera, world_from_cam, centers)
    radiance_c, distance = trace(origins[valid], directions[valid], seed)
    radiance = np.zeros((centers.shape[0], 3), dtype=np.float64)
    depth = np.full(centers.shape[0], np.inf)
    depth[valid] = distance
    if supersample <= 1:
        radiance[valid] = radiance_c
    else:
        for offset in supersample_offsets(supersample):
            o, d, ok = pixel_rays(camera, world_from_cam, centers[valid] + offset)
            sample, _ = trace(o, d, seed)
            radiance[valid] += np.where(ok[:, None], sample, 0.0)
        radiance /= supersample * supersample
    return radiance.reshape(height, width, 3).astype(np.float32), depth.reshape(height, width)


def srgb_from_linear(linear: np.ndarray) -> np.ndarray:
    """sRGB-encoded uint8 from linear values (clipped to [0, 1] first)."""
    x = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0)
    encoded = np.where(x <= _SRGB_THRESHOLD, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)
    return np.round(encoded * 255.0).astype(np.uint8)
