"""``eyeful convert --from metashape``: Metashape ``cameras.xml`` with rigs.

Expected numbers are computed here from the formulas in ``reference/metashape.md`` (rigid
``[Rc|tc] @ [Ri | s*ti]``, slave = master @ ``[R_s|l_s]``, fx = f + b1, P1/P2 swapped), on
hand-made XML, on the real Metashape 2.3 rig export, and on the synthetic capture.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import ground_truth
from peer import FIXTURES as SHARED_FIXTURES
from test_convert_krt import NS_PERM, check_against_ground_truth

from eyeful_tools.cli import main
from eyeful_tools.convert import convert_capture, cross_check
from eyeful_tools.imageio import write_image
from eyeful_tools.readers.metashape import parse_metashape, read_metashape
from eyeful_tools.transforms import read_transforms

FIXTURES = SHARED_FIXTURES / "metashape-rig-2.3"  # ../shared beside the checkout
RIG_XML = FIXTURES / "cameras.xml"
EQUISOLID_XML = FIXTURES / "equisolid-fisheye.xml"


def _rot(axis: str, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def _text(values: np.ndarray) -> str:
    return " ".join(repr(float(v)) for v in np.asarray(values).ravel())


# Chunk similarity (world = s * Rc @ internal + tc) and the rig: sensor 1 has <location>,
# sensor 2 has none. Master poses are rotated, not axis-aligned.
CHUNK_R = _rot("z", 25) @ _rot("x", -40)
CHUNK_T = np.array([0.7, -1.2, 2.3])
CHUNK_S = 0.37
SLAVES = {
    "1": (_rot("y", 60) @ _rot("x", 5), np.array([0.12, -0.03, 0.04])),
    "2": (_rot("y", -60), None),
}
CALIBRATION = dict(f=700.0, cx=3.5, cy=-4.25, b1=2.5, k1=-0.1, k2=0.02, k3=-0.003, k4=0.0004,
                   p1=0.0011, p2=-0.0007)  # fmt: skip


def master_pose(position: int) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = _rot("y", 35 * position + 10) @ _rot("x", 12)
    pose[:3, 3] = [0.5 * position, 0.1, -0.3 * position]
    return pose


def make_xml(
    positions: int = 3,
    *,
    sensor_type: str = "frame",
    extra_cameras: str = "",
    extra_sensors: str = "",
    calibration: dict | None = None,
) -> str:
    calibration = calibration or CALIBRATION
    tags = "".join(f"<{k}>{v!r}</{k}>" for k, v in calibration.items())
    sensors = []
    for sensor in ("0", "1", "2"):
        rig = ""
        if sensor in SLAVES:
            rotation, location = SLAVES[sensor]
            rig = (
                ' master_id="0"',
                f"<rotation>{_text(rotation)}</rotation>"
                + (f"<location>{_text(location)}</location>" if location is not None else ""),
            )
        sensors.append(
            f'<sensor id="{sensor}" label="cam{sensor}" type="{sensor_type}"{rig[0] if rig else ""}>'
            '<resolution width="800" height="1200"/>'
            f'<calibration type="{sensor_type}" class="initial">'
            '<resolution width="800" height="1200"/><f>650</f></calibration>'
            f'<calibration type="{sensor_type}" class="adjusted">'
            f'<resolution width="800" height="1200"/>{tags}</calibration>'
            f"{rig[1] if rig else ''}</sensor>"
        )
    cameras = []
    for position in range(positions):
        master = 10 * position
        cameras.append(
            f'<camera id="{master}" sensor_id="0" component_id="0" label="cam0_{position:04d}">'
            f"<transform>{_text(master_pose(position))}</transform></camera>"
        )
        for sensor in ("1", "2"):
            cameras.append(
                f'<camera id="{master + int(sensor)}" sensor_id="{sensor}" component_id="0" '
                f'master_id="{master}" label="cam{sensor}_{position:04d}.JPG"/>'
            )
    transform = (
        f"<transform><rotation>{_text(CHUNK_R)}</rotation>"
        f"<translation>{_text(CHUNK_T)}</translation><scale>{CHUNK_S!r}</scale></transform>"
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<document version="2.0.0">\n'
        '<chunk label="Chunk 1" enabled="true">\n'
        f'<sensors next_id="3">{"".join(sensors)}{extra_sensors}</sensors>\n'
        '<components next_id="1" active_id="0"><component id="0" label="Component 1">'
        f"{transform}</component></components>\n"
        f'<cameras next_id="99">\n<group id="0" label="rig" type="folder">\n'
        + "\n".join(cameras)
        + f"\n</group>\n{extra_cameras}\n</cameras>\n{transform}\n</chunk>\n</document>\n"
    )


def expected_world_from_cam(position: int, sensor: str) -> np.ndarray:
    internal = master_pose(position)
    if sensor in SLAVES:
        rotation, location = SLAVES[sensor]
        offset = np.eye(4)
        offset[:3, :3] = rotation
        offset[:3, 3] = location if location is not None else 0.0
        internal = internal @ offset
    world = np.eye(4)
    world[:3, :3] = CHUNK_R @ internal[:3, :3]
    world[:3, 3] = CHUNK_S * CHUNK_R @ internal[:3, 3] + CHUNK_T
    return world


def make_project(root: Path, xml: str, positions: int = 3, layout: str = "flat") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cameras.xml").write_text(xml)
    for position in range(positions):
        for sensor in ("0", "1", "2"):
            name = f"cam{sensor}_{position:04d}.jpg"
            path = root / "images" / (f"{sensor}/{name}" if layout == "nested" else name)
            write_image(path, np.zeros((60, 40, 3), np.uint8))
    return root


# ---------------------------------------------------------------------------------------------
# Reader: rigs, transforms, calibrations.


def test_rig_composition_with_rotated_master_scaled_chunk_and_slave_offsets(tmp_path: Path) -> None:
    path = tmp_path / "cameras.xml"
    path.write_text(make_xml())
    document = parse_metashape(path)
    frames = {f.image_path: f for f in document.scene.frames}
    assert len(frames) == 9 and document.report.rig_slaves_posed == 6
    for position in range(3):
        for sensor in ("0", "1", "2"):
            frame = frames[f"cam{sensor}_{position:04d}"]
            np.testing.assert_allclose(
                frame.world_from_cam, expected_world_from_cam(position, sensor), atol=1e-12
            )
            assert frame.rig_position_id == 10 * position
    camera = frames["cam1_0000"].camera
    # adjusted (not initial) calibration; fx = f + b1; principal point offsets; P1/P2 swapped
    assert (camera.fx, camera.fy, camera.cx, camera.cy) == (702.5, 700.0, 403.5, 595.75)
    assert camera.distortion == (-0.1, 0.02, -0.003, 0.0004, -0.0007, 0.0011)
    no_rig = read_metashape(path, rig=False)
    assert [f.image_path for f in no_rig.frames] == [f"cam0_{p:04d}" for p in range(3)]


def test_real_rig_export_poses_every_camera() -> None:
    """The Metashape 2.3 multi-camera export: 103 masters + 927 slaves all posed; test vectors
    from reference/metashape.md §2.3 (internal frame, so divide by the chunk scale)."""
    document = parse_metashape(RIG_XML)
    assert document.report.posed == 1030 and document.report.rig_slaves_posed == 927
    assert not document.report.no_pose
    frames = {f.image_path: f for f in document.scene.frames}
    scale = 0.19341704876581711
    a_d = frames["out_0000008_A_D"].world_from_cam
    np.testing.assert_allclose(
        a_d[:3, :3],
        [[0.824578, 0.304833, -0.4766], [0.013424, -0.85273, -0.52218],
         [-0.565589, 0.424181, -0.707234]],
        atol=2e-6,
    )  # fmt: skip
    np.testing.assert_allclose(a_d[:3, 3] / scale, [-0.947289, -0.069072, 0.006031], atol=2e-6)
    np.testing.assert_allclose(
        frames["out_0000008_E"].world_from_cam[:3, 3] / scale,
        [-0.940818, -0.066227, 0.012559],
        atol=2e-6,
    )
    assert len(read_metashape(RIG_XML, rig=False).frames) == 103  # what nerfstudio gets


def test_equisolid_is_refused_clearly_and_adjusted_wins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "osmo"
    capture.mkdir()
    shutil.copy(EQUISOLID_XML, capture / "cameras.xml")
    (capture / "images").mkdir()
    assert main(["convert", str(capture), "--from", "metashape"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {capture / 'cameras.xml'}: sensor 0 (unknown) has type ")
    assert "'equisolid_fisheye', which eyeful does not convert" in err
    # the same file re-typed as equidistant fisheye: the adjusted calibration is used
    retyped = tmp_path / "retyped.xml"
    retyped.write_text(EQUISOLID_XML.read_text().replace('"equisolid_fisheye"', '"fisheye"'))
    camera = read_metashape(retyped).frames[0].camera
    assert camera.model.value == "OPENCV_FISHEYE"
    assert camera.fx == pytest.approx(1049.93, abs=0.01) and camera.fx != 1050.0
    assert camera.distortion[0] == pytest.approx(0.1019, abs=1e-4)


def test_disabled_unposed_and_uncalibrated_cameras_are_reported(tmp_path: Path) -> None:
    extra_cameras = (
        '<camera id="90" sensor_id="0" label="cam0_disabled" enabled="false">'
        f"<transform>{_text(master_pose(0))}</transform></camera>"
        '<camera id="91" sensor_id="0" label="cam0_unaligned"/>'
        '<camera id="92" sensor_id="3" label="nocal_0000">'
        f"<transform>{_text(master_pose(1))}</transform></camera>"
        '<group id="1" label="off" enabled="false"><camera id="93" sensor_id="0" label="g_0000">'
        f"<transform>{_text(master_pose(1))}</transform></camera></group>"
    )
    extra_sensors = (
        '<sensor id="3" label="bare" type="frame"><resolution width="8" height="8"/></sensor>'
    )
    path = tmp_path / "cameras.xml"
    path.write_text(make_xml(extra_cameras=extra_cameras, extra_sensors=extra_sensors))
    report = parse_metashape(path).report
    assert sorted(report.disabled) == ["cam0_disabled", "g_0000"]
    assert report.no_pose == ["cam0_unaligned"]
    assert report.no_calibration == ["nocal_0000"]
    assert report.posed == 9


def test_skew_and_p3_are_reported_not_silently_dropped(tmp_path: Path) -> None:
    path = tmp_path / "cameras.xml"
    path.write_text(make_xml(calibration={**CALIBRATION, "b2": 0.8, "p3": 0.01}))
    warnings = parse_metashape(path).report.warnings
    assert any("skew b2=0.8" in w for w in warnings) and any("p3=0.01" in w for w in warnings)


# ---------------------------------------------------------------------------------------------
# Bad input: one clear line, nothing written.

DUPLICATE_ID = (
    f'<camera id="1" sensor_id="0" label="dup"><transform>{_text(np.eye(4))}</transform></camera>'
)
NAN_MASTER = f'<camera id="95" sensor_id="0" label="bad"><transform>{" ".join(["nan"] * 16)}</transform></camera>'


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (make_xml(extra_cameras='<camera id="94" sensor_id="7" label="x"/>'),
         "camera 'x' refers to missing sensor '7'"),
        (make_xml(extra_cameras=NAN_MASTER), "camera 'bad' <transform> has a non-finite value"),
        (make_xml(sensor_type="pushbroom"), "sensor 0 has unknown type 'pushbroom'"),
        (make_xml(sensor_type="spherical"), "type 'spherical', which eyeful does not convert"),
        (make_xml()[:900], "malformed XML at line"),
        ('<?xml version="1.0"?>\n<!DOCTYPE document [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'
         "<document><chunk>&e;</chunk></document>\n", "refusing an XML document type declaration"),
        # #15: a repeated camera id silently gave a rig slave the other camera's pose
        (make_xml(extra_cameras=DUPLICATE_ID), "camera id '1' repeats (first at line"),
        (make_xml(extra_sensors='<sensor id="1" label="again" type="frame"/>'),
         "sensor id '1' repeats (first at line"),
        # #15: finite numbers whose composition overflows ended in a pydantic traceback
        (make_xml().replace(f"<scale>{CHUNK_S!r}</scale>", "<scale>1.7e308</scale>"),
         "pose overflows once the chunk/component transform is applied"),
    ],
    ids=["missing-sensor", "nan", "unknown-type", "spherical", "truncated", "external-entity",
         "duplicate-camera-id", "duplicate-sensor-id", "overflow"],
)  # fmt: skip
def test_bad_xml_is_one_clear_error_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], xml: str, message: str
) -> None:
    project = make_project(tmp_path / "project", xml)
    rc = main(["convert", str(project), "--images", str(project / "images")])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith(f"error: {project / 'cameras.xml'}: ") and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not list(project.rglob("transforms*.json"))


def test_truncated_xml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "cameras.xml"
    text = make_xml()
    path.write_text(text[: text.index("<cameras")] + "<cameras><camera id='1'")
    with pytest.raises(Exception, match=r"malformed XML at line \d+"):
        read_metashape(path)


# ---------------------------------------------------------------------------------------------
# The pipeline: matching images, writing transforms.json.


def test_convert_project_matches_stems_recursively(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project(tmp_path / "project", make_xml(), layout="nested")
    write_image(project / "images" / "stray_0001.jpg", np.zeros((60, 40, 3), np.uint8))
    (project / "images" / "cam2").mkdir()
    assert main(["convert", str(project), "--from", "metashape", "--images",
                 str(project / "images")]) == 0  # fmt: skip
    err = " ".join(capsys.readouterr().err.split())  # rich wraps at 80 columns off a terminal
    assert "9 frames" in err and "1 unmatched" in err and "6 rig cameras posed" in err
    tf = read_transforms(project / "images" / "transforms.json")
    assert {f.file_path for f in tf.frames} == {
        f"{s}/cam{s}_{p:04d}.jpg" for s in "012" for p in range(3)
    }
    frame = next(f for f in tf.frames if f.file_path == "1/cam1_0002.jpg")
    expected = NS_PERM @ expected_world_from_cam(2, "1")
    expected[:, 1:3] *= -1
    np.testing.assert_allclose(frame.transform_matrix, expected, atol=1e-12)
    # intrinsics rescaled to the 40x60 images, x and y separately
    assert frame.fl_x == pytest.approx(702.5 * 40 / 800) and frame.cy == pytest.approx(
        595.75 * 60 / 1200
    )
    assert frame.p1 == -0.0007 and frame.p2 == 0.0011
    assert tf.train_filenames and tf.val_filenames == tf.test_filenames


def test_ambiguous_stem_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = make_project(tmp_path / "project", make_xml())
    write_image(project / "images" / "copy" / "cam1_0001.png", np.zeros((60, 40, 3), np.uint8))
    assert main(["convert", str(project), "--images", str(project / "images")]) == 1
    err = capsys.readouterr().err
    assert "camera 'cam1_0001' matches several images: cam1_0001.jpg, copy/cam1_0001.png" in err
    assert not list(project.rglob("transforms*.json"))


# ---------------------------------------------------------------------------------------------
# Ground truth: the synthetic capture, and the built-in cross-check.


@pytest.mark.parametrize("rig", ["v2", "v1"])
def test_synthetic_capture_matches_ground_truth(
    tmp_path: Path, rig: str, request: pytest.FixtureRequest
) -> None:
    capture = tmp_path / f"synth-{rig}"
    shutil.copytree(request.getfixturevalue(f"synth_{rig}"), capture)
    report = convert_capture(capture, source="metashape", check=True)
    truth = ground_truth(capture)
    assert report.rig_slaves_posed == len(truth["images"]) - truth["positions"]
    assert check_against_ground_truth(capture) == 3 * len(truth["images"])
    assert report.check is not None and report.check.cameras == len(truth["images"])
    assert report.check.max_position_m < 1e-9 and report.check.max_rotation_deg < 1e-7


def test_cross_check_reports_a_moved_camera(tmp_path: Path, synth_v2: Path) -> None:
    capture = tmp_path / "cap"
    shutil.copytree(synth_v2, capture)
    data = json.loads((capture / "cameras.json").read_text())
    entry = data["KRT"][5]
    entry["T"][3][0] += 0.02  # column-major: translation x of world-to-camera
    (capture / "cameras.json").write_text(json.dumps(data))
    result = cross_check(capture)
    assert result.max_position_m == pytest.approx(0.02, rel=1e-6)
    assert result.worst_position == entry["cameraId"].split("/")[1]
    assert result.max_rotation_deg < 1e-7
