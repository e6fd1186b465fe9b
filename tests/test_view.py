"""``eyeful view``: what it reads, the CLI, and the viewer in a real (headless) Chromium.

The browser is Debian's ``chromium`` (``make install`` puts it there), driven by Playwright
with ``executable_path``; Playwright's own browser downloads are never used. Without chromium
the browser test is skipped with a reason, except under ``CI``, where that is a failure.
Set ``EYEFUL_VIEW_SCREENSHOT=docs/images/view.png`` (``make screenshot``) to keep its picture.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from eyeful_tools.cli import main
from eyeful_tools.convert import convert_capture
from eyeful_tools.errors import MissingFileError
from eyeful_tools.transforms import read_transforms
from eyeful_tools.view.content import find_transforms, load_content, read_points, run_normalisation
from eyeful_tools.view.server import SPLIT_COLORS, start_viewer, thumbnail

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium")
#: software WebGL (SwiftShader): the CI machine has no GPU
CHROMIUM_ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
VIEWPORT = {"width": 800, "height": 600}
#: viser's "software WebGL" notice, which says nothing about the scene
HIDE_NOTIFICATIONS = ".mantine-Notifications-root { display: none !important; }"


def _converted(capture: Path, tmp: Path) -> Path:
    copy = tmp / capture.name
    shutil.copytree(capture, copy)
    convert_capture(copy, resolutions=["jpeg_1k"])
    return copy


@pytest.fixture(scope="module")
def capture_v2(synth_v2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _converted(synth_v2, tmp_path_factory.mktemp("view"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_cameras_splits_and_held_out_camera(capture_v2: Path) -> None:
    transforms_path = find_transforms(capture_v2)  # a capture folder: its converted folder
    assert transforms_path == capture_v2 / "images-jpeg-1k" / "transforms.json"
    transforms = read_transforms(transforms_path)
    content = load_content(transforms_path)
    assert len(content.cameras) == len(transforms.frames)
    test_names = set(transforms.test_filenames or ())
    assert test_names
    for view in content.cameras:
        assert view.split == ("test" if view.file_path in test_names else "train")
        assert view.held_out == (view.camera_id == "17")  # the v2 rig's held-out camera
    positions = {v.rig_position for v in content.cameras}
    assert len(positions) * 8 == len(content.cameras)  # 8 cameras per rig position
    # the capture's own world is y-up: its +y is the transforms world's +z
    assert np.allclose(content.transforms_from_capture[:3, :3] @ [0, 1, 0], [0, 0, 1])


def test_fisheye_thumbnails_show_the_image_circle(synth_v1: Path, tmp_path: Path) -> None:
    content = load_content(find_transforms(_converted(synth_v1, tmp_path)))
    view = content.cameras[0]
    assert view.camera.is_fisheye
    drawn = thumbnail(view)
    plain = thumbnail(view.__class__(**{**view.__dict__, "camera": _pinhole(view.camera)}))
    assert drawn is not None and plain is not None
    yellow = (drawn[..., 0] > 200) & (drawn[..., 1] > 180) & (drawn[..., 2] < 80)
    assert yellow.sum() > 2 * min(drawn.shape[:2])  # a circle, not a dot
    assert not ((plain[..., 0] > 200) & (plain[..., 1] > 180) & (plain[..., 2] < 80)).any()


def _pinhole(camera):
    from dataclasses import replace

    from eyeful_tools.cameras import CameraModel

    return replace(camera, model=CameraModel.OPENCV, fisheye_crop_radius_px=None)


def test_run_folder_uses_its_data_and_dataparser_transforms(
    capture_v2: Path, tmp_path: Path
) -> None:
    data = capture_v2 / "images-jpeg-1k"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": {}, "data": str(data)}))
    transform = [[0.0, -1.0, 0.0, 0.5], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]]
    dataparser = {"transform": transform, "scale": 0.5}
    dataparser["eyeful"] = {
        "transforms_json_to_normalised": transform,
        "transforms_json_scale": 0.5,
    }
    (run / "dataparser_transforms.json").write_text(json.dumps(dataparser))
    assert find_transforms(run) == data / "transforms.json"
    matrix = run_normalisation(run)
    assert np.allclose(matrix[:3], 0.5 * np.asarray(transform))
    with pytest.raises(MissingFileError):
        find_transforms(tmp_path / "nowhere")
    with pytest.raises(MissingFileError, match="eyeful convert"):
        find_transforms(_empty_folder(tmp_path))


def _empty_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def test_missing_extra_is_one_line(
    capture_v2: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "viser", None)  # as if not installed
    assert main(["view", str(capture_v2)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "eyeful[view]" in err


def _serve_cli(*args: str) -> list[str]:
    """Run ``eyeful view ARGS --port P`` until it serves: its two lines (the URL checked to be
    127.0.0.1:P and to answer)."""
    with _cli_view(*args) as served:
        return served.lines


#: how long a test waits for a line of ``eyeful view`` (a run's model loads on a shared CPU):
#: a guard against a hang, so the test fails with what was read, never a measure of speed
LINE_DEADLINE_S = 300.0


class _Output:
    """The lines of a process's stdout, read by a thread: a test waits for the next one with a
    deadline, and a missing line fails it with what was read and the stderr so far."""

    def __init__(self, stream, stderr: Path) -> None:
        self.read: list[str] = []
        self.stderr = stderr
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def next(self, what: str) -> str:
        try:
            line = self._lines.get(timeout=LINE_DEADLINE_S)
        except queue.Empty:
            line = ""
        if not line:
            self._lines.put(None)  # for a later call too
            ended = "stdout ended" if line is None else f"no line within {LINE_DEADLINE_S:.0f} s"
            stderr = self.stderr.read_text(errors="replace")
            pytest.fail(f"{ended}: {what}; stdout: {self.read}; stderr: {stderr!r}")
        self.read.append(line)
        return line


@dataclasses.dataclass
class _Served:
    process: subprocess.Popen[str]
    output: _Output
    lines: list[str]  # its first two lines


@contextlib.contextmanager
def _cli_view(*args: str) -> Iterator[_Served]:
    """``eyeful view ARGS --port P`` serving (its two lines read, the URL checked to be
    127.0.0.1:P and to answer); SIGTERM on the way out, after which it must have ended as the
    CLI does (exit 143, its last stderr line the usual one, no traceback)."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", "from eyeful_tools.cli import entry_point; entry_point()"]
    with tempfile.TemporaryDirectory() as folder:
        stderr = Path(folder) / "stderr.txt"
        with stderr.open("w") as err:
            process = subprocess.Popen(
                [*command, "view", *args, "--port", str(port)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        try:
            output = _Output(process.stdout, stderr)
            lines = [output.next("the first line"), output.next("the URL line")]
            assert f"open http://127.0.0.1:{port} " in lines[1], lines
            with urllib.request.urlopen(f"http://127.0.0.1:{port}", timeout=30) as response:
                assert response.status == 200 and b"<html" in response.read()
            yield _Served(process, output, lines)
        finally:
            process.terminate()
            process.wait(timeout=30)
        said = stderr.read_text()
    assert "Traceback" not in said, said
    assert said.splitlines()[-1:] == [_TERMINATED] and process.returncode == 143, said


_TERMINATED = "error: terminated (SIGTERM); no output was left half-written"


def test_cli_serves_on_localhost_and_prints_the_url(capture_v2: Path) -> None:
    _serve_cli(str(capture_v2 / "images-jpeg-1k"))


# ---------------------------------------------------------------------------------------------
# The viewer in a real browser.


def _chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing on CI: `make install` installs Debian's chromium")
        pytest.skip("no chromium on PATH (`make install` installs Debian's chromium)")
    return CHROMIUM


def _settled_screenshot(page, server, path: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """(page screenshot, canvas render) once the client has drawn what the server sent: a
    render requested through viser's API comes back only after the browser processed the
    scene. The render has no GUI panel, so its colours are the scene's alone."""
    _open(page, server)
    return _screenshot(page, server, path)


def _open(page, server) -> None:
    page.goto(f"http://127.0.0.1:{server.get_port()}")
    page.wait_for_selector("canvas")
    page.add_style_tag(content=HIDE_NOTIFICATIONS)
    while not server.get_clients():
        page.wait_for_timeout(100)


def _screenshot(page, server, path: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """(page screenshot, canvas render) once the client has processed what was sent."""
    import cv2

    (client,) = server.get_clients().values()
    client.flush()
    rendered = client.get_render(height=300, width=400, timeout=60)
    png = page.screenshot(path=path)
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    return image[..., ::-1], np.asarray(rendered)[..., :3]  # RGB


def _near(image: np.ndarray, color: tuple[int, int, int], degrees: int = 10) -> int:
    """Pixels of ``color``'s hue (lines are anti-aliased, so lighter): the frustums' blue and
    red are told from the axes' pure blue and red by hue."""
    import cv2

    hsv = cv2.cvtColor(np.ascontiguousarray(image, np.uint8), cv2.COLOR_RGB2HSV).astype(int)
    hue = int(cv2.cvtColor(np.uint8([[color]]), cv2.COLOR_RGB2HSV)[0, 0, 0])
    distance = np.abs(hsv[..., 0] - hue)
    distance = np.minimum(distance, 180 - distance)  # OpenCV hue: 0..179, 2 degrees a step
    return int(((distance <= degrees // 2) & (hsv[..., 1] > 80)).sum())


def _click_a_camera(page, viewer):
    """Click, in the page, the images of frustums (the ones farthest on screen from the others
    first, in the left half: the panel is on the right) until the panel changes; return the
    camera the panel shows and the page's text. Which camera is hit depends on what is drawn
    in front, so only that some camera's details reach the page is checked."""
    import viser.transforms as vtf

    (client,) = viewer.server.get_clients().values()
    camera = client.camera
    rotation = vtf.SO3(np.asarray(camera.wxyz)).as_matrix()  # OpenCV axes, as the frustums
    focal = VIEWPORT["height"] / 2 / np.tan(camera.fov / 2)
    names = list(viewer.cameras)
    centres = np.stack(
        [
            v.world_from_cam[:3] @ [0.0, 0.0, viewer.frustum_depth, 1.0]
            for v in viewer.cameras.values()
        ]
    )  # the images' centres
    local = (centres - camera.position) @ rotation
    screen = focal * local[:, :2] / local[:, 2:] + [VIEWPORT["width"] / 2, VIEWPORT["height"] / 2]
    gaps = np.linalg.norm(screen[:, None] - screen[None], axis=-1) + np.eye(len(screen)) * 1e9
    usable = (screen[:, 0] > 0) & (screen[:, 0] < 0.55 * VIEWPORT["width"])
    usable &= (screen[:, 1] > 0.1 * VIEWPORT["height"]) & (screen[:, 1] < 0.9 * VIEWPORT["height"])
    before = viewer.details.content
    for target in np.argsort(np.where(usable, -gaps.min(axis=1), np.inf))[:8]:
        page.mouse.click(*screen[target])
        for _ in range(30):  # the click travels to the server and back
            if viewer.details.content != before:
                shown = next(
                    n
                    for n in names
                    if f"**{viewer.cameras[n].file_path}**" in viewer.details.content
                )
                page.get_by_text(viewer.cameras[shown].file_path, exact=True).wait_for()
                return shown, page.inner_text("body")
            page.wait_for_timeout(100)
    pytest.fail(f"no click on a frustum changed the panel ({screen.round().tolist()})")


def test_viewer_in_a_browser(capture_v2: Path, tmp_path: Path) -> None:
    import viser
    from playwright.sync_api import sync_playwright

    from trainer_adapter.data.parser import parse_dataset  # what `eyeful view` does for a dataset

    transforms_path = find_transforms(capture_v2)
    normalised = parse_dataset(transforms_path).normalised_from_transforms_world()
    content = load_content(transforms_path, normalised)
    viewer = start_viewer(content, port=_free_port())
    empty = viser.ViserServer(host="127.0.0.1", port=_free_port(), verbose=False)
    empty.scene.set_up_direction("+z")
    try:
        assert viewer.server.get_host() == "127.0.0.1"  # not exposed unless --host says so
        # the scene API: one frustum per frame, coloured by its split
        assert len(viewer.frustums) == len(content.cameras)
        for name, handle in viewer.frustums.items():
            assert tuple(handle.color) == SPLIT_COLORS[viewer.cameras[name].split]
        assert {v.split for v in viewer.cameras.values()} == {"train", "test"}
        keep = os.environ.get("EYEFUL_VIEW_SCREENSHOT")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT)
            shot, render = _settled_screenshot(page, viewer.server, Path(keep) if keep else None)
            shown, panel = _click_a_camera(page, viewer)
            blank, blank_render = _settled_screenshot(
                browser.new_page(viewport=VIEWPORT), empty, None
            )
            browser.close()
    finally:
        viewer.stop()
        empty.stop()
    assert shot.shape == blank.shape and render.shape == blank_render.shape == (300, 400, 3)
    assert shot.std() > 10 and render.std() > 10  # not blank
    changed = (np.abs(shot.astype(int) - blank.astype(int)).max(axis=-1) > 30).mean()
    assert changed > 0.03, changed  # the frustums and their images are drawn
    # a real click in the page shows the camera drawn there: its file, split and intrinsics
    view = viewer.cameras[shown]
    for part in (view.file_path, "split: ", f"fx={view.camera.fx:.2f}"):
        assert part in panel, (part, panel)
    for split, least in (("train", 200), ("test", 20)):  # thin lines: counts in pixels
        color = SPLIT_COLORS[split]
        counts = (_near(render, color), _near(blank_render, color))
        assert counts[0] > least + 10 * counts[1], (split, counts)


def test_clicking_a_camera_shows_its_image_and_details(capture_v2: Path) -> None:
    content = load_content(find_transforms(capture_v2))
    viewer = start_viewer(content, port=_free_port())
    try:
        name, view = next((n, v) for n, v in viewer.cameras.items() if v.held_out)
        before = viewer.details.content
        viewer.show(name)
        text = viewer.details.content
    finally:
        viewer.stop()
    assert text != before
    camera = view.camera
    for part in (view.file_path, "split: val+test (held-out camera)", f"fx={camera.fx:.2f}"):
        assert part in text, (part, text)
    assert f"{camera.width_px}x{camera.height_px}" in text


def test_no_chromium_on_ci_is_a_failure_not_a_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="make install"):
        _chromium()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        _chromium()


def test_points_from_the_ply_file_or_the_capture_mesh(capture_v2: Path, tmp_path: Path) -> None:
    import trimesh

    capture = tmp_path / "capture"
    shutil.copytree(capture_v2, capture)
    transforms_path = capture / "images-jpeg-1k" / "transforms.json"
    assert load_content(transforms_path).points is None  # nothing to show
    # the EyefulTower mesh: vertices in the capture's own (y-up) world
    vertices = np.array([[0.0, 1.0, 0.0], [1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])
    trimesh.Trimesh(vertices, [[0, 1, 2]], process=False).export(capture / "mesh.obj")
    content = load_content(transforms_path)
    moved = vertices @ content.transforms_from_capture[:3, :3].T
    assert content.points_source == capture / "mesh.obj"
    assert np.allclose(np.sort(content.points, axis=0), np.sort(moved, axis=0), atol=1e-6)
    # a point cloud named by the file (already in its world) wins, colours kept, subsampled
    rng = np.random.default_rng(1)
    cloud = rng.normal(size=(500, 3))
    colors = rng.integers(0, 255, size=(500, 4), dtype=np.uint8)
    trimesh.PointCloud(cloud, colors=colors).export(transforms_path.parent / "sparse_pc.ply")
    data = json.loads(transforms_path.read_text())
    transforms_path.write_text(json.dumps({**data, "ply_file_path": "sparse_pc.ply"}))
    content = load_content(transforms_path)
    assert content.points_source == transforms_path.parent / "sparse_pc.ply"
    assert content.points is not None and content.point_colors is not None
    assert content.points.shape == (500, 3) and (content.point_colors == colors[:, :3]).all()
    few, few_colors = read_points(transforms_path.parent / "sparse_pc.ply", limit=100)
    assert few.shape == (100, 3) and few_colors.shape == (100, 3)
    assert np.isin(few[:, 0], cloud[:, 0].astype(np.float32)).all()


def test_points_from_colmap_beside_a_dataset(capture_v2: Path, tmp_path: Path) -> None:
    """ns-process-data's layout: ``colmap/sparse/0`` beside transforms.json, its points moved
    into the transforms world by ``applied_transform`` or, in a file without one, by
    nerfstudio's legacy COLMAP matrix (as the dataparser places the cameras)."""
    import pycolmap

    from eyeful_tools.cameras import legacy_colmap_applied_transform

    dataset = tmp_path / "dataset"
    shutil.copytree(capture_v2 / "images-jpeg-1k", dataset)
    model = dataset / "colmap" / "sparse" / "0"
    model.mkdir(parents=True)
    xyz = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0], [0.0, -4.0, 1.0]])
    rgb = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)
    reconstruction = pycolmap.Reconstruction()
    for point, color in zip(xyz, rgb, strict=True):
        reconstruction.add_point3D(point, pycolmap.Track(), color)
    reconstruction.write(str(model))
    transforms_path = dataset / "transforms.json"
    data = json.loads(transforms_path.read_text())
    for applied in (np.asarray(data["applied_transform"]), None):
        if applied is None:
            data.pop("applied_transform")
            transforms_path.write_text(json.dumps(data))
            applied = legacy_colmap_applied_transform()[:3]
        content = load_content(transforms_path)
        assert content.points_source == model
        assert content.points is not None and content.point_colors is not None
        order = np.argsort(content.points[:, 0])
        expected = xyz @ applied[:3, :3].T + applied[:3, 3]
        expected_order = np.argsort(expected[:, 0])
        assert np.allclose(content.points[order], expected[expected_order], atol=1e-5)
        assert (content.point_colors[order] == rgb[expected_order]).all()
        assert np.allclose(content.transforms_from_capture[:3], applied)


def test_an_unreadable_found_point_source_is_a_warning(
    capture_v2: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A COLMAP folder found beside the dataset (not named by the file) that cannot be read is
    one warning line and the next source (the capture's mesh) is shown; the view still opens."""
    import trimesh

    capture = tmp_path / "capture"
    shutil.copytree(capture_v2, capture)
    transforms_path = capture / "images-jpeg-1k" / "transforms.json"
    model = transforms_path.parent / "colmap" / "sparse" / "0"
    model.mkdir(parents=True)  # half copied: no cameras/images/points files
    with caplog.at_level("WARNING"):
        assert load_content(transforms_path).points is None
    assert [r.getMessage() for r in caplog.records] == [
        f"{model}: no COLMAP model (cameras.bin/images.bin or .txt) here or in a subfolder; "
        "no points shown from it"
    ]
    vertices = np.array([[0.0, 1.0, 0.0], [1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])
    trimesh.Trimesh(vertices, [[0, 1, 2]], process=False).export(capture / "mesh.obj")
    content = load_content(transforms_path)
    assert content.points_source == capture / "mesh.obj" and content.points is not None


def test_an_unreadable_image_is_drawn_empty_and_a_click_says_why(
    capture_v2: Path, tmp_path: Path
) -> None:
    content = load_content(find_transforms(capture_v2))
    broken = content.cameras[0].__class__(
        **{**content.cameras[0].__dict__, "image_path": tmp_path / "gone.jpg"}
    )
    content.cameras[0] = broken
    assert thumbnail(broken) is None
    viewer = start_viewer(content, port=_free_port())
    try:
        name = next(n for n, v in viewer.cameras.items() if v is broken)
        viewer.show(name)
        text = viewer.details.content
    finally:
        viewer.stop()
    assert "image unreadable" in text and "gone.jpg" in text


def test_big_jpeg_thumbnails_are_decoded_small_with_the_circle_in_place(
    synth_v1: Path, tmp_path: Path
) -> None:
    from dataclasses import replace

    import cv2

    from eyeful_tools.cameras import rescale_camera
    from eyeful_tools.imageio import write_image

    view = load_content(find_transforms(_converted(synth_v1, tmp_path))).cameras[0]
    small = thumbnail(view)
    camera = rescale_camera(view.camera, 1600, 2400)  # 32x the pixels: decoded at 1/8
    big = tmp_path / "big.jpg"
    write_image(big, cv2.resize(small, (1600, 2400), interpolation=cv2.INTER_NEAREST))
    drawn = thumbnail(replace(view, image_path=big, camera=camera))
    assert drawn is not None and max(drawn.shape[:2]) == 160
    yellow = (drawn[..., 0] > 200) & (drawn[..., 1] > 180) & (drawn[..., 2] < 80)
    rows, cols = np.nonzero(yellow)
    centre = np.array([camera.cy, camera.cx]) * drawn.shape[1] / camera.width_px
    radius = np.hypot(rows - centre[0], cols - centre[1])
    assert len(radius) > 100 and radius.std() < 2.0  # one circle around the principal point


# ---------------------------------------------------------------------------------------------
# The model in the browser: a run folder (eyeful view RUN) and a run in training (--viewer).

#: small frames: the test checks that renders arrive, not how sharp they are
TEST_LIVE = dict(preview_height=36, full_height=96, still_s=0.1)


@pytest.fixture(scope="module")
def tiny_run(capture_v2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run of a few steps (CPU) on the converted synthetic capture."""
    from trainer_adapter.trainer import train

    result = train(
        capture_v2 / "images-jpeg-1k",
        preset="tiny",
        max_steps=20,
        output_dir=tmp_path_factory.mktemp("view-run"),
        device="cpu",
        timestamp="run",
    )
    return result.run_dir


def _wait_for(page, done, what: str, tries: int = 1200) -> None:
    """Let the page and the server work until ``done()`` (polled every 100 ms)."""
    for _ in range(tries):
        if done():
            return
        page.wait_for_timeout(100)
    pytest.fail(f"never happened: {what}")


def test_browser_camera_to_the_normalised_world() -> None:
    """viser's browser camera (OpenCV axes, wxyz) lands in the normalised world as a pose does."""
    import viser.transforms as vtf

    from eyeful_tools.cameras import pose_from_quaternion_wxyz, pose_in_world

    rotation = vtf.SO3.from_rpy_radians(0.3, -0.5, 1.1)
    pose = pose_from_quaternion_wxyz(rotation.wxyz, np.array([1.0, 2.0, 3.0]))
    assert np.allclose(pose[:3, :3], rotation.as_matrix()) and np.allclose(pose[:3, 3], [1, 2, 3])
    similarity = np.eye(4)
    similarity[:3, :3] = 0.5 * vtf.SO3.from_z_radians(0.7).as_matrix()
    similarity[:3, 3] = [0.1, -0.2, 0.3]
    moved = pose_in_world(similarity, pose)
    assert np.allclose(moved[:3, :3] @ moved[:3, :3].T, np.eye(3))  # still a rotation
    assert np.allclose(moved[:3, 3], similarity[:3, :3] @ [1, 2, 3] + similarity[:3, 3])
    # a point 2 m ahead of the camera is 1 unit ahead of it in the half-scale world
    ahead = pose @ [0.0, 0.0, 2.0, 1.0]
    assert np.allclose(similarity @ ahead, moved @ [0.0, 0.0, 1.0, 1.0])


def test_run_folder_renders_the_model_in_a_browser(tiny_run: Path, capture_v2: Path) -> None:
    from playwright.sync_api import sync_playwright

    from eyeful_tools.view.live import LiveSettings
    from trainer_adapter.live_render import RunFollower

    normalised = run_normalisation(tiny_run)
    content = load_content(find_transforms(tiny_run), normalised)
    follower = RunFollower(tiny_run, "cpu", settings=LiveSettings(**TEST_LIVE))
    assert follower.load() and follower.step == 19
    viewer = start_viewer(content, port=_free_port())
    cameras_only = start_viewer(content, port=_free_port())
    live = follower.start(viewer.server, normalised).live
    assert live is not None
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT)
            _open(page, viewer.server)

            def full_frame() -> bool:
                return any(frame.full for frame in live.shown.values())

            _wait_for(page, full_frame, "a full-resolution render in the browser")
            shot, _ = _screenshot(page, viewer.server, None)
            (frame,) = live.shown.values()
            plain, _ = _settled_screenshot(
                browser.new_page(viewport=VIEWPORT), cameras_only.server, None
            )
            browser.close()
    finally:
        follower.stop()
        viewer.stop()
        cameras_only.stop()
    # the server sent a background image: the browser camera's aspect, full height, not blank
    assert frame.shape == (96, 128, 3) and frame.full and 5 < frame.mean < 250, frame
    assert live.renders >= 2  # a preview, then the full frame
    # and the browser shows it: the page differs from the same camera without the model
    changed = (np.abs(shot.astype(int) - plain.astype(int)).max(axis=-1) > 30).mean()
    assert changed > 0.2, changed


def test_training_shows_in_the_viewer_and_finishes(capture_v2: Path, tmp_path: Path) -> None:
    """``train(..., observers=[TrainingView])``: a browser gets frames of the weights in
    training, re-rendered with newer weights, and the run completes. The gate holds training
    (between steps) until the browser has what the test waits for, so nothing depends on speed."""
    import threading

    from playwright.sync_api import sync_playwright

    from eyeful_tools.view.live import LiveSettings
    from trainer_adapter.live_render import TrainingView
    from trainer_adapter.trainer import train

    content = load_content(find_transforms(capture_v2))
    viewer = start_viewer(content, port=_free_port())
    view = TrainingView(viewer.server, refresh_s=0.0, settings=LiveSettings(**TEST_LIVE))

    class Gate:
        """Holds step 0 until a frame is shown, and the last step until a frame of newer
        weights is (asking the view again to copy them: it skips a copy while it renders)."""

        def __init__(self) -> None:
            self.versions: list[int] = []

        def on_step(self, trainer, step, stats) -> None:
            if step not in (0, 39):
                return
            want = 0 if step == 0 else 1
            for _ in range(1200):
                shown = [f.version for f in view.live.shown.values()] if view.live else []
                if any(v >= want for v in shown):
                    self.versions.append(max(shown))
                    return
                if want and view.live is not None and view.live.version < want:
                    view.on_step(trainer, step, stats)
                threading.Event().wait(0.1)
            raise AssertionError(f"no frame of version {want} reached the browser")

        def on_end(self, trainer) -> None:
            pass

    gate = Gate()
    results: list[object] = []

    def run() -> None:
        try:
            results.append(
                train(
                    capture_v2 / "images-jpeg-1k",
                    preset="tiny",
                    max_steps=40,
                    output_dir=tmp_path / "out",
                    device="cpu",
                    timestamp="live",
                    observers=[view, gate],
                )
            )
        except BaseException as error:  # reported below, in the test's thread
            results.append(error)

    training = threading.Thread(target=run)
    training.start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(f"http://127.0.0.1:{viewer.server.get_port()}")
            _wait_for(page, lambda: not training.is_alive(), "the end of training")
            browser.close()
    finally:
        training.join()
        viewer.stop()
    (result,) = results
    assert not isinstance(result, BaseException), result
    assert result.last_step == 39
    assert gate.versions[0] >= 0 and gate.versions[1] >= 1  # re-rendered with newer weights
    assert view.copied_step > 0 and view.live is not None
    assert view.live._thread is not None and not view.live._thread.is_alive()  # on_end stopped it


def test_cli_train_viewer_prints_its_url_and_finishes(capture_v2: Path, tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", "from eyeful_tools.cli import entry_point; entry_point()"]
    data = capture_v2 / "images-jpeg-1k"
    args = ["train", str(data), "--preset", "tiny", "--max-steps", "12", "--device", "cpu"]
    args += ["--output-dir", str(tmp_path), "--viewer", "--viewer-port", str(port)]
    done = subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"viewer: open http://127.0.0.1:{port} " in done.stdout, done.stdout
    assert list(tmp_path.glob("*/tiny/*/nerfstudio_models/step-000000011.ckpt"))


def test_cli_view_of_a_run_renders_its_model(tiny_run: Path) -> None:
    lines = _serve_cli(str(tiny_run), "--device", "cpu")
    assert "the model of step 19 rendered on cpu" in lines[0], lines


def _run_without_checkpoint(tiny_run: Path, tmp_path: Path) -> Path:
    """A run that has not saved yet (just started, or killed before its first checkpoint)."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "dataparser_transforms.json"):
        shutil.copy(tiny_run / name, run / name)
    return run


def _save_as_the_trainer_does(source: Path | bytes, target: Path) -> None:
    """Written under a hidden temp name beside ``target``, then renamed (fsio.atomic_stream)."""
    temp = target.parent / f".{target.name}.test-1.x.tmp.ckpt"
    temp.parent.mkdir(exist_ok=True)
    if isinstance(source, Path):
        shutil.copyfile(source, temp)
    else:
        temp.write_bytes(source)
    os.replace(temp, target)


def _saved(state: dict, tmp_path: Path) -> Path:
    import torch

    path = tmp_path / "state.ckpt"
    torch.save(state, path)
    return path


def _holds(model, pipeline: dict) -> bool:
    """Whether every weight and buffer of ``model`` is the checkpoint's."""
    import torch

    return all(torch.equal(value, pipeline[name]) for name, value in model.state_dict().items())


def _wait(condition, what: str) -> None:
    for _ in range(1200):
        if condition():
            return
        threading.Event().wait(0.05)
    pytest.fail(f"never happened: {what}")


def test_cli_view_of_a_run_without_checkpoint_waits_for_it(tiny_run: Path, tmp_path: Path) -> None:
    """``eyeful view RUN`` before the run's first save serves the cameras and says so; the
    checkpoint, once written, is rendered and a line says so; SIGTERM ends it as usual."""
    run = _run_without_checkpoint(tiny_run, tmp_path)
    with _cli_view(str(run), "--device", "cpu") as served:
        first = served.lines[0]
        assert "cameras of" in first and "the run has no checkpoint yet" in first, first
        assert str(run / "nerfstudio_models") in first, first
        checkpoint = tiny_run / "nerfstudio_models" / "step-000000019.ckpt"
        _save_as_the_trainer_does(checkpoint, run / "nerfstudio_models" / checkpoint.name)
        later = served.output.next("the line of the first checkpoint")  # polled every 2 s
        assert "the model of step 19 rendered on cpu (its first checkpoint)" in later, later
    # _cli_view checked the end: SIGTERM's usual line and exit, not a hang or a traceback


def test_a_run_followed_from_no_checkpoint_to_newer_ones(
    tiny_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The viewer of a run with no checkpoint draws its cameras and scene box; its first
    checkpoint is rendered once written, a newer one's weights replace the model's; a hidden
    temp file (a save in progress) is never read; a broken checkpoint is one warning line and
    the model shown stays. A fake browser camera stands in for a browser."""
    from types import SimpleNamespace

    import torch

    from eyeful_tools.view.live import LiveSettings
    from trainer_adapter.live_render import RunFollower

    run = _run_without_checkpoint(tiny_run, tmp_path)
    normalised = run_normalisation(run)
    content = load_content(find_transforms(run), normalised)
    said: list[str] = []
    means: list[float] = []
    scene = SimpleNamespace(set_background_image=lambda im, **_: means.append(float(im.mean())))
    client = SimpleNamespace(camera=_FakeCamera(), scene=scene)
    follower = RunFollower(
        run, "cpu", say=said.append, poll_s=0.05, settings=LiveSettings(8, 16, still_s=0.05),
        clients=lambda: {7: client},
    )  # fmt: skip
    assert not follower.load()
    caplog.set_level("WARNING")
    viewer = start_viewer(content, port=_free_port())
    follower.start(viewer.server, normalised)
    folder = run / "nerfstudio_models"
    try:
        # the cameras and the run's scene box, as for a dataset
        assert len(viewer.frustums) == len(content.cameras) > 0
        assert "/scene/box" in viewer.server.scene._handle_from_node_name
        folder.mkdir()
        (folder / ".step-000000099.ckpt.test-2.y.tmp.ckpt").write_bytes(b"half-written")
        first = tiny_run / "nerfstudio_models" / "step-000000019.ckpt"
        _save_as_the_trainer_does(first, folder / first.name)
        _wait(lambda: follower.live is not None and 7 in follower.live.shown, "a first frame")
        live, renderer = follower.live, follower.renderer
        assert live is not None and renderer is not None
        assert said == ["eyeful view: the model of step 19 rendered on cpu (its first checkpoint)"]
        assert 5 < live.shown[7].mean < 250 and live.shown[7].version == 0
        # a newer checkpoint: other weights, rendered again
        state = torch.load(first, weights_only=True)
        state["step"] = 29
        weights = dict(renderer.model.named_parameters())
        for name in state["pipeline"]:
            if name in weights:  # the weights (not buffers such as the scene box) moved
                state["pipeline"][name] = state["pipeline"][name] + 0.01
        _save_as_the_trainer_does(_saved(state, tmp_path), folder / "step-000000029.ckpt")
        _wait(lambda: live.shown[7].version == 1, "a frame of the newer checkpoint")
        assert follower.step == 29 and said[-1].endswith(
            "step 29 rendered on cpu (a newer checkpoint)"
        )
        assert _holds(renderer.model, state["pipeline"])
        assert not caplog.records  # the hidden temp file was never read
        _save_as_the_trainer_does(b"not a checkpoint", folder / "step-000000039.ckpt")
        _wait(lambda: len(caplog.records) == 1, "a warning")
        # one that does not fit the model (other weights, one of another shape): none copied
        misfit = {**state, "pipeline": {k: v + 0.01 for k, v in state["pipeline"].items()}}
        misfit["pipeline"][next(iter(weights))] = torch.zeros(3, 3)
        _save_as_the_trainer_does(_saved(misfit, tmp_path), folder / "step-000000049.ckpt")
        _wait(lambda: len(caplog.records) == 2, "a second warning")
        assert _holds(renderer.model, state["pipeline"])
    finally:
        follower.stop()
        viewer.stop()
    messages = [record.getMessage() for record in caplog.records]
    assert all(r.exc_info is None for r in caplog.records) and "\n" not in "".join(messages)
    assert messages[0].startswith(f"{folder / 'step-000000039.ckpt'}: not a loadable checkpoint (")
    assert messages[1].startswith(f"{folder / 'step-000000049.ckpt'}: checkpoint does not match")
    assert all(m.endswith("; still showing step 29") for m in messages), messages
    assert follower.step == 29 and len(said) == 2
    assert follower._thread is not None and not follower._thread.is_alive()


def _state_of_step(tiny_run: Path, step: int, tmp_path: Path) -> Path:
    """The tiny run's checkpoint saved as of ``step`` (same weights)."""
    import torch

    state = torch.load(tiny_run / "nerfstudio_models" / "step-000000019.ckpt", weights_only=True)
    state["step"] = step
    path = tmp_path / f"state-{step}.ckpt"
    torch.save(state, path)
    return path


def test_a_first_checkpoint_that_fails_is_one_warning_and_one_caught_half_written_loads_later(
    tiny_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run's first checkpoint that does not load is one warning, not read again while the
    file is unchanged; the next one loads. One caught half-written (nerfstudio's ns-train saves
    in place, without a temp file) is read again once complete."""
    from trainer_adapter.live_render import RunFollower

    run = _run_without_checkpoint(tiny_run, tmp_path)
    said: list[str] = []
    follower = RunFollower(run, "cpu", say=said.append)
    caplog.set_level("WARNING")
    folder = run / "nerfstudio_models"
    _save_as_the_trainer_does(b"not a checkpoint", folder / "step-000000009.ckpt")
    follower.poll()
    follower.poll()
    whole = (tiny_run / "nerfstudio_models" / "step-000000019.ckpt").read_bytes()
    target = folder / "step-000000019.ckpt"
    target.write_bytes(whole[: len(whole) // 2])  # listed while being written in place
    follower.poll()
    follower.poll()
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2 and all(m.endswith("; waiting for the next one") for m in messages)
    assert messages[0].startswith(f"{folder / 'step-000000009.ckpt'}: not a loadable checkpoint")
    assert messages[1].startswith(f"{target}: not a loadable checkpoint"), messages
    target.write_bytes(whole)  # the save goes on
    follower.poll()
    assert said == ["eyeful view: the model of step 19 rendered on cpu (its first checkpoint)"]
    assert follower.step == 19 and len(caplog.records) == 2


def test_a_checkpoint_deleted_before_it_is_read_is_passed_over_and_an_earlier_step_is_said(
    tiny_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    """The trainer deletes older checkpoints as it saves: one listed, then gone before it is
    read, is passed over without a line. A lower step (a run restarted in its folder) is not
    called newer. An error of many lines is a warning of one."""
    from trainer_adapter import live_render

    run = _run_without_checkpoint(tiny_run, tmp_path)
    folder = run / "nerfstudio_models"
    _save_as_the_trainer_does(tiny_run / "nerfstudio_models" / "step-000000019.ckpt",
                              folder / "step-000000019.ckpt")  # fmt: skip
    said: list[str] = []
    follower = live_render.RunFollower(run, "cpu", say=said.append)
    assert follower.load() and follower.step == 19
    caplog.set_level("WARNING")
    real_load = live_render.load_checkpoint

    def deleted_first(path: Path, **kwargs):
        path.unlink()  # the trainer saved a newer one and kept only that
        return real_load(path, **kwargs)

    monkeypatch.setattr(live_render, "load_checkpoint", deleted_first)
    _save_as_the_trainer_does(
        _state_of_step(tiny_run, 29, tmp_path), folder / "step-000000029.ckpt"
    )
    follower.poll()
    assert not caplog.records and not said and follower.step == 19
    monkeypatch.setattr(live_render, "load_checkpoint", real_load)
    _save_as_the_trainer_does(
        _state_of_step(tiny_run, 39, tmp_path), folder / "step-000000039.ckpt"
    )
    follower.poll()
    assert follower.step == 39 and said[-1].endswith("step 39 rendered on cpu (a newer checkpoint)")
    for path in folder.glob("step-*.ckpt"):
        path.unlink()  # a run started again in the same folder
    _save_as_the_trainer_does(_state_of_step(tiny_run, 9, tmp_path), folder / "step-000000009.ckpt")
    follower.poll()
    assert follower.step == 9 and said[-1].endswith(
        "step 9 rendered on cpu (replacing step 39: the run's latest checkpoint is now an earlier one)"
    ), said

    def many_lines(path: Path, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access\nCompile with TORCH_USE_CUDA_DSA")

    monkeypatch.setattr(live_render, "load_checkpoint", many_lines)
    _save_as_the_trainer_does(
        _state_of_step(tiny_run, 19, tmp_path), folder / "step-000000019.ckpt"
    )
    follower.poll()
    assert [record.getMessage() for record in caplog.records] == [
        f"{folder / 'step-000000019.ckpt'}: CUDA error: an illegal memory access;"
        " still showing step 9"
    ]


def test_the_follower_thread_outlives_a_closed_stdout_and_stops_during_a_load(
    tiny_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    """``eyeful view RUN | head``: a line that cannot be printed is a warning, and the run is
    still followed. Ctrl-C while the first checkpoint loads stops at once: the load, in a
    daemon thread, is not waited for, and nothing is said after."""
    from types import SimpleNamespace

    from trainer_adapter import live_render

    run = _run_without_checkpoint(tiny_run, tmp_path)
    folder = run / "nerfstudio_models"

    def closed_stdout(line: str) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    server = SimpleNamespace(on_client_connect=lambda _callback: None)
    follower = live_render.RunFollower(
        run, "cpu", say=closed_stdout, poll_s=0.05, clients=lambda: {}
    ).start(server, np.eye(4))
    caplog.set_level("WARNING")
    try:
        _save_as_the_trainer_does(
            _state_of_step(tiny_run, 19, tmp_path), folder / "step-000000019.ckpt"
        )
        _wait(lambda: follower.step == 19, "the first checkpoint")
        _save_as_the_trainer_does(
            _state_of_step(tiny_run, 29, tmp_path), folder / "step-000000029.ckpt"
        )
        _wait(lambda: follower.step == 29, "the newer checkpoint")
    finally:
        follower.stop()
    messages = [record.getMessage() for record in caplog.records]  # one a checkpoint
    assert messages and all("Broken pipe" in m and "\n" not in m for m in messages), messages
    # Ctrl-C during the first load
    loading, release = threading.Event(), threading.Event()
    outcome: list[str] = []

    def slow_load(*_args, **_kwargs):
        loading.set()
        outcome.append("released" if release.wait(20) else "never released")
        raise RuntimeError("the load went on after stop")

    monkeypatch.setattr(live_render, "load_run", slow_load)
    (tmp_path / "other").mkdir()
    other = _run_without_checkpoint(tiny_run, tmp_path / "other")
    caplog.clear()
    waiting = live_render.RunFollower(other, "cpu", say=closed_stdout, poll_s=0.05)
    waiting.start(server, np.eye(4))
    _save_as_the_trainer_does(b"any", other / "nerfstudio_models" / "step-000000019.ckpt")
    assert loading.wait(LINE_DEADLINE_S), "the follower never loaded"
    waiting.stop()  # without a short wait: here until slow_load gives up
    release.set()
    assert waiting._thread is not None
    waiting._thread.join(LINE_DEADLINE_S)
    assert outcome == ["released"] and not caplog.records


def test_cli_view_of_a_run_whose_latest_checkpoint_is_corrupt_is_one_error_line(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _run_without_checkpoint(tiny_run, tmp_path)
    checkpoint = run / "nerfstudio_models" / "step-000000019.ckpt"
    _save_as_the_trainer_does(b"not a checkpoint", checkpoint)
    assert main(["view", str(run), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith(f"error: {checkpoint}: not a loadable checkpoint (") and err.count("\n") == 1
    ), err


def test_a_checkpoint_with_a_value_that_is_not_a_tensor_is_refused_before_any_copy(
    tiny_run: Path,
) -> None:
    """A 0-d buffer (``steps_since_update``) stored as a plain int passes a shape check;
    ``load_state_dict`` would copy the other weights before it raised."""
    from eyeful_tools.errors import InputFormatError
    from trainer_adapter.checkpoints import load_checkpoint, load_model_state
    from trainer_adapter.evaluate import load_run

    model = load_run(tiny_run, "cpu").model
    path = tiny_run / "nerfstudio_models" / "step-000000019.ckpt"
    state = load_checkpoint(path)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    moved = {k: v + 1 if v.is_floating_point() else v for k, v in state["pipeline"].items()}
    (counter,) = [name for name in moved if name.endswith("steps_since_update")]
    moved[counter] = 3
    with pytest.raises(InputFormatError, match="checkpoint does not match the model") as refused:
        load_model_state(model, {**state, "pipeline": moved}, path)
    assert _holds(model, before)  # no weight copied
    assert f"{counter} is not a tensor (int)" in str(refused.value)


class _FakeCamera:
    """A browser camera as viser's server sees it (OpenCV axes, wxyz), moved by the test."""

    def __init__(self) -> None:
        self.wxyz = np.array([1.0, 0.0, 0.0, 0.0])
        self.position = np.zeros(3)
        self.fov, self.aspect, self.update_timestamp = 1.0, 2.0, 1.0

    def on_update(self, _callback) -> None:
        pass


def test_progressive_frames_preview_full_interrupted_and_failures() -> None:
    """No browser, no model: the render thread's choices. A preview when the camera (or the
    model) changes, the full frame once it is still, a full frame abandoned when the camera
    moves during it, and a failing frame does not end the thread."""
    import threading
    from types import SimpleNamespace

    from eyeful_tools.view.live import LiveRender, LiveSettings

    camera = _FakeCamera()
    sent: list[tuple[int, ...]] = []
    client = SimpleNamespace(
        camera=camera,
        scene=SimpleNamespace(set_background_image=lambda im, **_: sent.append(im.shape)),
    )
    calls: list[int] = []
    moving = threading.Event()
    fail_next = threading.Event()

    def render(pose, fov, width, height, interrupted):
        calls.append(height)
        if fail_next.is_set():
            fail_next.clear()
            raise RuntimeError("out of memory")
        if moving.is_set() and height == 20:  # the user moves during the full frame
            camera.position = camera.position + 1.0
            moving.clear()
            assert interrupted()
            return None
        assert np.allclose(pose[:3, 3], 2.0 * camera.position)  # the scale-2 normalised world
        return np.full((height, width, 3), 128, np.uint8)

    server = SimpleNamespace(on_client_connect=lambda _f: None, get_clients=lambda: {7: client})
    live = LiveRender(
        server, np.diag([2.0, 2.0, 2.0, 1.0]), render, LiveSettings(10, 20, still_s=0.05)
    ).start()

    def wait(condition) -> None:
        for _ in range(600):
            if condition():
                return
            threading.Event().wait(0.05)
        pytest.fail(f"render thread stuck: {calls}")

    try:
        wait(lambda: live.shown.get(7) is not None and live.shown[7].full)
        assert sent[:2] == [(10, 20, 3), (20, 40, 3)]  # preview, then full, at the aspect
        moving.set()
        live.invalidate()  # new weights: a preview, then a full frame that the move interrupts
        wait(lambda: not moving.is_set() and live.shown[7].full and len(sent) >= 5)
        assert calls[2:6] == [10, 20, 10, 20] and sent[2:5] == [
            (10, 20, 3),
            (10, 20, 3),
            (20, 40, 3),
        ]
        fail_next.set()
        live.invalidate()
        wait(lambda: live.failures == 1 and live.shown[7].version == live.version)
    finally:
        live.stop()


def test_a_failing_frame_is_one_warning_line_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A frame that keeps failing (out of memory on the device) is one warning line, with no
    traceback, however often it is retried; the thread goes on."""
    import threading
    from types import SimpleNamespace

    from eyeful_tools.view.live import LiveRender, LiveSettings

    camera = SimpleNamespace(
        update_timestamp=1.0, wxyz=(1.0, 0, 0, 0), position=(0.0, 0, 0), fov=1.0, aspect=1.0,
        on_update=lambda callback: None,
    )  # fmt: skip
    clients = {0: SimpleNamespace(camera=camera)}
    server = SimpleNamespace(on_client_connect=lambda callback: None, get_clients=lambda: clients)
    tried = threading.Event()
    calls: list[int] = []

    def render(*_args: object) -> None:
        calls.append(1)
        if len(calls) >= 3:
            tried.set()
        raise RuntimeError("CUDA out of memory")

    caplog.set_level("WARNING")
    live = LiveRender(server, np.eye(4), render, LiveSettings(**TEST_LIVE)).start()
    assert tried.wait(60)  # three failing frames
    alive = live._thread is not None and live._thread.is_alive()
    live.stop()
    assert alive
    records = [r for r in caplog.records if r.name == "eyeful_tools.view.live"]
    assert [(r.getMessage(), r.exc_info) for r in records] == [
        ("live render failed: CUDA out of memory", None)
    ]


def test_train_viewer_starts_on_a_dataset_with_only_downscaled_images(
    capture_v2: Path, tmp_path: Path
) -> None:
    """``train --downscale 2 --viewer`` where only ``images_2/`` is left: the viewer reads the
    images training reads (it parsed ``images/``, refusing what training accepts)."""
    import shutil

    from eyeful_tools.cli.train import _start_viewer
    from eyeful_tools.downscale import downscale
    from trainer_adapter.trainer import resolve_options

    data = tmp_path / "data"
    shutil.copytree(capture_v2 / "images-jpeg-1k", data)
    downscale(data, [2], jobs=1)
    for folder in data.iterdir():  # the full-size images (one folder per camera)
        if folder.is_dir() and folder.name != "images_2":
            shutil.rmtree(folder)
    options, _ = resolve_options(
        data, preset="tiny", load_dir=None,
        settings={"downscale": 2, "output_dir": tmp_path / "out", "device": "cpu"},
    )  # fmt: skip
    observers, stop = _start_viewer(options, "127.0.0.1", _free_port())
    stop()
    assert len(observers) == 1


def test_under_torchrun_only_rank_0_serves_the_viewer(monkeypatch: pytest.MonkeyPatch) -> None:
    from eyeful_tools.cli.train import _serves_viewer

    monkeypatch.delenv("RANK", raising=False)
    assert _serves_viewer(True) and not _serves_viewer(False)
    monkeypatch.setenv("RANK", "0")
    assert _serves_viewer(True)
    monkeypatch.setenv("RANK", "1")
    assert not _serves_viewer(True)
