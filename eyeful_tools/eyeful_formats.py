"""The EyefulTower files we read, as pydantic models: ``cameras.json`` (KRT) and ``splits.json``.

They document the formats and generate ``schemas/eyeful-cameras.schema.json`` and
``schemas/splits.schema.json``. The readers (:mod:`eyeful_tools.readers.krt`,
:func:`eyeful_tools.split.read_splits`) add the semantic checks a schema cannot express (a rigid
``T``, one distortion model per file) and name the entry in their errors.
Facts: ``shared/reference/eyeful.md`` sections 5 and 6.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Matrix3 = list[list[float]]
Matrix4 = list[list[float]]


class KrtCamera(BaseModel):
    """One image of a capture. ``K`` and ``T`` are stored **column-major**; ``T`` is
    world-to-camera (``cam_from_world``) with OpenCV camera axes in a y-up metric world."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    cameraId: str = Field(description='image path without extension, e.g. "10/10_DSC0001"')
    width: int = Field(gt=0, description="full-resolution width in pixels (usually 5784)")
    height: int = Field(gt=0, description="full-resolution height in pixels (usually 8660)")
    K: Matrix3 = Field(min_length=3, max_length=3, description="3x3 intrinsics, column-major")
    T: Matrix4 = Field(min_length=4, max_length=4, description="4x4 cam_from_world, column-major")
    distortionModel: Literal["RadialAndTangential", "Fisheye"]
    distortion: list[float] = Field(
        default_factory=list,
        description="RadialAndTangential: [k1, k2, p1, p2, k3]; "
        "Fisheye: [k1, k2, k3, k4, t1, t2, p1, p2] (equidistant)",
    )
    projectionModel: Literal["Pinhole", "Fisheye"] | None = None
    frameId: int | None = Field(default=None, description="rig position; shared by its images")
    sensorId: int | str | None = Field(default=None, description="physical camera")
    sensorMasterId: int | str | None = None
    cameraMasterId: int | str | None = None


class KrtFile(BaseModel):
    """``cameras.json``."""

    model_config = ConfigDict(extra="allow")

    KRT: list[KrtCamera] = Field(min_length=1)


class SplitsFile(BaseModel):
    """``splits.json``: cameraIds (no extension); the held-out camera's images are ``test``."""

    model_config = ConfigDict(extra="allow")

    train: list[str] = Field(default_factory=list)
    test: list[str] = Field(default_factory=list)
    val: list[str] = Field(default_factory=list, description="read as test where present")
