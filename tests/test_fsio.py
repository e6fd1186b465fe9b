"""Atomic writes: all or nothing, no temp files left, and the permissions a plain open() gives."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from eyeful_tools import fsio, imageio


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
