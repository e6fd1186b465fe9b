"""Building ``--compile``'s C++ kernels (``trainer_adapter.model.hashgrid_cpu``): what a user
sees when the build cannot happen or fails, in one line."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from trainer_adapter.model import hashgrid_cpu


def test_a_lock_left_by_a_killed_build_is_named_not_waited_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch waits forever on a build folder's lock; one left by a killed build is reported."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(hashgrid_cpu, "toolchain_problem", lambda: None)
    lock = hashgrid_cpu.build_dir() / "lock"
    lock.parent.mkdir(parents=True)
    lock.touch()
    old = time.time() - hashgrid_cpu.STALE_LOCK_S - 60
    os.utime(lock, (old, old))
    assert hashgrid_cpu.build_problem() == f"{lock}: {STALE}"


STALE = "held for over 600 s, left by a build that did not finish (killed?); remove it to rebuild"


def test_a_fresh_lock_is_waited_on_until_it_goes_or_turns_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A build running elsewhere is waited for; a lock a build killed moments ago is reported
    once it is older than STALE_LOCK_S, never waited on forever."""
    import threading

    lock = tmp_path / "lock"
    lock.touch()
    threading.Timer(1.5, lock.unlink).start()  # the other build finishes
    tic = time.monotonic()
    assert hashgrid_cpu._wait_for_lock(lock) is None
    assert time.monotonic() - tic >= 1.0
    assert caplog.text.count("waiting for another build of the C++ kernels") == 1  # said once
    lock.touch()
    monkeypatch.setattr(hashgrid_cpu, "STALE_LOCK_S", 2.0)  # a killed build's lock ages out
    assert hashgrid_cpu._wait_for_lock(lock) == f"{lock}: {STALE.replace('600', '2')}"


def test_build_folders_are_named_by_source_and_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkouts with other sources (or another torch) never load each other's build."""
    first = hashgrid_cpu.build_dir()
    other = tmp_path / "hashgrid_cpu.cpp"
    other.write_text(hashgrid_cpu.SOURCE.read_text() + "\n// changed\n")
    monkeypatch.setattr(hashgrid_cpu, "SOURCE", other)
    assert hashgrid_cpu.build_dir() != first
    assert hashgrid_cpu.build_dir().name.startswith("eyeful_hashgrid_cpu_")


@pytest.mark.skipif(hashgrid_cpu.toolchain_problem() is not None, reason="no C++ toolchain here")
def test_a_failed_build_is_one_line_with_the_compilers_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch's message starts with the whole compile command; the line kept is the error."""
    broken = tmp_path / "hashgrid_cpu.cpp"
    broken.write_text('#error "this source does not compile"\n')
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    monkeypatch.setattr(hashgrid_cpu, "SOURCE", broken)
    hashgrid_cpu.kernels.cache_clear()
    try:
        why = hashgrid_cpu.build_problem()
    finally:
        hashgrid_cpu.kernels.cache_clear()
    assert why is not None and "\n" not in why
    assert why.startswith("the C++ kernels did not build (")
    assert "error: #error" in why and "this source does not compile" in why
