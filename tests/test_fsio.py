"""Atomic writes: all or nothing, no temp files left, and the permissions a plain open() gives."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from eyeful_tools import fsio, imageio
from eyeful_tools.cli import os_error_line as main_line
from eyeful_tools.errors import InputFormatError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A group/world-readable umask for the test (the runner's own may be 077), with fsio's
    modes re-derived from it the way fsio derives them at import."""
    previous = os.umask(0o022)
    try:
        assert fsio._process_umask() == 0o022
        monkeypatch.setattr(fsio, "FILE_MODE", 0o666 & ~fsio._process_umask())
        monkeypatch.setattr(fsio, "DIR_MODE", 0o777 & ~fsio._process_umask())
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("umask_022")
def test_outputs_get_the_mode_of_a_plain_open(tmp_path: Path) -> None:
    """mkstemp/mkdtemp create 0600/0700; what we write must be as readable as any file the
    user's umask allows (others read datasets on shared machines)."""
    plain_file = tmp_path / "plain.txt"
    plain_file.write_text("x")
    plain_dir = tmp_path / "plain_dir"
    plain_dir.mkdir()
    fsio.atomic_write_text(tmp_path / "a.json", "{}")
    fsio.atomic_write_bytes(tmp_path / "b.bin", b"123")
    imageio.write_image(tmp_path / "c.jpg", np.zeros((4, 4, 3), np.uint8))
    imageio.write_image(tmp_path / "d.exr", np.ones((4, 4, 3), np.float32))
    with fsio.atomic_dir(tmp_path / "built") as build:
        (build / "inside.txt").write_text("y")
    for name in ("a.json", "b.bin", "c.jpg", "d.exr"):
        assert _mode(tmp_path / name) == _mode(plain_file), name
    assert _mode(tmp_path / "built") == _mode(plain_dir)
    assert _mode(plain_file) & stat.S_IRGRP  # the check above is not 0600 == 0600


class Boom(Exception):
    pass


def _fail_in_atomic_open(target: Path) -> None:
    with fsio.atomic_open(target, "w") as handle:
        handle.write("half")
        raise Boom


def _fail_in_atomic_path(target: Path) -> None:
    with fsio.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise Boom


def _fail_in_atomic_write_bytes(target: Path) -> None:
    fsio.atomic_write_bytes(target, 12345)  # type: ignore[arg-type]  # not bytes: write raises


@pytest.mark.parametrize(
    "fail", [_fail_in_atomic_open, _fail_in_atomic_path, _fail_in_atomic_write_bytes]
)
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path, fail) -> None:
    target = tmp_path / "data.json"
    target.write_text("old")
    with pytest.raises((Boom, TypeError)):
        fail(target)
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["data.json"]


def test_atomic_write_bytes_writes_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.bin"
    fsio.atomic_write_bytes(target, b"first")
    fsio.atomic_write_bytes(target, memoryview(b"second"))
    assert target.read_bytes() == b"second"
    assert sorted(os.listdir(target.parent)) == ["out.bin"]


# ---------------------------------------------------------------------------------------------
# --overwrite swaps (B10) and leftovers of killed runs.


def _build(target: Path, text: str) -> None:
    with fsio.atomic_dir(target) as build:
        (build / "data.txt").write_text(text)


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "journaled"])
def test_atomic_dir_replaces_in_one_step(tmp_path: Path, monkeypatch, exchange: bool) -> None:
    if not exchange:
        monkeypatch.setattr(fsio, "exchange", lambda a, b: False)
    else:
        assert fsio._renameat2 is not None  # Linux/glibc: the atomic path is the one tested
    target = tmp_path / "out"
    _build(target, "old")
    _build(target, "new")
    assert (target / "data.txt").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _leftover(folder: Path, name: str, kind: str, pid: int) -> Path:
    """A temp of ours as a run with ``pid`` names it."""
    path = folder / f".{name}.{fsio._HOST_TAG}-{pid}.abcd1234.{kind}"
    return path


def test_a_swap_killed_between_its_renames_is_completed(tmp_path: Path) -> None:
    """The journaled swap (no renameat2) killed after moving the old folder aside: nothing at
    --out. The next run finds the journal, puts the finished new folder in, drops the old."""
    pid = _dead_pid()
    target = tmp_path / "out"
    new = _leftover(tmp_path, "out", "tmp", pid)
    old = _leftover(tmp_path, "out", "old", pid)
    new.mkdir()
    (new / "data.txt").write_text("new")
    old.mkdir()
    (old / "data.txt").write_text("old")
    (tmp_path / ".out.swap.json").write_text(json.dumps({"new": new.name, "old": old.name}))
    assert not target.exists()
    removed = fsio.clean_stale_temps(tmp_path)
    assert removed == []  # nothing left over once the swap is finished
    assert (target / "data.txt").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_a_journal_cannot_name_other_files(tmp_path: Path) -> None:
    """A crafted journal must not make the next run move or delete the user's files."""
    (tmp_path / "precious").mkdir()
    (tmp_path / ".out.swap.json").write_text(json.dumps({"new": "precious", "old": "x"}))
    with pytest.raises(InputFormatError, match="swap journal names precious"):
        fsio.finish_swap(tmp_path / "out")
    assert (tmp_path / "precious").is_dir()


def test_temps_of_dead_runs_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    dead = _dead_pid()
    stale_file = _leftover(tmp_path, "a.jpg", "tmp.jpg", dead)
    stale_file.write_bytes(b"half")
    stale_dir = _leftover(tmp_path, "out", "tmp", dead)
    stale_dir.mkdir()
    live = _leftover(tmp_path, "b.jpg", "tmp.jpg", os.getpid())
    live.write_bytes(b"being written")
    other_host = tmp_path / ".c.jpg.zzzz-1.abcd1234.tmp.jpg"  # not ours to judge
    other_host.write_bytes(b"?")
    user = tmp_path / ".hidden-user-file.tmp"
    user.write_text("mine")
    fsio.atomic_write_text(tmp_path / "a.jpg", "done")  # the first write here sweeps
    assert sorted(os.listdir(tmp_path)) == sorted(["a.jpg", live.name, other_host.name, user.name])


@pytest.mark.parametrize(
    ("code", "reason"),
    [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")],
)
def test_write_errors_name_the_final_file(tmp_path: Path, monkeypatch, code, reason) -> None:
    """A failed write() names no file and a temp name means nothing: the error names the
    output, and nothing is left behind."""

    class Full:
        def write(self, data: bytes) -> int:
            raise OSError(code, os.strerror(code))

    target = tmp_path / "sub" / "x.bin"
    with pytest.raises(OSError) as caught, fsio.atomic_open(target, "wb") as handle:
        Full().write(b"x")
        handle.write(b"never")
    assert caught.value.errno == code and caught.value.filename == str(target)
    assert main_line(caught.value) == f"{target}: {reason}"
    with pytest.raises(OSError) as inside, fsio.atomic_dir(tmp_path / "d") as build:
        raise OSError(code, os.strerror(code), str(build / "f.json"))
    assert inside.value.filename == str(tmp_path / "d" / "f.json")
    assert os.listdir(tmp_path / "sub") == [] and sorted(os.listdir(tmp_path)) == ["sub"]


# ---------------------------------------------------------------------------------------------
# OS errors through the CLI (B4): one line naming the file, exit 1, in every command.


@pytest.fixture
def dataset(synth_v2: Path, tmp_path: Path) -> Path:
    """A converted copy of the synthetic capture (commands write into it)."""
    from eyeful_tools.cli import main

    capture = tmp_path / "cap"
    shutil.copytree(synth_v2, capture)
    assert main(["convert", str(capture), "--resolution", "jpeg_1k"]) == 0
    return capture / "images-jpeg-1k"


def _commands(data: Path, tmp: Path) -> dict[str, list[str]]:
    return {
        "convert": ["convert", str(data.parent), "--resolution", "jpeg_1k"],
        "split": ["split", str(data / "transforms.json"), "--out", str(data / "t2.json")],
        "downscale": ["downscale", str(data), "--factor", "2", "--jobs", "1"],
        "export": ["export", "colmap", str(data), "--out", str(tmp / "col")],
        "synth": ["synth", str(tmp / "s"), "--positions", "1", "--size", "24x36"],
    }


@pytest.mark.parametrize(
    ("command", "code"),
    [
        ("convert", errno.EACCES),
        ("split", errno.EROFS),
        ("downscale", errno.ENOSPC),
        ("export", errno.ENOENT),
        ("synth", errno.ENOSPC),
    ],
)
def test_os_errors_are_one_line(dataset: Path, tmp_path: Path, monkeypatch, capsys, command, code):
    from eyeful_tools.cli import main

    argv = _commands(dataset, tmp_path)[command]
    capsys.readouterr()
    real_replace = os.replace

    def failing(src, dst) -> None:
        if str(dst).startswith(str(tmp_path)):
            raise OSError(code, os.strerror(code), str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {tmp_path}") and err.endswith(f": {os.strerror(code)}"), err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "command", ["convert", "split", "downscale", "export", "synth", "train", "import"]
)
def test_a_read_only_output_names_the_output_not_a_temp(
    dataset: Path, tmp_path: Path, monkeypatch, capsys, command: str
) -> None:
    """On a read-only file system the first thing that fails is creating the temp file or build
    folder, whose name (``.transforms.json.<host>-<pid>.<random>.tmp.json``) means nothing to
    the user: the line names the output instead."""
    import tempfile

    import ios_fixtures as fx

    from eyeful_tools.cli import main

    argv = {
        **_commands(dataset, tmp_path),
        "train": ["train", str(dataset), "--preset", "tiny", "--max-steps", "1", "--device",
                  "cpu", "--output-dir", str(tmp_path / "runs")],
        "import": ["import", "polycam", str(fx.write_polycam_folder(tmp_path / "pc",
                   fx.make_views(fx.POLYCAM_CAMERA, 3, fx.POLYCAM_DEPTH_SIZE_PX))),
                   "--out", str(tmp_path / "imported")],
    }[command]  # fmt: skip
    real = {name: getattr(tempfile, name) for name in ("mkstemp", "mkdtemp")}

    def read_only(name: str):
        def create(*args, prefix: str = "", suffix: str = "", dir: str = "", **kwargs):
            if str(dir).startswith(str(tmp_path)):
                temp = os.path.join(dir, f"{prefix}abcd1234{suffix}")
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), temp)
            return real[name](*args, prefix=prefix, suffix=suffix, dir=dir, **kwargs)

        return create

    capsys.readouterr()
    for name in real:
        monkeypatch.setattr(tempfile, name, read_only(name))
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {tmp_path}"), err
    assert err.endswith(": Read-only file system") and ".tmp" not in err, err


@pytest.mark.parametrize("command", ["convert", "split", "downscale", "export", "train", "import"])
def test_an_unreadable_input_is_one_line(
    dataset: Path, tmp_path: Path, monkeypatch, capsys, command: str
) -> None:
    """EACCES on an input (as root, chmod cannot make one, so it is injected where Python opens
    the input folder's files): one line naming the file, exit 1."""
    import builtins
    import io

    import ios_fixtures as fx

    from eyeful_tools.cli import main

    phone = fx.write_polycam_folder(
        tmp_path / "pc", fx.make_views(fx.POLYCAM_CAMERA, 3, fx.POLYCAM_DEPTH_SIZE_PX)
    )
    argv = {
        **_commands(dataset, tmp_path),
        "train": ["train", str(dataset), "--preset", "tiny", "--max-steps", "1", "--device",
                  "cpu", "--output-dir", str(tmp_path / "runs")],
        "import": ["import", "polycam", str(phone), "--out", str(tmp_path / "imported")],
    }[command]  # fmt: skip
    inputs = (str(dataset.parent), str(phone))
    real_open = builtins.open

    def guarded(file, mode="r", *args, **kwargs):
        name = os.fsdecode(file) if isinstance(file, str | bytes | os.PathLike) else ""
        if name.startswith(inputs) and "r" in mode and "+" not in mode:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), name)
        return real_open(file, mode, *args, **kwargs)

    capsys.readouterr()
    monkeypatch.setattr(builtins, "open", guarded)
    monkeypatch.setattr(io, "open", guarded)
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert err.endswith(": Permission denied") and err[7:].startswith(inputs), err


@pytest.mark.parametrize("command", ["downscale", "train"])
def test_a_full_disk_is_one_line(dataset: Path, tmp_path: Path, command: str) -> None:
    """A real failing write in a subprocess (RLIMIT_FSIZE: writes past 1 KB fail with EFBIG,
    as a full disk fails them with ENOSPC): in downscale's pool workers and in torch.save,
    which hides the errno behind a RuntimeError."""
    import resource
    import signal

    argv = {
        "downscale": ["downscale", str(dataset), "--factor", "2", "--jobs", "2"],
        "train": [
            "train",
            str(dataset),
            "--preset",
            "tiny",
            "--max-steps",
            "2",
            "--device",
            "cpu",
            "--output-dir",
            str(tmp_path / "runs"),
        ],
    }[command]

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-c", "from eyeful_tools.cli import entry_point; entry_point()", *argv],
        preexec_fn=limit,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    err = run.stderr.strip()
    assert run.returncode == 1, err
    assert len(err.splitlines()) == 1 and err.endswith(": File too large"), err
    assert err.startswith(f"error: {tmp_path}"), err


# ---------------------------------------------------------------------------------------------
# Pool workers never outlive the parent (B9).

_PARENT = """
import os, sys, time
from eyeful_tools import procpool

def main():
    pool = procpool.make_pool(2)
    pids = [pool.submit(os.getpid).result() for _ in range(4)]
    print(" ".join(str(p) for p in set(pids)), flush=True)
    time.sleep(600)

if __name__ == "__main__":
    main()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead: it only waits for a parent to reap it
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


@pytest.mark.parametrize("signum", ["SIGKILL", "SIGTERM"])
def test_workers_die_with_their_parent(tmp_path: Path, signum: str) -> None:
    import signal
    import time

    script = tmp_path / "parent.py"
    script.write_text(_PARENT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert parent.stdout is not None
    workers = [int(p) for p in parent.stdout.readline().split()]
    assert workers and all(_alive(p) for p in workers)
    parent.send_signal(getattr(signal, signum))
    parent.wait(timeout=60)
    deadline = time.monotonic() + 60  # a bound on waiting, not a timing assertion
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in workers)


def test_downscale_checks_free_space_before_writing(dataset: Path, monkeypatch, capsys) -> None:
    from collections import namedtuple

    from eyeful_tools.cli import main

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(fsio.shutil, "disk_usage", lambda path: usage(1 << 40, 0, 10 << 20))
    capsys.readouterr()
    assert main(["downscale", str(dataset), "--factor", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {dataset}: not enough free space: downscaling 32 files needs")
    assert len(err.splitlines()) == 1
    assert not (dataset / "images_2").exists()


_SIGNAL_MID_WRITE = """
import os, signal, sys, time
from eyeful_tools import fsio
from eyeful_tools.cli import main

real = fsio._replacing.__wrapped__

def interrupted(tmp, path):
    os.kill(os.getpid(), getattr(signal, sys.argv[1]))  # arrives while the temp exists
    time.sleep(30)
    yield

fsio._replacing = fsio.contextlib.contextmanager(lambda tmp, path: _wrap(tmp, path))

def _wrap(tmp, path):
    gen = real(tmp, path)
    next(gen)
    try:
        yield from interrupted(tmp, path)
    except BaseException as error:
        gen.throw(error)
    else:
        next(gen, None)

sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize(
    ("signum", "code", "line"),
    [
        ("SIGINT", 130, "error: interrupted; no output was left half-written"),
        ("SIGTERM", 143, "error: terminated (SIGTERM); no output was left half-written"),
    ],
)
def test_ctrl_c_and_sigterm_are_one_line_and_leave_no_temp(
    dataset: Path, tmp_path: Path, signum: str, code: int, line: str
) -> None:
    """Ctrl-C exited 130 with no message (typer swallowed the KeyboardInterrupt) and SIGTERM
    killed the process where it stood; both now unwind: the temp is removed, one line."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    out = dataset / "t2.json"
    argv = ["split", str(dataset / "transforms.json"), "--out", str(out)]
    run = subprocess.run(
        [sys.executable, "-c", _SIGNAL_MID_WRITE, signum, *argv],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == code, run.stderr
    assert run.stderr.strip() == line
    assert not out.exists() and not [p for p in dataset.iterdir() if p.name.startswith(".")]


def test_temps_of_older_versions_are_reported_not_removed(tmp_path: Path, caplog) -> None:
    """The two-rename swap of earlier versions left .<name>.<random>.old: whose run it was
    cannot be known, so it is named in a warning and kept."""
    legacy = tmp_path / ".out.k2j4h5g6.old"
    legacy.mkdir()
    with caplog.at_level("WARNING", logger="eyeful_tools.fsio"):
        assert fsio.clean_stale_temps(tmp_path) == []
    assert ".out.k2j4h5g6.old" in caplog.text and legacy.is_dir()


def test_an_exr_write_on_a_full_disk_is_an_os_error_naming_the_file(tmp_path: Path) -> None:
    """OpenEXR reports a failed write as a RuntimeError quoting strerror (synth on a full disk
    ended in a traceback): it becomes the OSError behind it, naming the final file. A real
    failing write: RLIMIT_FSIZE makes writes past 1 KB fail with EFBIG."""
    script = (
        "import resource, signal, numpy as np\n"
        "from eyeful_tools.imageio import write_image\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))\n"
        "try:\n"
        f"    write_image({str(tmp_path / 'x.exr')!r}, np.random.rand(64, 64, 3))\n"
        "except OSError as error:\n"
        "    print(error.errno, error.filename)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert run.stdout.split() == [str(errno.EFBIG), str(tmp_path / "x.exr")], run.stderr
    assert os.listdir(tmp_path) == []
