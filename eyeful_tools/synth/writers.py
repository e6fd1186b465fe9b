"""Writers for the synthetic capture's calibration files: KRT ``cameras.json``, Metashape
``cameras.xml`` (with rig constraints), ``splits.json`` and ``ground_truth.json``.

All poses come in as ground truth ``world_from_cam`` (y-up metres, OpenCV axes). The Metashape
file is *derived* from them with the inverse of the composition in
``shared/reference/metashape.md`` section 2 (see ``docs/synth.md`` for the formulas), so a
correct reader recovers the ground truth to rounding error. Floats are written with ``repr``
(shortest round-trip form), so files are byte-identical for the same inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eyeful_tools.cameras import Camera, column_major_from_matrix, invert_rigid


@dataclass(frozen=True)
class SynthImage:
    """One image of the capture: which camera, which rig position, where it was."""

    camera_id: str  # folder name, e.g. "13"
    frame_id: int  # rig position index (KRT frameId)
    stem: str  # file stem without extension, e.g. "13_DSC0101"
    world_from_cam: np.ndarray  # [4, 4] ground truth, y-up metres, OpenCV axes

    @property
    def krt_id(self) -> str:
        """KRT ``cameraId`` / splits entry: ``<cam>/<cam>_<NAME>`` without extension."""
        return f"{self.camera_id}/{self.stem}"


@dataclass(frozen=True)
class ChunkTransform:
    """Metashape's internal -> world similarity: world = scale * rotation @ x + translation."""

    rotation: np.ndarray  # [3, 3]
    translation: np.ndarray  # [3] metres
    scale: float  # metres per internal unit

    def internal_from_world_pose(self, world_from_cam: np.ndarray) -> np.ndarray:
        """Camera -> internal ``<transform>`` for a rigid world pose (inverse of section 2.2)."""
        pose = np.eye(4)
        pose[:3, :3] = self.rotation.T @ world_from_cam[:3, :3]
        pose[:3, 3] = self.rotation.T @ (world_from_cam[:3, 3] - self.translation) / self.scale
        return pose


def default_chunk_transform() -> ChunkTransform:
    """A fixed, clearly non-trivial chunk transform (so internal units are not metres)."""
    axis = np.array([0.3, 0.8, -0.5])
    axis /= np.linalg.norm(axis)
    angle = 0.7
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)
    return ChunkTransform(rotation, np.array([0.7, -1.2, 2.3]), 0.4)


def _num(value: float) -> str:
    value = float(value)
    return "0" if value == 0.0 else repr(value)


def _nums(values: np.ndarray | Sequence[float]) -> str:
    return " ".join(_num(v) for v in np.asarray(values, dtype=np.float64).ravel())


# ---------------------------------------------------------------------------------------------
# cameras.json (KRT)


def krt_distortion(camera: Camera) -> tuple[str, list[float]]:
    """(distortionModel, distortion list) in the real file's order (eyeful.md section 5)."""
    k1, k2, k3, k4, p1, p2 = camera.distortion
    if camera.is_fisheye:
        return "Fisheye", [k1, k2, k3, k4, 0.0, 0.0, p1, p2]
    if k4 != 0.0:
        raise ValueError("RadialAndTangential has no k4")
    return "RadialAndTangential", [k1, k2, p1, p2, k3]


def krt_document(
    images: Sequence[SynthImage],
    camera: Camera,
    sensor_ids: dict[str, int],
    master_camera: str,
    xml_camera_ids: dict[str, int],
) -> dict:
    """The ``{"KRT": [...]}`` document; ``camera`` is the full-resolution camera."""
    model, distortion = krt_distortion(camera)
    entries = []
    for image in images:
        entries.append(
            {
                "width": camera.width_px,
                "height": camera.height_px,
                "K": column_major_from_matrix(camera.intrinsic_matrix()),
                "distortion": distortion,
                "distortionModel": model,
                "projectionModel": "Fisheye" if camera.is_fisheye else "Pinhole",
                "cameraId": image.krt_id,
                "sensorId": sensor_ids[image.camera_id],
                "sensorMasterId": sensor_ids[master_camera],
                "cameraMasterId": xml_camera_ids[f"{master_camera}@{image.frame_id}"],
                "frameId": image.frame_id,
                "T": column_major_from_matrix(invert_rigid(image.world_from_cam)),
            }
        )
    return {"KRT": entries}


# ---------------------------------------------------------------------------------------------
# cameras.xml (Metashape, rig constraints)


def _calibration_xml(camera: Camera, indent: str) -> list[str]:
    """An ``initial`` (nominal focal only) then the ``adjusted`` calibration, as real exports."""
    kind = "fisheye" if camera.is_fisheye else "frame"
    k1, k2, k3, k4, p1, p2 = camera.distortion
    size = f'<resolution width="{camera.width_px}" height="{camera.height_px}"/>'
    lines = [
        f'{indent}<calibration type="{kind}" class="initial">',
        f"{indent}  {size}",
        f"{indent}  <f>{_num(round(camera.fx * 0.97))}</f>",
        f"{indent}</calibration>",
        f'{indent}<calibration type="{kind}" class="adjusted">',
        f"{indent}  {size}",
        f"{indent}  <f>{_num(camera.fx)}</f>",
        f"{indent}  <cx>{_num(camera.cx - camera.width_px / 2)}</cx>",
        f"{indent}  <cy>{_num(camera.cy - camera.height_px / 2)}</cy>",
        f"{indent}  <k1>{_num(k1)}</k1>",
        f"{indent}  <k2>{_num(k2)}</k2>",
        f"{indent}  <k3>{_num(k3)}</k3>",
    ]
    if camera.is_fisheye:
        lines.append(f"{indent}  <k4>{_num(k4)}</k4>")
    # Metashape's P1 multiplies (r^2 + 2x^2) in x: that is OpenCV's p2, and vice versa
    lines += [
        f"{indent}  <p1>{_num(p2)}</p1>",
        f"{indent}  <p2>{_num(p1)}</p2>",
        f"{indent}</calibration>",
    ]
    return lines


def _transform_xml(chunk: ChunkTransform, indent: str) -> list[str]:
    return [
        f"{indent}<transform>",
        f'{indent}  <rotation locked="false">{_nums(chunk.rotation)}</rotation>',
        f'{indent}  <translation locked="false">{_nums(chunk.translation)}</translation>',
        f'{indent}  <scale locked="true">{_num(chunk.scale)}</scale>',
        f"{indent}</transform>",
    ]


def metashape_document(
    images: Sequence[SynthImage],
    camera: Camera,
    sensor_ids: dict[str, int],
    rig_from_cam: dict[str, np.ndarray],
    master_camera: str,
    xml_camera_ids: dict[str, int],
    chunk: ChunkTransform,
) -> str:
    """``cameras.xml`` text. Slave sensors carry ``master_cam_from_slave_cam`` as
    ``<rotation>``/``<location>`` (location in internal units, omitted when zero); only master
    cameras carry a ``<transform>`` (camera -> internal, row-major)."""
    ordered = sorted(
        images, key=lambda image: xml_camera_ids[f"{image.camera_id}@{image.frame_id}"]
    )
    camera_ids_text = " ".join(str(xml_camera_ids[f"{i.camera_id}@{i.frame_id}"]) for i in ordered)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<document version="2.0.0">',
        '  <chunk label="Chunk 1" enabled="true">',
        *_sensors_xml(camera, sensor_ids, rig_from_cam, master_camera, chunk),
        '    <components next_id="1" active_id="0">',
        '      <component id="0" label="Component 1">',
        *_transform_xml(chunk, "        "),
        "        <partition>",
        f"          <camera_ids>{camera_ids_text}</camera_ids>",
        "        </partition>",
        "      </component>",
        "    </components>",
        *_cameras_xml(ordered, sensor_ids, master_camera, xml_camera_ids, chunk),
        *_transform_xml(chunk, "    "),
        '    <reference>LOCAL_CS["Local Coordinates (m)",LOCAL_DATUM["Local Datum",0],'
        'UNIT["metre",1,AUTHORITY["EPSG","9001"]]]</reference>',
        "  </chunk>",
        "</document>",
    ]
    return "\n".join(lines) + "\n"


def _sensors_xml(
    camera: Camera,
    sensor_ids: dict[str, int],
    rig_from_cam: dict[str, np.ndarray],
    master_camera: str,
    chunk: ChunkTransform,
) -> list[str]:
    """The ``<sensors>`` block: one sensor per rig camera, the slaves carrying their offset from
    the master sensor as Metashape stores it (so readers must compose rig poses themselves)."""
    kind = "fisheye" if camera.is_fisheye else "frame"
    master_from_rig = invert_rigid(rig_from_cam[master_camera])
    lines = [f'    <sensors next_id="{max(sensor_ids.values()) + 1}">']
    for camera_id, sensor_id in sorted(sensor_ids.items(), key=lambda item: item[1]):
        is_slave = camera_id != master_camera
        master_attr = f' master_id="{sensor_ids[master_camera]}"' if is_slave else ""
        lines += [
            f'      <sensor id="{sensor_id}" label="{camera_id}" type="{kind}"{master_attr}>',
            f'        <resolution width="{camera.width_px}" height="{camera.height_px}"/>',
            '        <property name="layer_index" value="0"/>',
            "        <bands>",
            '          <band label="Red"/>',
            '          <band label="Green"/>',
            '          <band label="Blue"/>',
            "        </bands>",
            "        <data_type>uint8</data_type>",
            *_calibration_xml(camera, "        "),
        ]
        if is_slave:
            master_from_slave = master_from_rig @ rig_from_cam[camera_id]
            lines.append(f"        <rotation>{_nums(master_from_slave[:3, :3])}</rotation>")
            location = master_from_slave[:3, 3] / chunk.scale
            if np.any(np.abs(location) > 1e-12):
                lines.append(f"        <location>{_nums(location)}</location>")
        lines.append("      </sensor>")
    lines.append("    </sensors>")
    return lines


def _cameras_xml(
    ordered: Sequence[SynthImage],
    sensor_ids: dict[str, int],
    master_camera: str,
    xml_camera_ids: dict[str, int],
    chunk: ChunkTransform,
) -> list[str]:
    """The ``<cameras>`` block in XML id order: masters with their ``<transform>`` (camera ->
    internal), slaves with only a ``master_id``, as Metashape writes rig captures."""
    lines = [f'    <cameras next_id="{len(ordered)}" next_group_id="0">']
    for image in ordered:
        xml_id = xml_camera_ids[f"{image.camera_id}@{image.frame_id}"]
        head = (
            f'      <camera id="{xml_id}" sensor_id="{sensor_ids[image.camera_id]}" '
            f'component_id="0" label="{image.stem}"'
        )
        if image.camera_id != master_camera:
            master_xml_id = xml_camera_ids[f"{master_camera}@{image.frame_id}"]
            lines.append(f'{head} master_id="{master_xml_id}"/>')
            continue
        internal = chunk.internal_from_world_pose(image.world_from_cam)
        lines += [
            f"{head}>",
            f"        <transform>{_nums(internal)}</transform>",
            "      </camera>",
        ]
    lines.append("    </cameras>")
    return lines


# ---------------------------------------------------------------------------------------------
# splits.json and ground_truth.json


def splits_document(images: Sequence[SynthImage], holdout_camera: str) -> dict:
    """``{"train": [...], "test": [...]}``: sorted ``cameraId`` strings, one held-out camera."""
    test = sorted(i.krt_id for i in images if i.camera_id == holdout_camera)
    train = sorted(i.krt_id for i in images if i.camera_id != holdout_camera)
    return {"train": train, "test": test}


def camera_dict(camera: Camera) -> dict:
    """A :class:`Camera` as plain JSON (distortion by name, nerfstudio order)."""
    return {
        "model": camera.model.value,
        "width": camera.width_px,
        "height": camera.height_px,
        "fx": camera.fx,
        "fy": camera.fy,
        "cx": camera.cx,
        "cy": camera.cy,
        "distortion": camera.distortion_dict(),
        "fisheye_crop_radius_px": camera.fisheye_crop_radius_px,
    }


def matrix_list(matrix: np.ndarray) -> list[list[float]]:
    """Row-major nested lists (ground truth is row-major; only KRT is column-major)."""
    return np.asarray(matrix, dtype=np.float64).tolist()
