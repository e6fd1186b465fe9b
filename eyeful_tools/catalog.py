"""The EyefulTower dataset as data: captures, rigs, held-out cameras and resolutions.

Source: the EyefulTower README (dataset overview, data organisation) and nerfstudio's
``eyeful_tower.py``; see ``shared/reference/eyeful.md`` sections 2, 3 and 8.2.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from eyeful_tools.errors import UsageError

PUBLIC_BUCKET = "fb-baas-f32eacb9-8abb-11eb-b2b8-4857dd089e15"
PUBLIC_PREFIX = "EyefulTower/"
DEFAULT_CAPTURE = "riverview"
DEFAULT_RESOLUTION = "jpeg_2k"
DEFAULT_DEST = "data/eyefultower"
CALIBRATION_FILES = ("cameras.json", "cameras.xml", "splits.json")


@dataclass(frozen=True)
class Rig:
    name: str
    camera_model: str  # nerfstudio camera_model the rig converts to
    camera_ids: tuple[str, ...]  # image folder names, bottom to top
    holdout_camera: str  # the camera of splits.json "test"
    master_sensor: str


RIG_V1 = Rig("v1", "OPENCV_FISHEYE", tuple(str(i) for i in range(0, 9)), "5", "6")
RIG_V2 = Rig("v2", "OPENCV", tuple(str(i) for i in range(10, 32)), "17", "13")
# kitchen: "v2 with 3 fewer cameras than standard configuration" (which three is not published).
RIG_V2_KITCHEN = Rig("v2-kitchen", "OPENCV", RIG_V2.camera_ids[:19], "17", "13")
RIGS = {rig.name: rig for rig in (RIG_V1, RIG_V2, RIG_V2_KITCHEN)}


@dataclass(frozen=True)
class Capture:
    name: str
    rig: Rig
    positions: int
    images: int
    #: nerfstudio's fraction-of-half-size crop radius (v1 only), kept to derive pixels from
    fisheye_crop_fraction: float | None = None
    #: sizes in GB per resolution name, from the README table
    sizes_gb: tuple[tuple[str, float], ...] = ()


def _sizes(
    exr2k: float, exr1k: float, j8k: float, j4k: float, j2k: float, j1k: float
) -> tuple[tuple[str, float], ...]:
    return (
        ("exr_2k", exr2k),
        ("exr_1k", exr1k),
        ("jpeg_8k", j8k),
        ("jpeg_4k", j4k),
        ("jpeg_2k", j2k),
        ("jpeg_1k", j1k),
    )


CAPTURES: dict[str, Capture] = {
    c.name: c
    for c in (
        Capture("apartment", RIG_V2, 180, 3960, None, _sizes(123, 31, 92, 20, 5, 1.2)),
        Capture("kitchen", RIG_V2_KITCHEN, 318, 6024, None, _sizes(190, 48, 142, 29, 8, 1.9)),
        Capture("office1a", RIG_V1, 85, 765, 0.43, _sizes(24, 6, 15, 3, 1, 0.2)),
        Capture("office1b", RIG_V2, 71, 1562, None, _sizes(49, 13, 35, 7, 2, 0.4)),
        Capture("office2", RIG_V1, 233, 2097, 0.45, _sizes(66, 17, 46, 9, 2, 0.5)),
        Capture("office_view1", RIG_V2, 126, 2772, None, _sizes(87, 22, 63, 14, 4, 0.8)),
        Capture("office_view2", RIG_V2, 67, 1474, None, _sizes(47, 12, 34, 7, 2, 0.5)),
        Capture("riverview", RIG_V2, 48, 1008, None, _sizes(34, 8, 24, 5, 2, 0.4)),
        Capture("seating_area", RIG_V1, 168, 1512, 0.375, _sizes(48, 12, 36, 8, 2, 0.5)),
        Capture("table", RIG_V1, 134, 1206, 0.45, _sizes(38, 9, 26, 6, 2, 0.4)),
        Capture("workshop", RIG_V1, 700, 6300, 0.45, _sizes(198, 50, 123, 27, 8, 2.1)),
        Capture("raf_emptyroom", RIG_V2, 365, 8030, None, _sizes(252, 63, 213, 45, 12, 2.5)),
        Capture("raf_furnishedroom", RIG_V2, 154, 3388, None, _sizes(106, 27, 90, 19, 5, 1.1)),
    )
}


@dataclass(frozen=True)
class Resolution:
    name: str
    folder: str
    width_px: int  # nominal, portrait
    height_px: int
    extension: str

    @property
    def is_exr(self) -> bool:
        return self.extension == "exr"


RESOLUTIONS: dict[str, Resolution] = {
    r.name: r
    for r in (
        Resolution("jpeg_1k", "images-jpeg-1k", 684, 1024, "jpg"),
        Resolution("jpeg_2k", "images-jpeg-2k", 1368, 2048, "jpg"),
        Resolution("jpeg_4k", "images-jpeg-4k", 2736, 4096, "jpg"),
        Resolution("jpeg_8k", "images-jpeg", 5784, 8660, "jpg"),
        Resolution("exr_1k", "images-1k", 684, 1024, "exr"),
        Resolution("exr_2k", "images-2k", 1368, 2048, "exr"),
    )
}
RESOLUTION_BY_FOLDER = {r.folder: r for r in RESOLUTIONS.values()}

#: Opt-in extras and the keys (relative to the capture prefix) they select.
EXTRAS: dict[str, tuple[str, ...]] = {
    "colmap": ("colmap/",),
    "mesh": ("mesh.obj", "mesh.mtl", "mesh.jpg"),
    "report": ("-final.pdf",),  # <capture>-final.pdf, matched by suffix
    "video": (".mp4",),
}


def expand(names: list[str] | tuple[str, ...], known: Mapping[str, object], what: str) -> list[str]:
    """Expand ``all`` and validate names against a catalog table, keeping order, no repeats."""
    result: list[str] = []
    for name in names:
        chosen = list(known) if name == "all" else [name]
        for item in chosen:
            if item not in known:
                raise UsageError(
                    None, f"unknown {what} {item!r}; choose from {', '.join(known)} or all"
                )
            if item not in result:
                result.append(item)
    return result


def recognise(camera_ids: set[str], positions: int, images: int) -> Capture | None:
    """The catalog capture a calibration belongs to, from what it holds, never from a folder
    name: cameras of the capture's rig (its held-out camera among them), exactly its number of
    rig positions, and its number of images less at most a few lost ones (fewer than one per
    position: a camera short is another capture). None for anything else: a synthetic
    capture, a subset, generic data named like a rig's cameras."""
    for capture in CAPTURES.values():
        rig = capture.rig
        # kitchen: which three v2 cameras it lacks is not published
        cameras = RIG_V2.camera_ids if rig is RIG_V2_KITCHEN else rig.camera_ids
        if (
            camera_ids <= set(cameras)
            and rig.holdout_camera in camera_ids
            and positions == capture.positions
            and capture.images - positions < images <= capture.images
        ):
            return capture
    return None
