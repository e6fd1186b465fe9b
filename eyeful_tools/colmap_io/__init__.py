"""COLMAP interop through pycolmap: canonical scenes <-> ``pycolmap.Reconstruction``, rigs included.

No COLMAP file is parsed or written by hand: pycolmap reads and writes the model (binary or
text, with ``rigs`` and ``frames``). Conventions (see ``docs/colmap.md``):

* **Camera axes**: COLMAP's camera frame is OpenCV's (x right, y down, z forward), the same as
  our :class:`~eyeful_tools.cameras.Frame`; COLMAP stores ``cam_from_world``, we keep
  ``world_from_cam``; the two are exact rigid inverses, no axis change.
* **Pixels**: COLMAP puts the upper-left pixel centre at (0.5, 0.5) (``colmap/sensor/models.h``),
  exactly our corner-origin convention, so ``cx, cy`` pass through unchanged.
* **World**: an export is written in the transforms' z-up output world (what
  :func:`~eyeful_tools.transforms.transforms_to_scene` returns). A sidecar ``eyeful_colmap.json``
  beside the model records that, the capture's ``applied_transform`` and our per-image extras
  (camera ids, rig positions, splits, crop radius); COLMAP ignores it. On import a model with
  the sidecar is ``WorldUp.Z_UP``; any other model is ``WorldUp.COLMAP`` (nerfstudio's mapping).
* **Rigs**: frames with ``camera_id`` + ``rig_position_id`` become one pycolmap ``Rig`` (the
  tower) whose reference sensor is the master camera, with constant ``sensor_from_rig`` (= the
  camera's pose relative to the master) and one pycolmap ``Frame`` per position
  (``rig_from_world`` = the master's ``cam_from_world``).

Camera models (each mapping checked against pycolmap's own projection in the tests): PINHOLE
<-> PINHOLE; OPENCV <-> OPENCV, or FULL_OPENCV when k3 != 0 (a pinhole k4 has no COLMAP
equivalent and is refused); OPENCV_FISHEYE <-> OPENCV_FISHEYE, or THIN_PRISM_FISHEYE (the same
equidistant model plus p1, p2, with sx1 = sy1 = 0) when p1 or p2 != 0, as for EyefulTower v1.
Import also accepts SIMPLE_PINHOLE, SIMPLE_RADIAL, RADIAL (-> OPENCV) and SIMPLE_RADIAL_FISHEYE,
RADIAL_FISHEYE (-> OPENCV_FISHEYE), which are special cases of ours.
"""

from __future__ import annotations

from eyeful_tools.colmap_io.export import (
    SIDECAR_NAME,
    TOWER_RIG_ID,
    ExportReport,
    ExportResult,
    Sidecar,
    SidecarImage,
    export_colmap,
    image_name,
    scene_to_reconstruction,
    sidecar_for,
)
from eyeful_tools.colmap_io.load import (
    MODEL_FILES,
    ImageMode,
    ImportResult,
    find_model_dir,
    image_paths,
    import_colmap,
    import_reconstruction,
    place_images,
    read_reconstruction,
    read_sidecar,
    reconstruction_to_scene,
    write_points_ply,
)
from eyeful_tools.colmap_io.models import (
    COLMAP_MODELS,
    FisheyeExport,
    camera_from_colmap,
    colmap_camera_params,
    colmap_model_name,
    matrix_from_rigid3d,
    rigid3d_from_matrix,
    without_fisheye_tangential,
)
from eyeful_tools.colmap_io.rig import (
    RIG_TOLERANCE,
    RigEstimate,
    RigMode,
    choose_reference_camera,
    estimate_rig,
    rig_structure_problem,
)

__all__ = [
    "COLMAP_MODELS",
    "MODEL_FILES",
    "RIG_TOLERANCE",
    "SIDECAR_NAME",
    "TOWER_RIG_ID",
    "ExportReport",
    "ExportResult",
    "FisheyeExport",
    "ImageMode",
    "ImportResult",
    "RigEstimate",
    "RigMode",
    "Sidecar",
    "SidecarImage",
    "camera_from_colmap",
    "choose_reference_camera",
    "colmap_camera_params",
    "colmap_model_name",
    "estimate_rig",
    "export_colmap",
    "find_model_dir",
    "image_name",
    "image_paths",
    "import_colmap",
    "import_reconstruction",
    "matrix_from_rigid3d",
    "place_images",
    "read_reconstruction",
    "read_sidecar",
    "reconstruction_to_scene",
    "rig_structure_problem",
    "rigid3d_from_matrix",
    "without_fisheye_tangential",
    "scene_to_reconstruction",
    "sidecar_for",
    "write_points_ply",
]
