"""A tower as a rigid rig: reference camera, constant ``sensor_from_rig``, ``rig_from_world`` per position."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from eyeful_tools import cameras, catalog
from eyeful_tools.cameras import Camera, Frame, natural_key
from eyeful_tools.errors import UnsupportedError

#: default tolerance for "the positions form a rigid rig": radians, and scene units (metres)
RIG_TOLERANCE = 1e-6

# ---------------------------------------------------------------------------------------------
# Rig estimation: a tower is rigid when every camera keeps its pose relative to the master.


def mean_rigid(samples: Sequence[np.ndarray]) -> np.ndarray:
    """Chordal L2 mean of rigid transforms [k, 4, 4]: SVD-projected mean rotation, mean translation."""
    stack = np.asarray(samples, dtype=np.float64)
    u, _, vt = np.linalg.svd(stack[:, :3, :3].sum(axis=0))
    rotation = u @ vt
    if np.linalg.det(rotation) < 0:  # reflection: flip the weakest singular direction
        u[:, -1] = -u[:, -1]
        rotation = u @ vt
    mean = np.eye(4)
    mean[:3, :3] = rotation
    mean[:3, 3] = stack[:, :3, 3].mean(axis=0)
    return mean


class RigMode(str, Enum):
    """How an export uses rig positions."""

    AUTO = "auto"  # a rig when the positions are rigid within tolerance, else one frame per image
    ON = "on"  # always a rig (offsets averaged), error if frames carry no rig positions
    OFF = "off"  # one trivial frame per image


@dataclass(frozen=True)
class RigEstimate:
    """A tower: reference camera, ``sensor_from_rig`` per camera (rig frame = reference camera)
    and ``rig_from_world`` per position, with how far the input deviates from that rigid model."""

    reference_camera: str
    sensor_from_rig: dict[str, np.ndarray]  # camera_id -> [4, 4]
    rig_from_world: dict[int, np.ndarray]  # rig_position_id -> [4, 4]
    max_rotation_error_rad: float
    max_translation_error: float  # camera centres, scene units


def rig_structure_problem(frames: Sequence[Frame]) -> str | None:
    """Why ``frames`` cannot form one rig (``None`` if they can)."""
    if not frames:
        return "no frames"
    if any(f.camera_id is None or f.rig_position_id is None for f in frames):
        return "not every frame has camera_id and rig_position_id"
    intrinsics: dict[str, set[Camera]] = defaultdict(set)
    seen: set[tuple[int, str]] = set()
    for frame in frames:
        intrinsics[frame.camera_id].add(frame.camera)  # type: ignore[index]
        key = (frame.rig_position_id, frame.camera_id)
        if key in seen:
            return f"camera {frame.camera_id} appears twice at rig position {frame.rig_position_id}"
        seen.add(key)  # type: ignore[arg-type]
    varying = sorted((c for c, s in intrinsics.items() if len(s) > 1), key=natural_key)
    if varying:
        return f"camera {varying[0]} has more than one set of intrinsics"
    if len(intrinsics) < 2:
        return "only one camera"
    return None


def choose_reference_camera(frames: Sequence[Frame]) -> str:
    """The master camera: a catalog rig's master when present, else the camera seen at the most
    positions (first in natural order on ties)."""
    counts = Counter(f.camera_id for f in frames if f.camera_id is not None)
    for rig in catalog.RIGS.values():
        if rig.master_sensor in counts:
            return rig.master_sensor
    return min(counts, key=lambda c: (-counts[c], natural_key(c)))


def estimate_rig(frames: Sequence[Frame], reference_camera: str | None = None) -> RigEstimate:
    """Fit a rigid tower to posed frames (see :func:`rig_structure_problem` for requirements).

    ``sensor_from_rig`` of camera c is the mean over positions of ``cam_c_from_world @
    world_from_ref``; ``rig_from_world`` is the reference image's ``cam_from_world`` (or, where
    the reference is missing, derived from the first camera present).
    """
    problem = rig_structure_problem(frames)
    if problem:
        raise UnsupportedError(None, f"cannot build a rig: {problem}")
    reference = reference_camera or choose_reference_camera(frames)
    by_position: dict[int, dict[str, Frame]] = defaultdict(dict)
    for frame in frames:
        by_position[frame.rig_position_id][frame.camera_id] = frame  # type: ignore[index]
    if all(reference not in group for group in by_position.values()):
        raise UnsupportedError(None, f"cannot build a rig: reference camera {reference} never seen")
    samples: dict[str, list[np.ndarray]] = defaultdict(list)
    for group in by_position.values():
        if reference not in group:
            continue
        world_from_ref = group[reference].world_from_cam
        for camera_id, frame in group.items():
            samples[camera_id].append(cameras.cam_from_world(frame.world_from_cam) @ world_from_ref)
    lonely = sorted(
        {f.camera_id for f in frames if f.camera_id is not None} - set(samples),
        key=natural_key,
    )
    if lonely:
        raise UnsupportedError(
            None, f"cannot build a rig: camera {lonely[0]} is never seen with camera {reference}"
        )
    sensor_from_rig = {c: mean_rigid(s) for c, s in samples.items()}
    sensor_from_rig[reference] = np.eye(4)
    rig_from_world: dict[int, np.ndarray] = {}
    worst_rotation = worst_translation = 0.0
    for position, group in by_position.items():
        anchor = reference if reference in group else min(group, key=natural_key)
        rig_from_world[position] = cameras.invert_rigid(sensor_from_rig[anchor]) @ (
            cameras.cam_from_world(group[anchor].world_from_cam)
        )
        for camera_id, frame in group.items():
            predicted = cameras.world_from_cam(
                sensor_from_rig[camera_id] @ rig_from_world[position]
            )
            worst_rotation = max(
                worst_rotation, float(cameras.rotation_angle_rad(predicted, frame.world_from_cam))
            )
            worst_translation = max(
                worst_translation,
                float(np.linalg.norm(predicted[:3, 3] - frame.world_from_cam[:3, 3])),
            )
    return RigEstimate(
        reference, sensor_from_rig, rig_from_world, worst_rotation, worst_translation
    )
