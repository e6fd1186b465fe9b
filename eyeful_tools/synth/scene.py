"""An analytic, ray-traced indoor scene (numpy only): the ground truth of the synthetic capture.

World: the capture's own frame, **y-up, metres**, floor at y = 0. A 5 m x 2.8 m x 7 m room with
procedurally textured walls, floor and ceiling (detail from ~2 m down to ~5 cm), a pedestal with a
ball on it, a cabinet, a big ball in a corner, an emissive lamp ball, two ceiling light panels
and a window. Shading is Lambertian (view independent, no shadows) from three point lights, so a
NeRF can represent it exactly; emitters are far brighter than 1.0 (linear radiance).

:func:`trace` is the single source of truth for what a ray sees: the renderer and the tests call
the same function, so ``origin + distance * direction`` is the exact surface point of a pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

ROOM_MIN = np.array([-2.5, 0.0, -3.5])
ROOM_MAX = np.array([2.5, 2.8, 3.5])

# Spheres: centre (m), radius (m). Index 2 is the emissive lamp.
SPHERES = (
    ((0.0, 0.95, 0.0), 0.25),  # ball on the pedestal
    ((1.85, 0.5, 2.75), 0.5),  # big ball in a corner
    ((-1.8, 1.65, -2.7), 0.16),  # lamp (emissive)
)
LAMP_SPHERE = 2
# Axis-aligned boxes: min corner, max corner (m).
BOXES = (
    ((-0.3, 0.0, -0.3), (0.3, 0.7, 0.3)),  # pedestal
    ((-2.5, 0.0, 0.4), (-1.7, 0.9, 1.6)),  # cabinet against the -x wall
)
# Ceiling light panels (x range, z range) and the window on the +z wall (x range, y range).
PANELS = (((-1.2, -0.4), (-2.2, -1.0)), ((0.5, 1.3), (0.9, 2.1)))
WINDOW = ((-1.0, 0.9), (1.0, 2.2))
# Point lights standing in for the emitters: position (m), intensity (per RGB), and whether it
# emits downwards only (cosine lobe, like a ceiling panel) so the ceiling is not blown out.
LIGHTS = (
    ((-0.8, 2.78, -1.6), (3.4, 3.2, 2.9), True),
    ((0.9, 2.78, 1.5), (3.3, 3.2, 3.0), True),
    ((-1.8, 1.65, -2.7), (0.8, 0.6, 0.4), False),
)
AMBIENT = 0.22

PANEL_RADIANCE = (9.0, 8.6, 7.8)
LAMP_RADIANCE = (7.5, 5.5, 3.0)

# surface ids (room faces first, in axis order)
_WALL_NEG_X, _WALL_POS_X, _FLOOR, _CEILING, _WALL_NEG_Z, _WALL_POS_Z = range(6)
_SPHERE0 = 6
_BOX0 = _SPHERE0 + len(SPHERES)


@dataclass(frozen=True)
class Look:
    """Per-seed appearance: colours and texture phases. Geometry does not depend on the seed."""

    wall_colors: np.ndarray  # [4, 3] linear albedo of the four walls
    floor_colors: np.ndarray  # [2, 3] the two tile colours
    object_colors: np.ndarray  # [4, 3] balls (2) and boxes (2)
    salt: int  # hash salt for value noise
    phases: np.ndarray  # [8] sine phases


@lru_cache(maxsize=16)
def look_for_seed(seed: int) -> Look:
    """Deterministic appearance for ``seed`` (PCG64 is stable across platforms)."""
    rng = np.random.default_rng([seed, 3])
    base_walls = np.array(
        [[0.62, 0.55, 0.45], [0.45, 0.55, 0.62], [0.58, 0.6, 0.5], [0.6, 0.48, 0.5]]
    )
    return Look(
        wall_colors=np.clip(base_walls + rng.uniform(-0.12, 0.12, (4, 3)), 0.05, 0.9),
        floor_colors=np.clip(
            np.array([[0.5, 0.36, 0.22], [0.3, 0.2, 0.12]]) + rng.uniform(-0.08, 0.08, (2, 3)),
            0.03,
            0.9,
        ),
        object_colors=rng.uniform(0.15, 0.85, (4, 3)),
        salt=int(rng.integers(1, 2**31 - 1)),
        phases=rng.uniform(0.0, 2.0 * math.pi, 8),
    )


# ---------------------------------------------------------------------------------------------
# Procedural textures (vectorised; coordinates in metres).


def _hash01(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer lattice point."""
    h = ix.astype(np.int64).view(np.uint64) * np.uint64(0x9E3779B185EBCA87)
    h ^= iy.astype(np.int64).view(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
    h ^= np.uint64(salt)
    h ^= h >> np.uint64(29)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(32)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def value_noise(u: np.ndarray, v: np.ndarray, frequency: float, salt: int) -> np.ndarray:
    """Smooth value noise in [0, 1) with ``frequency`` lattice cells per metre."""
    x = u * frequency
    y = v * frequency
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx = x - x0
    fy = y - y0
    sx = fx * fx * (3.0 - 2.0 * fx)
    sy = fy * fy * (3.0 - 2.0 * fy)
    ix = x0.astype(np.int64)
    iy = y0.astype(np.int64)
    a = _hash01(ix, iy, salt)
    b = _hash01(ix + 1, iy, salt)
    c = _hash01(ix, iy + 1, salt)
    d = _hash01(ix + 1, iy + 1, salt)
    return (a + (b - a) * sx) + ((c + (d - c) * sx) - (a + (b - a) * sx)) * sy


def fractal_noise(u: np.ndarray, v: np.ndarray, salt: int, base: float = 0.6) -> np.ndarray:
    """Four octaves of value noise (0.6 to ~10 cells per metre), roughly in [0, 1]."""
    total = np.zeros_like(u)
    amplitude = 0.5
    frequency = base
    for octave in range(4):
        total += amplitude * value_noise(u, v, frequency, salt + 101 * octave)
        amplitude *= 0.5
        frequency *= 2.7
    return total / 0.9375


def _room_albedo(face: int, point: np.ndarray, look: Look) -> np.ndarray:
    """Albedo [N, 3] on one face of the room at ``point`` [N, 3]."""
    x, y, z = point[:, 0], point[:, 1], point[:, 2]
    if face in (_FLOOR, _CEILING):
        u, v = x, z
    elif face in (_WALL_NEG_X, _WALL_POS_X):
        u, v = z, y
    else:
        u, v = x, y
    noise = fractal_noise(u, v, look.salt + 17 * face)
    if face == _FLOOR:
        tile = (np.floor(x / 0.5) + np.floor(z / 0.5)).astype(np.int64) % 2
        color = look.floor_colors[tile]
        grain = 0.5 + 0.5 * np.sin(40.0 * (z + 0.08 * np.sin(3.0 * x + look.phases[0])))
        color = color * (0.75 + 0.35 * noise + 0.1 * grain)[:, None]
        grout = (np.abs(x / 0.5 - np.round(x / 0.5)) < 0.03) | (
            np.abs(z / 0.5 - np.round(z / 0.5)) < 0.03
        )
        return np.where(grout[:, None], 0.08, color)
    if face == _CEILING:
        # 0.6 m acoustic tiles with dark seams and a fine speckle
        speckle = value_noise(u, v, 22.0, look.salt + 555)
        seam = (np.abs(x / 0.6 - np.round(x / 0.6)) < 0.02) | (
            np.abs(z / 0.6 - np.round(z / 0.6)) < 0.02
        )
        grey = np.where(seam, 0.3, 0.55 + 0.35 * (noise - 0.5) + 0.18 * speckle)
        return grey[:, None] * np.array([0.95, 0.95, 0.92])
    wall = {_WALL_NEG_X: 0, _WALL_POS_X: 1, _WALL_NEG_Z: 2, _WALL_POS_Z: 3}[face]
    # wallpaper: large blotches (fractal noise) and a small diamond motif
    motif = np.abs(np.sin(2.0 * math.pi * (u + y) / 0.3) * np.sin(2.0 * math.pi * (u - y) / 0.3))
    color = look.wall_colors[wall] * (0.85 + 0.9 * (noise - 0.5) + 0.22 * (motif - 0.5))[:, None]
    # wainscot band with vertical stripes below 0.9 m, a dark skirting board below 0.1 m
    stripes = 0.5 + 0.5 * np.sin(2.0 * math.pi * 4.0 * u + look.phases[1 + wall])
    band = (y < 0.9)[:, None]
    color = np.where(band, color * (0.55 + 0.3 * stripes)[:, None] + 0.05, color)
    color = np.where((y < 0.1)[:, None], 0.06, color)
    # posters: framed colourful rectangles with fine structure
    poster = (np.abs(u - 0.8 * math.cos(look.phases[5] + wall)) < 0.45) & (np.abs(y - 1.6) < 0.35)
    ring = np.sin(
        2.0 * math.pi * 3.5 * np.hypot(u - 0.8 * math.cos(look.phases[5] + wall), y - 1.6)
    )
    poster_color = np.stack(
        [0.5 + 0.4 * ring, 0.5 + 0.4 * np.sin(9.0 * u + 5.0 * y), 0.45 + 0.4 * noise], axis=1
    )
    return np.where(poster[:, None], np.clip(poster_color, 0.02, 0.95), color)


def _sphere_albedo(index: int, normal: np.ndarray, look: Look) -> np.ndarray:
    latitude = np.arcsin(np.clip(normal[:, 1], -1.0, 1.0))
    longitude = np.arctan2(normal[:, 0], normal[:, 2])
    stripes = 0.5 + 0.5 * np.sin(8.0 * longitude + look.phases[6])
    bands = 0.5 + 0.5 * np.sin(10.0 * latitude)
    noise = fractal_noise(longitude, latitude, look.salt + 9000 + index, base=1.5)
    color = look.object_colors[index] * (0.45 + 0.35 * stripes * bands + 0.35 * noise)[:, None]
    return np.clip(color, 0.02, 0.95)


def _box_albedo(index: int, point: np.ndarray, normal: np.ndarray, look: Look) -> np.ndarray:
    # planar coordinates on whichever face was hit
    axis = np.argmax(np.abs(normal), axis=1)
    u = np.where(axis == 0, point[:, 2], point[:, 0])
    v = np.where(axis == 1, point[:, 2], point[:, 1])
    noise = fractal_noise(u, v, look.salt + 7000 + index, base=2.0)
    rings = 0.5 + 0.5 * np.sin(30.0 * (u + 0.15 * noise) + look.phases[7])
    color = look.object_colors[2 + index] * (0.55 + 0.3 * rings + 0.25 * noise)[:, None]
    edge = (np.abs(u - np.round(u * 5) / 5) < 0.006) | (np.abs(v - np.round(v * 5) / 5) < 0.006)
    return np.clip(np.where(edge[:, None], color * 0.4, color), 0.02, 0.95)


# ---------------------------------------------------------------------------------------------
# Ray casting.


def _intersect(
    origins: np.ndarray, directions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit: (distance [N], surface id [N], normal [N, 3]) for rays inside the room.

    Works on contiguous per-axis 1D arrays (much faster than strided [N, 3] columns).
    """
    o = [np.ascontiguousarray(origins[:, k]) for k in range(3)]
    d = [np.ascontiguousarray(directions[:, k]) for k in range(3)]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = [1.0 / d[k] for k in range(3)]
        # the room is convex and contains every origin: exit through the nearest face ahead
        t_room = [
            np.where(d[k] > 0, (ROOM_MAX[k] - o[k]) * inv[k], (ROOM_MIN[k] - o[k]) * inv[k])
            for k in range(3)
        ]
    t_room = [np.where(np.isfinite(t), t, np.inf) for t in t_room]
    distance = np.minimum(np.minimum(t_room[0], t_room[1]), t_room[2])
    axis = np.where(t_room[0] == distance, 0, np.where(t_room[1] == distance, 1, 2))
    positive = np.choose(axis, d) > 0
    surface = 2 * axis + positive.astype(np.int64)
    box_axis = np.zeros(distance.shape, dtype=np.int64)  # hit axis for box surfaces

    for index, (center, radius) in enumerate(SPHERES):
        oc = [o[k] - center[k] for k in range(3)]
        b = oc[0] * d[0] + oc[1] * d[1] + oc[2] * d[2]
        c = oc[0] * oc[0] + oc[1] * oc[1] + oc[2] * oc[2] - radius * radius
        disc = b * b - c
        root = np.sqrt(np.maximum(disc, 0.0))
        t = -b - root
        t = np.where(t > 1e-9, t, -b + root)
        hit = (disc >= 0) & (t > 1e-9) & (t < distance)
        distance = np.where(hit, t, distance)
        surface = np.where(hit, _SPHERE0 + index, surface)

    for index, (low, high) in enumerate(BOXES):
        t_near = np.full(distance.shape, -np.inf)
        t_far = np.full(distance.shape, np.inf)
        near_axis = np.zeros(distance.shape, dtype=np.int64)
        with np.errstate(divide="ignore", invalid="ignore"):
            for k in range(3):
                t1 = (low[k] - o[k]) * inv[k]
                t2 = (high[k] - o[k]) * inv[k]
                lo = np.where(np.isnan(t1), -np.inf, np.minimum(t1, t2))
                hi = np.where(np.isnan(t2), np.inf, np.maximum(t1, t2))
                later = lo > t_near
                near_axis = np.where(later, k, near_axis)
                t_near = np.where(later, lo, t_near)
                t_far = np.minimum(t_far, hi)
        hit = (t_near <= t_far) & (t_near > 1e-9) & (t_near < distance)
        distance = np.where(hit, t_near, distance)
        surface = np.where(hit, _BOX0 + index, surface)
        box_axis = np.where(hit, near_axis, box_axis)

    normal = np.zeros_like(origins)
    rows = np.arange(distance.shape[0])
    room = surface < _SPHERE0
    normal[rows[room], axis[room]] = np.where(positive[room], -1.0, 1.0)
    for index, (center, radius) in enumerate(SPHERES):
        sel = surface == _SPHERE0 + index
        if np.any(sel):
            point = origins[sel] + distance[sel, None] * directions[sel]
            normal[sel] = (point - np.asarray(center)) / radius
    boxes = surface >= _BOX0
    if np.any(boxes):
        hit_axis = box_axis[boxes]
        normal[rows[boxes], hit_axis] = -np.sign(directions[rows[boxes], hit_axis])
    return distance, surface, normal


def _shade(point: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Irradiance-like factor [N, 3]: ambient + point lights (Lambert, inverse square)."""
    total = np.full((point.shape[0], 3), AMBIENT)
    for position, intensity, downwards in LIGHTS:
        to_light = np.asarray(position) - point
        d2 = np.maximum(np.einsum("ij,ij->i", to_light, to_light), 0.04)
        cosine = np.maximum(np.einsum("ij,ij->i", normal, to_light), 0.0) / np.sqrt(d2)
        if downwards:
            cosine = cosine * np.maximum(to_light[:, 1], 0.0) / np.sqrt(d2)
        total += (cosine / d2)[:, None] * np.asarray(intensity)
    return total


def trace(
    origins: np.ndarray, directions: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Cast rays in the y-up world. origins [N, 3] (inside the room), directions [N, 3].

    Returns (radiance [N, 3] float32 linear, distance [N] float64 metres along the *unit*
    direction), so ``origin + distance * direction / |direction|`` is the hit point.
    """
    origins = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
    directions = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
    directions = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    look = look_for_seed(int(seed))
    distance, surface, normal = _intersect(origins, directions)
    point = origins + distance[:, None] * directions
    albedo = np.zeros_like(point)
    emission = np.zeros_like(point)
    for surface_id in np.unique(surface):
        rows = surface == surface_id
        p = point[rows]
        if surface_id < _SPHERE0:
            albedo[rows] = _room_albedo(int(surface_id), p, look)
        elif surface_id < _BOX0:
            albedo[rows] = _sphere_albedo(int(surface_id - _SPHERE0), normal[rows], look)
        else:
            albedo[rows] = _box_albedo(int(surface_id - _BOX0), p, normal[rows], look)
        if surface_id == _CEILING:
            emission[rows] = _panel_emission(p)
        elif surface_id == _WALL_POS_Z:
            emission[rows] = _window_emission(p)
        elif surface_id == _SPHERE0 + LAMP_SPHERE:
            albedo[rows] = 0.0
            emission[rows] = np.asarray(LAMP_RADIANCE) * (0.8 + 0.2 * normal[rows, 1:2] ** 2)
    radiance = albedo * _shade(point, normal) + emission
    # emitters replace the reflected light where they are
    emitting = np.any(emission > 0, axis=1)
    radiance[emitting] = emission[emitting]
    return radiance.astype(np.float32), distance


def _panel_emission(point: np.ndarray) -> np.ndarray:
    out = np.zeros_like(point)
    for (x0, x1), (z0, z1) in PANELS:
        inside = (point[:, 0] > x0) & (point[:, 0] < x1) & (point[:, 2] > z0) & (point[:, 2] < z1)
        # a soft diffuser profile, brightest in the middle
        profile = np.sin(math.pi * (point[:, 0] - x0) / (x1 - x0)) * np.sin(
            math.pi * (point[:, 2] - z0) / (z1 - z0)
        )
        value = (0.55 + 0.45 * np.sqrt(np.clip(profile, 0.0, 1.0)))[:, None]
        out = np.where(inside[:, None], value * np.asarray(PANEL_RADIANCE), out)
    return out


def _window_emission(point: np.ndarray) -> np.ndarray:
    (x0, x1), (y0, y1) = WINDOW
    x, y = point[:, 0], point[:, 1]
    inside = (x > x0) & (x < x1) & (y > y0) & (y < y1)
    # four panes: mullions are not emissive
    mullion = (np.abs(x - (x0 + x1) / 2) < 0.03) | (np.abs(y - (y0 + y1) / 2) < 0.03)
    sky = np.stack([1.6 + 0.9 * (y - y0), 2.2 + 1.0 * (y - y0), 3.4 + 1.2 * (y - y0)], axis=1)
    return np.where((inside & ~mullion)[:, None], sky, 0.0)
