"""Agisoft Metashape ``cameras.xml`` (with multi-camera rigs) -> canonical Scene.

Facts: ``shared/reference/metashape.md``. The pose math, in the names used below:

* ``<camera><transform>``: ``internal_from_cam`` (4x4 row-major, OpenCV camera axes, chunk-internal
  units).
* Rig slaves carry no transform; their sensor holds ``master_from_slave`` = ``[R_s | l_s]``
  (``<rotation>``, ``<location>``; absent means identity / zero, in internal units), so
  ``internal_from_slave = internal_from_master @ master_from_slave`` (Meta's ``metashape_to_krt``).
* The similarity ``world_from_internal = [s * Rc | tc]`` comes from the camera's component
  ``<transform>``, else the chunk ``<transform>``, else identity. The rigid pose in world units
  (metres for EyefulTower) is ``R_w = Rc @ Ri``, ``t_w = s * Rc @ ti + tc``. nerfstudio divides by
  the scale instead (positions come out in internal units); we do not.

Intrinsics (Appendix C of the Metashape manual): ``fx = f + b1``, ``fy = f``, principal point
``(W/2 + cx, H/2 + cy)`` in corner-origin pixels, radial ``k1..k4`` one to one, tangential swapped
(OpenCV ``p1`` = Metashape ``P2``, OpenCV ``p2`` = Metashape ``P1``). ``b2`` (skew), ``p3``,
``p4`` have no slot in nerfstudio's models and are reported when non-zero. The adjusted
calibration wins over the initial one.

Safety: lxml with entity resolution, DTD loading and network access off; a document type
declaration is refused outright (real exports never have one).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from lxml import etree

from eyeful_tools.cameras import (
    Camera,
    CameraModel,
    Frame,
    Scene,
    WorldUp,
    common_camera_model,
    default_fisheye_crop_radius_px,
    is_rotation,
)
from eyeful_tools.errors import InputFormatError, MissingFileError, UnsupportedError
from eyeful_tools.imageio import CAMERA_FILE_SUFFIXES

log = logging.getLogger(__name__)

SENSOR_MODELS = {
    "frame": CameraModel.OPENCV,
    "fisheye": CameraModel.OPENCV_FISHEYE,  # Metashape's legacy name of the equidistant model
    "equidistant_fisheye": CameraModel.OPENCV_FISHEYE,
}
UNSUPPORTED_SENSORS = {
    "equisolid_fisheye": "its equisolid projection is not an OPENCV_FISHEYE (equidistant) model; "
    "re-calibrate as 'fisheye' in Metashape or undistort the images",
    "spherical": "stitched equirectangular images are not supported yet",
    "cylindrical": "cylindrical projection has no nerfstudio camera model",
    "rpc": "RPC (satellite) sensors have no nerfstudio camera model",
}


def label_stem(label: str) -> str:
    """The image file stem a Metashape camera label names (labels may carry folders or an
    extension; unlike nerfstudio we never cut at the first dot)."""
    name = label.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, suffix = name.rpartition(".")
    return stem if dot and "." + suffix.lower() in CAMERA_FILE_SUFFIXES else name


@dataclass
class MetashapeReport:
    """What the reader skipped, by camera label, and why."""

    cameras: int = 0
    posed: int = 0
    rig_slaves_posed: int = 0
    disabled: list[str] = field(default_factory=list)
    no_pose: list[str] = field(default_factory=list)
    no_calibration: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MetashapeDocument:
    scene: Scene
    report: MetashapeReport


@dataclass(frozen=True)
class _Sensor:
    id: str
    label: str
    type: str
    camera: Camera | None  # None: no usable calibration
    master_id: str | None
    master_from_slave: np.ndarray  # [4, 4] internal units
    line: int | None


@dataclass(frozen=True)
class _Similarity:
    """``world_from_internal``: rotation, translation, scale."""

    rotation: np.ndarray  # [3, 3]
    translation: np.ndarray  # [3]
    scale: float


IDENTITY = _Similarity(np.eye(3), np.zeros(3), 1.0)


def read_metashape(path: str | Path, rig: bool = True, crop_fraction: float | None = None) -> Scene:
    """Posed frames of ``cameras.xml``, world after the chunk/component transform (metres).

    ``image_path`` of each frame is the label's file stem; ``rig`` composes slave cameras with
    their master's per-frame transform (off: only cameras with their own transform, like
    nerfstudio).
    """
    return parse_metashape(path, rig=rig, crop_fraction=crop_fraction).scene


def parse_metashape(
    path: str | Path, rig: bool = True, crop_fraction: float | None = None
) -> MetashapeDocument:
    """Like :func:`read_metashape`, plus a report of skipped cameras and dropped terms."""
    path = Path(path)
    chunk = _load_chunk(path)
    report = MetashapeReport()
    sensors = _parse_sensors(path, chunk, report, crop_fraction)
    chunk_transform = _similarity(path, chunk.find("transform"))
    components = _component_similarities(path, chunk)
    cameras_el = chunk.find("cameras")
    if cameras_el is None:
        raise InputFormatError(path, "no <cameras> in the first <chunk>")

    camera_elements = list(cameras_el.iter("camera"))
    _refuse_repeated_ids(path, camera_elements)
    own_index, internal_from_cam = _camera_transforms(path, camera_elements)
    posed = _select_posed(path, camera_elements, sensors, components, own_index, rig, report)

    # The poses are composed for all posed cameras at once.
    offsets = np.stack([np.eye(4), *(s.master_from_slave for s in sensors.values())])  # [S+1,4,4]
    similarities = [chunk_transform, *components.values()]
    world_from_cam = _world_from_cam(
        internal_from_cam[posed.base_index] @ offsets[posed.offset_index],
        [similarities[i] for i in posed.similarity_index],
    )
    _refuse_non_finite(path, world_from_cam, [label for label, _, _ in posed.records])
    frames = [
        Frame(
            image_path=label_stem(label),
            camera=sensor.camera,  # type: ignore[arg-type]
            world_from_cam=pose,
            camera_id=sensor.id,
            rig_position_id=position,
            sensor_id=sensor.id,
        )
        for (label, sensor, position), pose in zip(posed.records, world_from_cam, strict=True)
    ]
    report.posed = len(frames)
    _log_report(path, report)
    models = {frame.camera.model for frame in frames}
    if common_camera_model(models) is None:
        raise InputFormatError(
            path, f"mixed sensor models ({', '.join(sorted(m.value for m in models))})"
        )
    return MetashapeDocument(Scene(frames=tuple(frames), world_up=WorldUp.Y_UP), report)


def _parse_sensors(
    path: Path, chunk: etree._Element, report: MetashapeReport, crop_fraction: float | None
) -> dict[str, _Sensor]:
    """Every ``<sensor>`` of the chunk by id, in document order (the order fixes the rig-offset
    index); a repeated id is refused because cameras could not say which one they mean."""
    sensors_el = chunk.find("sensors")
    if sensors_el is None:
        raise InputFormatError(path, "no <sensors> in the first <chunk>")
    sensors: dict[str, _Sensor] = {}
    for element in sensors_el.iter("sensor"):
        parsed = _parse_sensor(path, element, report, crop_fraction)
        if parsed.id in sensors:
            raise InputFormatError(
                path,
                f"line {element.sourceline}: sensor id {parsed.id!r} repeats "
                f"(first at line {sensors[parsed.id].line})",
            )
        sensors[parsed.id] = parsed
    return sensors


def _component_similarities(path: Path, chunk: etree._Element) -> dict[str | None, _Similarity]:
    """``world_from_internal`` of each ``<component>`` that has a transform, by component id:
    a camera in such a component uses it instead of the chunk transform."""
    components: dict[str | None, _Similarity] = {}
    components_el = chunk.find("components")
    if components_el is not None:
        for component in components_el.iter("component"):
            transform = component.find("transform")
            if transform is not None:
                components[component.get("id")] = _similarity(path, transform)
    return components


@dataclass
class _Posed:
    """The posed cameras, one entry per camera in every list, as indices into the stacked
    transforms so the poses can be composed in one vectorised step."""

    # label, sensor, rig position id
    records: list[tuple[str, _Sensor, int | None]] = field(default_factory=list)
    base_index: list[int] = field(default_factory=list)  # into internal_from_cam
    offset_index: list[int] = field(default_factory=list)  # 0: own pose, else 1 + sensor index
    similarity_index: list[int] = field(default_factory=list)  # 0: chunk, else 1 + component


def _select_posed(
    path: Path,
    camera_elements: list[etree._Element],
    sensors: dict[str, _Sensor],
    components: dict[str | None, _Similarity],
    own_index: dict[str, int],
    rig: bool,
    report: MetashapeReport,
) -> _Posed:
    """Decide for each ``<camera>`` whether and how it gets a pose (its own transform, or its rig
    master's composed with its sensor offset), reporting the ones skipped and why."""
    rig_master_sensors = {s.master_id for s in sensors.values() if s.master_id is not None}
    offset_of = {sensor_id: i for i, sensor_id in enumerate(sensors)}
    similarity_of = {key: i + 1 for i, key in enumerate(components)}
    posed = _Posed()
    for element in camera_elements:
        report.cameras += 1
        camera_id = element.get("id", "")
        label = element.get("label") or camera_id
        sensor = _camera_sensor(path, element, label, sensors)
        if not _enabled(element):
            report.disabled.append(label)
            continue
        if sensor.camera is None:
            report.no_calibration.append(label)
            continue
        master_camera = element.get("master_id")
        if camera_id in own_index:
            posed.base_index.append(own_index[camera_id])
            posed.offset_index.append(0)
        elif rig and master_camera is not None and master_camera in own_index:
            posed.base_index.append(own_index[master_camera])
            posed.offset_index.append(offset_of[sensor.id] + 1)
            report.rig_slaves_posed += 1
        else:
            report.no_pose.append(label)
            continue
        posed.similarity_index.append(similarity_of.get(element.get("component_id"), 0))
        position = master_camera or camera_id
        in_rig = master_camera is not None or sensor.id in rig_master_sensors
        posed.records.append(
            (label, sensor, int(position) if in_rig and _is_int(position) else None)
        )
    return posed


def _camera_sensor(
    path: Path, element: etree._Element, label: str, sensors: dict[str, _Sensor]
) -> _Sensor:
    """The sensor a ``<camera>`` names; a missing or unconvertible one fails the whole document
    (even for disabled cameras) rather than silently dropping part of a rig."""
    sensor_id = element.get("sensor_id")
    sensor = sensors.get(sensor_id or "")
    if sensor is None:
        raise InputFormatError(
            path,
            f"line {element.sourceline}: camera {label!r} refers to missing sensor {sensor_id!r}",
        )
    if sensor.type in UNSUPPORTED_SENSORS:
        raise UnsupportedError(
            path,
            f"sensor {sensor.id} ({sensor.label}) has type {sensor.type!r}, which eyeful does "
            f"not convert: {UNSUPPORTED_SENSORS[sensor.type]}",
        )
    return sensor


def _log_report(path: Path, report: MetashapeReport) -> None:
    """Log dropped calibration terms and skipped cameras, so a conversion that lost data says so."""
    for warning in report.warnings:
        log.warning("%s: %s", path, warning)
    if report.no_pose or report.disabled or report.no_calibration:
        log.info(
            "%s: skipped %d disabled, %d without pose, %d without calibration",
            path,
            len(report.disabled),
            len(report.no_pose),
            len(report.no_calibration),
        )


# ---------------------------------------------------------------------------------------------
# XML helpers.


def xml_parser() -> etree.XMLParser:
    """lxml with entity resolution, DTD loading and network access off (see the docstring)."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _load_chunk(path: Path) -> etree._Element:
    if not path.is_file():
        raise MissingFileError(path, "cameras.xml not found")
    data = path.read_bytes()
    try:  # from bytes: lxml reports bad encodings in a file as OSError, in bytes as syntax
        tree = etree.fromstring(data, xml_parser()).getroottree()
    except etree.XMLSyntaxError as error:
        line = error.lineno if error.lineno is not None else "?"
        message = (error.msg or str(error)).split(",")[0].strip()
        raise InputFormatError(path, f"malformed XML at line {line}: {message}") from error
    if tree.docinfo.internalDTD is not None or tree.docinfo.doctype:
        raise InputFormatError(
            path, "refusing an XML document type declaration (DTD/entities are not allowed)"
        )
    root = tree.getroot()
    if root.tag != "document":
        raise InputFormatError(path, f"expected a Metashape <document>, found <{root.tag}>")
    chunks = root.findall("chunk")
    if not chunks:
        raise InputFormatError(path, "no <chunk> in the document")
    if len(chunks) > 1:
        log.warning("%s: %d chunks; converting the first one only", path, len(chunks))
    return chunks[0]


def _refuse_repeated_ids(path: Path, elements: list[etree._Element]) -> None:
    """Camera ids key the rig links (``master_id``) and the poses: a repeated or missing one
    would silently give a camera another camera's pose."""
    first_line: dict[str, int | None] = {}
    for element in elements:
        camera_id = element.get("id")
        if camera_id is None:
            raise InputFormatError(path, f"line {element.sourceline}: <camera> without id")
        if camera_id in first_line:
            raise InputFormatError(
                path,
                f"line {element.sourceline}: camera id {camera_id!r} repeats "
                f"(first at line {first_line[camera_id]})",
            )
        first_line[camera_id] = element.sourceline


def _refuse_non_finite(path: Path, world_from_cam: np.ndarray, labels: list[str]) -> None:
    """Finite inputs can still overflow once composed (``<scale>1e308</scale>`` times a
    translation): name the first camera whose pose did. ``world_from_cam``: [N, 4, 4]."""
    finite = np.isfinite(world_from_cam).all(axis=(1, 2))
    if not finite.all():
        label = labels[int(np.argmin(finite))]
        raise InputFormatError(
            path,
            f"camera {label!r}: pose overflows once the chunk/component transform is applied "
            "(is <scale> or <translation> absurdly large?)",
        )


def _camera_transforms(
    path: Path, elements: list[etree._Element]
) -> tuple[dict[str, int], np.ndarray]:
    """Cameras' own ``<transform>`` (``internal_from_cam``): index by camera id, [M, 4, 4]."""
    own_index: dict[str, int] = {}
    matrices: list[np.ndarray] = []
    for element in elements:
        transform = element.find("transform")
        if transform is not None:
            own_index[element.get("id", "")] = len(matrices)
            matrices.append(
                _numbers(path, transform, 16, f"camera {element.get('label')!r} <transform>")
            )
    stacked = np.array(matrices, dtype=np.float64).reshape(-1, 4, 4)
    rotations = stacked[:, :3, :3]
    orthogonality = np.abs(rotations @ np.swapaxes(rotations, 1, 2) - np.eye(3)).max(axis=(1, 2))
    bad = (
        (orthogonality > 1e-5)
        | (np.abs(np.linalg.det(rotations) - 1.0) > 1e-5)
        | (np.abs(stacked[:, 3] - [0.0, 0.0, 0.0, 1.0]).max(axis=1) > 1e-9)
    )
    if np.any(bad):
        index = int(np.argmax(bad))
        element = next(e for e in elements if own_index.get(e.get("id", "")) == index)
        raise InputFormatError(
            path,
            f"line {element.find('transform').sourceline}: camera {element.get('label')!r} "
            "<transform> is not a rigid transform",
        )
    return own_index, stacked


def _world_from_cam(internal_from_cam: np.ndarray, similarities: list[_Similarity]) -> np.ndarray:
    """Rigid poses in world units: ``R_w = Rc @ Ri``, ``t_w = s * Rc @ ti + tc``. [N, 4, 4]"""
    count = internal_from_cam.shape[0]
    world = np.zeros((count, 4, 4))
    world[:, 3, 3] = 1.0
    if count == 0:
        return world
    rotation = np.stack([s.rotation for s in similarities])  # [N, 3, 3]
    translation = np.stack([s.translation for s in similarities])  # [N, 3]
    scale = np.array([s.scale for s in similarities])  # [N]
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is refused by the caller
        world[:, :3, :3] = rotation @ internal_from_cam[:, :3, :3]
        world[:, :3, 3] = (
            scale[:, None] * np.einsum("nij,nj->ni", rotation, internal_from_cam[:, :3, 3])
            + translation
        )
    return world


def _numbers(path: Path, element: etree._Element, count: int, what: str) -> np.ndarray:
    text = (element.text or "").split()
    try:
        values = np.array([float(v) for v in text], dtype=np.float64)
    except ValueError as error:
        raise InputFormatError(
            path, f"line {element.sourceline}: {what} has a non-number ({error})"
        ) from error
    if values.size != count:
        raise InputFormatError(
            path, f"line {element.sourceline}: {what} needs {count} numbers, got {values.size}"
        )
    if not np.all(np.isfinite(values)):
        raise InputFormatError(path, f"line {element.sourceline}: {what} has a non-finite value")
    return values


def _number(path: Path, parent: etree._Element, tag: str, default: float = 0.0) -> float:
    element = parent.find(tag)
    if element is None:
        return default
    return float(_numbers(path, element, 1, f"<{tag}>")[0])


def _enabled(element: etree._Element) -> bool:
    """False when the camera, or a ``<group>`` around it, has ``enabled="false"``."""
    if element.get("enabled", "true").lower() in ("false", "0"):
        return False
    node = element.getparent()
    while node is not None and node.tag == "group":
        if (node.get("enabled") or "true").lower() in ("false", "0"):
            return False
        node = node.getparent()
    return True


def _is_int(text: str | None) -> bool:
    return text is not None and text.lstrip("-").isdigit()


def _similarity(path: Path, transform: etree._Element | None) -> _Similarity:
    if transform is None:
        return IDENTITY
    rotation_el = transform.find("rotation")
    translation_el = transform.find("translation")
    rotation = (
        np.eye(3)
        if rotation_el is None
        else _numbers(path, rotation_el, 9, "<transform><rotation>").reshape(3, 3)
    )
    translation = (
        np.zeros(3)
        if translation_el is None
        else _numbers(path, translation_el, 3, "<transform><translation>")
    )
    scale = _number(path, transform, "scale", 1.0)
    if not is_rotation(rotation, atol=1e-5):
        raise InputFormatError(
            path, f"line {transform.sourceline}: <transform><rotation> is not a rotation"
        )
    if not scale > 0:
        raise InputFormatError(path, f"line {transform.sourceline}: <scale> must be positive")
    return _Similarity(rotation, translation, scale)


def _parse_sensor(
    path: Path, element: etree._Element, report: MetashapeReport, crop_fraction: float | None
) -> _Sensor:
    sensor_id = element.get("id")
    if sensor_id is None:
        raise InputFormatError(path, f"line {element.sourceline}: <sensor> without id")
    label = element.get("label") or sensor_id
    calibrations = element.findall("calibration")
    chosen = next((c for c in calibrations if c.get("class") == "adjusted"), None)
    if chosen is None:
        chosen = next((c for c in calibrations if c.get("class") == "initial"), None)
    if chosen is None and calibrations:
        chosen = calibrations[0]
    sensor_type = (
        element.get("type") or (chosen.get("type") if chosen is not None else "")
    ).lower()
    if sensor_type not in SENSOR_MODELS and sensor_type not in UNSUPPORTED_SENSORS:
        raise InputFormatError(
            path,
            f"line {element.sourceline}: sensor {sensor_id} has unknown type {sensor_type!r} "
            f"(supported: {', '.join(SENSOR_MODELS)})",
        )
    master_from_slave = np.eye(4)
    rotation_el = element.find("rotation")
    location_el = element.find("location")
    if rotation_el is not None:
        rotation = _numbers(path, rotation_el, 9, f"sensor {sensor_id} <rotation>").reshape(3, 3)
        if not is_rotation(rotation, atol=1e-5):
            raise InputFormatError(
                path,
                f"line {rotation_el.sourceline}: sensor {sensor_id} <rotation> is not a rotation",
            )
        master_from_slave[:3, :3] = rotation
    if location_el is not None:
        master_from_slave[:3, 3] = _numbers(path, location_el, 3, f"sensor {sensor_id} <location>")
    camera = None
    if sensor_type in SENSOR_MODELS and chosen is not None and chosen.find("f") is not None:
        camera = _camera(path, element, chosen, SENSOR_MODELS[sensor_type], report, crop_fraction)
    return _Sensor(
        id=sensor_id,
        label=label,
        type=sensor_type,
        camera=camera,
        master_id=element.get("master_id"),
        master_from_slave=master_from_slave,
        line=element.sourceline,
    )


def _camera(
    path: Path,
    sensor: etree._Element,
    calibration: etree._Element,
    model: CameraModel,
    report: MetashapeReport,
    crop_fraction: float | None,
) -> Camera:
    resolution = calibration.find("resolution")
    if resolution is None:
        resolution = sensor.find("resolution")
    try:
        width = int(resolution.get("width"))  # None: AttributeError or TypeError below
        height = int(resolution.get("height"))
    except (AttributeError, TypeError, ValueError) as error:
        raise InputFormatError(
            path, f"line {sensor.sourceline}: sensor {sensor.get('id')} has no valid <resolution>"
        ) from error
    values = {
        tag: _number(path, calibration, tag)
        for tag in ("f", "cx", "cy", "b1", "b2", "k1", "k2", "k3", "k4", "p1", "p2", "p3", "p4")
    }
    if not values["f"] > 0 or not math.isfinite(values["f"]):
        raise InputFormatError(
            path, f"line {calibration.sourceline}: sensor {sensor.get('id')} has focal f <= 0"
        )
    for tag, why in (("b2", "skew"), ("p3", "tangential p3"), ("p4", "tangential p4")):
        if values[tag] != 0.0:
            report.warnings.append(
                f"sensor {sensor.get('id')}: {why} {tag}={values[tag]:g} has no nerfstudio "
                "parameter (dropped)"
            )
    camera = Camera(
        model=model,
        width_px=width,
        height_px=height,
        fx=values["f"] + values["b1"],
        fy=values["f"],
        cx=width / 2.0 + values["cx"],
        cy=height / 2.0 + values["cy"],
        # Metashape P1/P2 are OpenCV's p2/p1
        distortion=(
            values["k1"],
            values["k2"],
            values["k3"],
            values["k4"],
            values["p2"],
            values["p1"],
        ),
    )
    if model is CameraModel.OPENCV_FISHEYE:
        camera = replace(
            camera, fisheye_crop_radius_px=default_fisheye_crop_radius_px(camera, crop_fraction)
        )
    return camera
