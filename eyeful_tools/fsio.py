"""Atomic file writes (a temp file in the same folder, then ``os.replace``) and JSON reading.

A reader never sees a half-written file under its final name, and a failed write leaves the
previous version untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from eyeful_tools.errors import InputFormatError, MissingFileError, UsageError


def _process_umask() -> int:
    """The umask, read without changing it where Linux shows it; elsewhere set and restored
    at once (once, at import)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: temp files are created 0600 (folders 0700); what we write gets the mode a plain open()
#: (or mkdir) would give under the process umask
_UMASK = _process_umask()
FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK


def _temp_file_beside(path: Path, suffix: str | None) -> tuple[int, Path]:
    """Create ``.<name>.<random>.tmp<suffix>`` in ``path``'s folder: (open fd, its path)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.",
        suffix=f".tmp{suffix if suffix is not None else path.suffix}",
        dir=path.parent,
    )
    if hasattr(os, "fchmod"):  # not on Windows before Python 3.13
        os.fchmod(fd, FILE_MODE)
    return fd, Path(tmp_name)


@contextlib.contextmanager
def _replacing(tmp: Path, path: Path) -> Iterator[None]:
    """Rename ``tmp`` over ``path`` if the block succeeds; remove it if it fails."""
    try:
        yield
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` if the block succeeds.

    ``suffix`` defaults to the target's own suffix, so writers that pick a format from the file
    name (OpenCV, OpenEXR) still work.
    """
    path = Path(path)
    fd, tmp = _temp_file_beside(path, suffix)
    os.close(fd)
    with _replacing(tmp, path):
        yield tmp


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temp folder beside ``path`` to build in; on success it replaces ``path`` (the old
    folder is moved aside first and removed last), on failure it is removed.

    Readers see either the old folder or the complete new one, never a mix of the two.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(build, DIR_MODE)  # mkdtemp makes it 0700
    try:
        yield build
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(build, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """``open()`` that writes to a temp file and renames it into place on success (after an
    fsync: these are the small files a crash must not leave empty, like manifests)."""
    path = Path(path)
    fd, tmp = _temp_file_beside(path, None)
    with _replacing(tmp, path), open(fd, mode, **kwargs) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_bytes(path: str | Path, data: bytes | memoryview) -> None:
    """Bytes written through the temp file's own descriptor (one open, no fsync: for derived
    files such as encoded images, which a re-run recreates) and renamed into place."""
    path = Path(path)
    fd, tmp = _temp_file_beside(path, None)
    with _replacing(tmp, path), open(fd, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def atomic_write_json(path: str | Path, data: Any, indent: int = 4) -> None:
    """JSON with a trailing newline, written atomically."""
    atomic_write_text(path, json.dumps(data, indent=indent) + "\n")


def refuse_overlap(output: str | Path, inputs: Sequence[str | Path]) -> None:
    """Refuse an output that equals, contains or lies inside any input, whatever the options:
    replacing such an output (``--overwrite``) would delete what it is made from.

    Paths are compared resolved (symlinks followed), so ``--out .`` or a link to the source is
    caught too.
    """
    out = Path(output).resolve()
    for source in inputs:
        src = Path(source).resolve()
        if out == src:
            raise UsageError(output, f"output is the input {source}; choose another --out")
        if out in src.parents:
            raise UsageError(output, f"output contains the input {source}; choose another --out")
        if src in out.parents:
            raise UsageError(output, f"output lies inside the input {source}; choose another --out")


def check_output_folder(
    out_dir: Path,
    overwrite: bool,
    outputs: Sequence[str] | None = None,
    *,
    inputs: Sequence[str | Path],
) -> list[str]:
    """Refuse to write into a folder that already holds output (every entry, or the names in
    ``outputs``) unless ``overwrite``; a file in the folder's place is always refused, and so is
    a folder that overlaps any of ``inputs`` (:func:`refuse_overlap`). Returns the names present
    (what an overwrite will replace)."""
    refuse_overlap(out_dir, inputs)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(out_dir, "output exists and is not a folder")
    if not out_dir.is_dir():
        return []
    names = outputs if outputs is not None else sorted(p.name for p in out_dir.iterdir())
    taken = [name for name in names if (out_dir / name).exists()]
    if taken and not overwrite:
        shown = ", ".join(taken[:4]) + (", ..." if len(taken) > 4 else "")
        raise UsageError(out_dir, f"output folder already holds {shown} (pass --overwrite)")
    return taken


def read_json(path: str | Path, what: str) -> Any:
    """Parse a JSON file; errors name the file (``what`` says which file was missing)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, f"{what} not found")
    return parse_json(path.read_bytes(), path)


def parse_json(data: bytes | str, where: str | Path) -> Any:
    """JSON text (UTF-8 bytes or str) as Python values; anything ``json`` refuses, including
    what it refuses by raising something else (an integer over Python's 4,300-digit limit is a
    ValueError, nesting deeper than the stack a RecursionError), is one error naming ``where``."""
    try:
        return json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    except UnicodeDecodeError as error:
        raise InputFormatError(where, f"not valid JSON (not UTF-8 text: {error.reason})") from error
    except RecursionError as error:
        raise InputFormatError(where, "not valid JSON (nested too deeply)") from error
    except ValueError as error:  # JSONDecodeError, and int() beyond sys.get_int_max_str_digits()
        raise InputFormatError(where, f"not valid JSON ({_first_sentence(error)})") from error


def _first_sentence(error: Exception) -> str:
    """An exception's message up to its first ``;`` (Python's digit-limit error goes on to
    recommend ``sys.set_int_max_str_digits``, which a user cannot call)."""
    return str(error).split(";")[0]
