"""Kill test: each long command is SIGKILLed at seeded random points, then run again; the final
output must be byte-identical to an uninterrupted run's and no hidden leftovers may remain.

"Final output" is every file the command writes, hidden ones included (downscale's source
record), compared byte for byte. For ``train`` it is the run folder (``config.json``,
``dataparser_transforms.json``, the checkpoints, ``curves.png``; not the measured timings):
a re-run starts a new timestamped folder, so the newest one is compared with the uninterrupted
run's; the killed run's own folder may stay (it is visible and named as a run), but must hold
only complete files and no temps.

Only the parent is killed: pool workers must die with it (procpool), not be reaped by us.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from eyeful_tools.fsio import _TEMP_NAME

ROOT = Path(__file__).parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
EYEFUL = [sys.executable, "-c", "from eyeful_tools.cli import entry_point; entry_point()"]


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones too) -> its bytes; links -> their target."""
    tree = {}
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        if path.is_symlink():
            tree[key] = b"-> " + os.fsencode(os.readlink(path))
        elif path.is_file():
            tree[key] = path.read_bytes()
        elif not any(path.iterdir()):
            tree[key + "/"] = b""
    return tree


def _run(argv: list[str]) -> None:
    done = subprocess.run([*EYEFUL, *argv], env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _entries(root: Path) -> set[Path]:
    """Everything under ``root``, walked again when a folder vanishes mid-walk (the command
    renames its temp folders into place while it is polled)."""
    while True:
        try:
            return set(root.rglob("*"))
        except FileNotFoundError:
            continue


def _start(argv: list[str], root: Path) -> tuple[subprocess.Popen, float]:
    """Start the command; return once it has created its first file or folder under ``root``
    (or exited), with the seconds that took: kill points fall in the writing, not in the
    seconds of imports before it."""
    before = _entries(root)
    start = time.monotonic()
    process = subprocess.Popen(
        [*EYEFUL, *argv], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    while process.poll() is None and _entries(root) <= before:
        time.sleep(0.02)
    return process, time.monotonic() - start


def _timed_run(argv: list[str], root: Path) -> float:
    """Seconds from the first write to the end of an uninterrupted run."""
    process, first_write_s = _start(argv, root)
    start = time.monotonic() - first_write_s
    _, err = process.communicate()
    assert process.returncode == 0, err
    return max(time.monotonic() - start - first_write_s, 0.01)


def _kill_after(argv: list[str], root: Path, delay_s: float) -> None:
    """Start the command and SIGKILL it (the parent only) ``delay_s`` after its first write."""
    process, _ = _start(argv, root)
    try:
        process.wait(timeout=delay_s)  # finished before the kill point: also a valid case
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()


def _restore(root: Path, initial: dict[str, bytes]) -> None:
    """Remove everything a run added under ``root``; the inputs must be untouched."""
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        key = path.relative_to(root).as_posix()
        if key in initial or key + "/" in initial:
            continue
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()) or not any(k.startswith(key + "/") for k in initial):
                shutil.rmtree(path)
        else:
            path.unlink()
    assert {k: v for k, v in _snapshot(root).items() if k in initial} == initial


def _no_temps(root: Path) -> None:
    leftovers = [
        p for p in root.rglob("*") if _TEMP_NAME.match(p.name) or p.name.endswith(".swap.json")
    ]
    assert not leftovers, leftovers


def _kill_and_rerun(
    argv: list[str],
    root: Path,
    output: Callable[[Path], dict[str, bytes]],
    seed: int,
    kills: int = 2,
) -> None:
    """The uninterrupted run's output, then ``kills`` killed-and-rerun rounds compared to it."""
    initial = _snapshot(root)
    writing_s = _timed_run(argv, root)
    expected = output(root)
    rng = random.Random(seed)
    for _ in range(kills):
        _restore(root, initial)
        _kill_after(argv, root, rng.uniform(0.0, 1.0) * writing_s)
        _run(argv)
        assert output(root) == expected
        _no_temps(root)


@pytest.fixture
def capture(synth_v2: Path, tmp_path: Path) -> Path:
    root = tmp_path / "work"
    shutil.copytree(synth_v2, root / "cap")
    return root


def _without_inputs(initial: dict[str, bytes]) -> Callable[[Path], dict[str, bytes]]:
    return lambda root: {k: v for k, v in _snapshot(root).items() if k not in initial}


def test_convert_killed_and_rerun(capture: Path) -> None:
    argv = ["convert", str(capture / "cap")]
    _kill_and_rerun(argv, capture, _without_inputs(_snapshot(capture)), seed=1)


def test_downscale_killed_and_rerun(capture: Path) -> None:
    _run(["convert", str(capture / "cap"), "--resolution", "jpeg_2k"])
    argv = ["downscale", str(capture / "cap" / "images-jpeg-2k"), "--factor", "2", "--jobs", "2"]
    _kill_and_rerun(argv, capture, _without_inputs(_snapshot(capture)), seed=2, kills=3)


def test_import_killed_and_rerun(tmp_path: Path) -> None:
    """record3d -> dataset: --overwrite, since a kill after the swap leaves a finished one."""
    import ios_fixtures as fx

    views = fx.make_views(fx.RECORD3D_CAMERA, 6, fx.DEPTH_SIZE_PX)
    root = tmp_path / "work"
    fx.write_record3d_folder(root / "r3d", views)
    argv = ["import", "record3d", str(root / "r3d"), "--out", str(root / "out"), "--overwrite"]
    _kill_and_rerun(argv, root, _without_inputs(_snapshot(root)), seed=3)


def _newest_run(root: Path) -> dict[str, bytes]:
    """The newest run folder's files; every other run folder holds only complete files."""
    runs = sorted((root / "runs").glob("*/*/*/"))
    assert runs
    for earlier in runs[:-1]:
        for path in earlier.rglob("*"):
            if path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".ckpt":
                with zipfile.ZipFile(path) as archive:
                    assert archive.testzip() is None
    return _without_timings(_snapshot(runs[-1]))


#: coverage.json's measured seconds (decode wait, wall time): the run's observations, not its
#: output; every other byte, the checkpoints' included, must match.
TIMINGS = ("decode_ms_per_image", "decode_wait_s", "fill_s", "wall_s")


#: the training curves' raw logs: wall-clock stamps and measured speeds in every line or event
#: (and the host and pid in the event file's name) are observations too. Their steps and losses
#: are still compared, through curves.png, which plots only those.
def _is_observation_log(key: str) -> bool:
    return key == "metrics.jsonl" or key.startswith("events.out.tfevents.")


def _without_timings(tree: dict[str, bytes]) -> dict[str, bytes]:
    logs = [key for key in tree if _is_observation_log(key)]
    assert len(logs) == 2, logs  # metrics.jsonl and one event file
    tree = {key: value for key, value in tree.items() if key not in logs}
    report = tree.get("coverage.json")
    if report is not None:
        coverage = json.loads(report)
        assert all(key in coverage for key in TIMINGS), coverage.keys()
        kept = {key: value for key, value in coverage.items() if key not in TIMINGS}
        tree["coverage.json"] = json.dumps(kept).encode()
    return tree


def test_train_killed_and_rerun(capture: Path) -> None:
    _run(["convert", str(capture / "cap"), "--resolution", "jpeg_1k"])
    argv = ["train", str(capture / "cap" / "images-jpeg-1k"), "--preset", "tiny"]
    argv += ["--max-steps", "2", "--device", "cpu", "--output-dir", str(capture / "runs")]
    _kill_and_rerun(argv, capture, _newest_run, seed=4, kills=1)  # torch start-up is slow
