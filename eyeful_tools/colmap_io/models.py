"""COLMAP camera models <-> ours (one table, both directions) and pycolmap rigid transforms."""

from __future__ import annotations

import dataclasses
from enum import Enum

import numpy as np
import pycolmap

from eyeful_tools import cameras
from eyeful_tools.cameras import Camera, CameraModel
from eyeful_tools.errors import InputFormatError, UnsupportedError

# ---------------------------------------------------------------------------------------------
# Camera models: one table, read in both directions.

#: COLMAP model -> (our model, its parameters in our names). ``f`` is fx = fy; ``0`` marks a
#: parameter ours cannot express, which must be zero (FULL_OPENCV's rational denominator k4..k6,
#: THIN_PRISM_FISHEYE's sx1, sy1).
COLMAP_MODELS: dict[str, tuple[CameraModel, tuple[str, ...]]] = {
    "SIMPLE_PINHOLE": (CameraModel.PINHOLE, ("f", "cx", "cy")),
    "PINHOLE": (CameraModel.PINHOLE, ("fx", "fy", "cx", "cy")),
    "SIMPLE_RADIAL": (CameraModel.OPENCV, ("f", "cx", "cy", "k1")),
    "RADIAL": (CameraModel.OPENCV, ("f", "cx", "cy", "k1", "k2")),
    "OPENCV": (CameraModel.OPENCV, ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2")),
    "FULL_OPENCV": (
        CameraModel.OPENCV,
        ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "0", "0", "0"),
    ),
    "OPENCV_FISHEYE": (
        CameraModel.OPENCV_FISHEYE,
        ("fx", "fy", "cx", "cy", "k1", "k2", "k3", "k4"),
    ),
    "SIMPLE_RADIAL_FISHEYE": (CameraModel.OPENCV_FISHEYE, ("f", "cx", "cy", "k1")),
    "RADIAL_FISHEYE": (CameraModel.OPENCV_FISHEYE, ("f", "cx", "cy", "k1", "k2")),
    # equidistant fisheye + tangential (+ thin prism sx1, sy1, which we do not have)
    "THIN_PRISM_FISHEYE": (
        CameraModel.OPENCV_FISHEYE,
        ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "0", "0"),
    ),
}

#: what an export writes for each of our models, most specific first
_EXPORT_CANDIDATES: dict[CameraModel, tuple[str, ...]] = {
    CameraModel.PINHOLE: ("PINHOLE",),
    CameraModel.OPENCV: ("OPENCV", "FULL_OPENCV"),
    CameraModel.OPENCV_FISHEYE: ("OPENCV_FISHEYE", "THIN_PRISM_FISHEYE"),
}


class FisheyeExport(str, Enum):
    """How fisheye cameras with tangential terms (p1, p2) are written."""

    EXACT = "exact"  # THIN_PRISM_FISHEYE (the same projection; few splatting loaders read it)
    OPENCV = "opencv"  # OPENCV_FISHEYE with p1, p2 dropped, as nerfstudio's splatfacto does


def without_fisheye_tangential(camera: Camera, samples: int = 256) -> tuple[Camera, float]:
    """``camera`` with p1 = p2 = 0 and the largest pixel shift that causes in its valid circle.

    The shift is measured on a ``samples`` x ``samples`` grid over the crop circle (or the
    lens's image circle): each pixel's ray under the exact camera, projected by the
    approximation. Cameras that are not fisheye, or have no tangential terms, come back as-is.
    """
    k1, k2, k3, k4, p1, p2 = camera.distortion
    if camera.model is not CameraModel.OPENCV_FISHEYE or (p1 == 0.0 and p2 == 0.0):
        return camera, 0.0
    approximation = dataclasses.replace(camera, distortion=(k1, k2, k3, k4, 0.0, 0.0))
    radius = camera.fisheye_crop_radius_px or cameras.default_fisheye_crop_radius_px(camera)
    u, v = np.meshgrid(
        np.linspace(camera.cx - radius, camera.cx + radius, samples),
        np.linspace(camera.cy - radius, camera.cy + radius, samples),
    )
    inside = (
        (np.hypot(u - camera.cx, v - camera.cy) <= radius)
        & (u >= 0)
        & (u <= camera.width_px)
        & (v >= 0)
        & (v <= camera.height_px)
    )
    pixels = np.stack([u[inside], v[inside]], axis=-1)
    moved = cameras.project(approximation, cameras.unproject(camera, pixels))
    return approximation, float(np.max(np.linalg.norm(moved - pixels, axis=-1), initial=0.0))


def colmap_model_name(camera: Camera) -> str:
    """The COLMAP model that represents ``camera`` exactly; raises UnsupportedError if none."""
    candidates = _EXPORT_CANDIDATES.get(camera.model, ())
    values = camera.distortion_dict() if camera.model is not CameraModel.PINHOLE else {}
    used = {name for name, value in values.items() if value != 0.0}
    for name in candidates:
        if used <= set(COLMAP_MODELS[name][1]):
            return name
    if not candidates:
        raise UnsupportedError(None, f"camera model {camera.model.value} has no COLMAP equivalent")
    widest = candidates[-1]
    extra = sorted(used - set(COLMAP_MODELS[widest][1]))
    has = [name for name in COLMAP_MODELS[widest][1][4:] if name != "0"]
    raise UnsupportedError(
        None,
        f"{camera.model.value} camera with nonzero {', '.join(extra)} has no COLMAP equivalent "
        f"(COLMAP {widest} has {', '.join(has)})",
    )


def colmap_camera_params(camera: Camera) -> tuple[str, list[float]]:
    """(COLMAP model name, parameter vector) for ``camera``; pixel values pass through as-is."""
    name = colmap_model_name(camera)
    values: dict[str, float] = {
        "fx": camera.fx,
        "fy": camera.fy,
        "cx": camera.cx,
        "cy": camera.cy,
        "0": 0.0,
        **camera.distortion_dict(),
    }
    return name, [values[key] for key in COLMAP_MODELS[name][1]]


#: sides at or beyond this are not image sizes but wrapped-around or garbage values
MAX_SIDE_PX = 1 << 31


def camera_from_colmap(colmap_camera: pycolmap.Camera) -> Camera:
    """Our camera for a pycolmap one (at the model's image size); refuses what we cannot model."""
    name = colmap_camera.model.name
    if name not in COLMAP_MODELS:
        supported = ", ".join(COLMAP_MODELS)
        raise UnsupportedError(
            None, f"COLMAP camera {colmap_camera.camera_id} uses {name}; supported: {supported}"
        )
    model, names = COLMAP_MODELS[name]
    params = [float(v) for v in colmap_camera.params]
    if len(params) != len(names):
        raise InputFormatError(
            None, f"COLMAP camera {colmap_camera.camera_id}: {name} needs {len(names)} parameters"
        )
    values = dict(zip(names, params, strict=True))
    colmap_names = [part.strip() for part in colmap_camera.params_info.split(",")]
    inexpressible = [
        colmap_name
        for colmap_name, key, value in zip(colmap_names, names, params, strict=False)
        if key == "0" and value != 0.0
    ]
    if inexpressible:
        raise UnsupportedError(
            None,
            f"COLMAP camera {colmap_camera.camera_id}: {name} with nonzero "
            f"{', '.join(inexpressible)} has no equivalent in our camera models",
        )
    fx = values["fx"] if "fx" in values else values["f"]
    fy = values["fy"] if "fy" in values else values["f"]
    width, height = int(colmap_camera.width), int(colmap_camera.height)
    if not (0 < width < MAX_SIDE_PX and 0 < height < MAX_SIDE_PX):
        # pycolmap keeps sizes unsigned: a negative width in cameras.txt comes back near 2**64
        raise InputFormatError(
            None,
            f"COLMAP camera {colmap_camera.camera_id}: image size {width}x{height} is not"
            " a size (negative in the model file?)",
        )
    return Camera(
        model=model,
        width_px=width,
        height_px=height,
        fx=float(fx),
        fy=float(fy),
        cx=values["cx"],
        cy=values["cy"],
        distortion=cameras.distortion_from_dict(values),
    )


# ---------------------------------------------------------------------------------------------
# Rigid transforms <-> pycolmap.


def rigid3d_from_matrix(a_from_b: np.ndarray) -> pycolmap.Rigid3d:
    """pycolmap ``Rigid3d`` from a 4x4 (or 3x4) rigid matrix."""
    return pycolmap.Rigid3d(np.asarray(a_from_b, dtype=np.float64)[:3, :4])


def matrix_from_rigid3d(a_from_b: pycolmap.Rigid3d) -> np.ndarray:
    """4x4 float64 matrix of a pycolmap ``Rigid3d``."""
    matrix = np.eye(4)
    matrix[:3, :4] = a_from_b.matrix()
    return matrix
