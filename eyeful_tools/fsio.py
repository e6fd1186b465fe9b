"""Atomic file writes (a temp file in the same folder, then ``os.replace``) and JSON reading.

A reader never sees a half-written file under its final name, and a failed write leaves the
previous version untouched.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from eyeful_tools.errors import InputFormatError, MissingFileError, UsageError

log = logging.getLogger(__name__)


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


#: temp names carry ``<host>-<pid>`` so a later run can tell a dead run's leftovers (removed)
#: from a live one's (kept); the host tag keeps machines sharing a folder off each other's
_HOST_TAG = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:4]
#: ``.<name>.<host>-<pid>.<8 random>.tmp<suffix>`` (files, build folders) and ``.old`` (a
#: journaled swap's displaced folder)
_TEMP_NAME = re.compile(
    r"^\.(?P<name>.+)\.(?P<host>[0-9a-f]{4})-(?P<pid>\d+)\.[a-z0-9_]{8}\.(?:tmp|old)[^/]*$"
)
#: what versions before the host-pid tag left: unknowable whether a live run owns them, so
#: they are reported, never removed
_OLD_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.(?:tmp|old)[^/]*$")
#: folders this process has already swept for stale temps (one directory scan per folder)
_swept: set[str] = set()


def is_temp_name(name: str) -> bool:
    """True for the hidden temp and build names eyeful writes (this version's or older)."""
    return bool(_TEMP_NAME.match(name) or _OLD_TEMP_NAME.match(name))


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{_HOST_TAG}-{os.getpid()}."


def _temp_file_beside(path: Path, suffix: str | None) -> tuple[int, Path]:
    """Create ``.<name>.<host>-<pid>.<random>.tmp<suffix>`` in ``path``'s folder: (fd, path)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(path.parent)
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=_temp_prefix(path),
            suffix=f".tmp{suffix if suffix is not None else path.suffix}",
            dir=path.parent,
        )
    except OSError as error:  # names the temp file, which means nothing to the user
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error
    if hasattr(os, "fchmod"):  # not on Windows before Python 3.13
        os.fchmod(fd, FILE_MODE)
    return fd, Path(tmp_name)


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would terminate it on Windows: assume alive
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def stale_temps(folder: Path) -> list[Path]:
    """Our temp files and build folders in ``folder`` whose writer is gone (a killed run):
    written on this host by a process that no longer exists."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    stale = []
    for name in names:
        match = _TEMP_NAME.match(name)
        if match and match["host"] == _HOST_TAG and not _pid_alive(int(match["pid"])):
            stale.append(folder / name)
    return sorted(stale)


def remove_path(path: Path) -> None:
    """Remove a file, a link (not what it points to) or a folder tree; missing is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def clean_stale_temps(folder: str | Path) -> list[Path]:
    """Finish any interrupted ``--overwrite`` swap in ``folder``, then remove the temps of dead
    runs; returns what was removed (debug-logged)."""
    folder = Path(folder)
    for journal in folder.glob(".*.swap.json"):
        finish_swap(folder / journal.name.removeprefix(".").removesuffix(".swap.json"))
    stale = stale_temps(folder)
    for path in stale:
        log.debug("removing %s, left by a killed run", path)
        remove_path(path)
    with contextlib.suppress(OSError):
        old = [n for n in os.listdir(folder) if _OLD_TEMP_NAME.match(n) and not _TEMP_NAME.match(n)]
        if old:
            log.warning(
                "%s: %d temp files or folders from an interrupted older eyeful run (%s); "
                "remove them if no eyeful command is running there",
                folder, len(old), ", ".join(sorted(old)[:3]),
            )  # fmt: skip
    return stale


def _sweep_once(folder: Path) -> None:
    """:func:`clean_stale_temps` the first time this process writes into ``folder``."""
    key = os.path.abspath(folder)
    if key not in _swept:
        _swept.add(key)
        clean_stale_temps(folder)


def naming(error: OSError, path: Path, temp: Path | None = None) -> OSError:
    """``error`` about ``path``: a write's ``ENOSPC`` names no file, and a temp file's name
    means nothing to the user. Errors naming another file are returned as they are."""
    if error.filename is not None and (temp is None or os.fsdecode(error.filename) != str(temp)):
        return error
    return OSError(error.errno, error.strerror or str(error), str(path))  # the same subclass


@contextlib.contextmanager
def _replacing(tmp: Path, path: Path) -> Iterator[None]:
    """Rename ``tmp`` over ``path`` if the block succeeds; remove it if it fails."""
    try:
        yield
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(error, OSError):
            raise naming(error, path, tmp) from error
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
    """Yield a temp folder beside ``path`` to build in; on success it takes ``path``'s place in
    one step (:func:`swap_in`), on failure it is removed.

    Readers see either the old folder or the complete new one, never a mix of the two, and a
    process killed at any point leaves one of the two at ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(path.parent)
    finish_swap(path)
    try:
        build = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    except OSError as error:  # named after the build folder, which means nothing to the user
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error
    os.chmod(build, DIR_MODE)  # mkdtemp makes it 0700
    try:
        yield build
        swap_in(build, path)
    except BaseException as error:
        shutil.rmtree(build, ignore_errors=True)
        if isinstance(error, OSError):  # a file inside the build: name it under path
            raise naming(_rebased(error, build, path), path, build) from error
        raise


def _rebased(error: OSError, build: Path, path: Path) -> OSError:
    """An error about ``build/x`` as one about ``path/x`` (the build folder is gone by then)."""
    name = None if error.filename is None else os.fsdecode(error.filename)
    if name is None or not name.startswith(f"{build}{os.sep}"):
        return error
    moved = str(path) + name[len(str(build)) :]
    return OSError(error.errno, error.strerror or str(error), moved)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _load_renameat2() -> Callable[..., int] | None:
    """glibc's ``renameat2`` (2.28+, Linux 3.15+), or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    function.argtypes += [ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_renameat2 = _load_renameat2()


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (``renameat2(RENAME_EXCHANGE)``); False where
    the OS or the file system cannot (then nothing was changed)."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _journal(path: Path) -> Path:
    return path.with_name(f".{path.name}.swap.json")


def swap_in(build: Path, path: Path) -> None:
    """Put the finished folder ``build`` at ``path`` and remove what was there.

    Where ``path`` exists: one atomic exchange, or where the OS has none, a journaled pair of
    renames that :func:`finish_swap` completes if the process dies between them. The displaced
    folder (under a temp name) is removed last; if that is interrupted, the next run removes
    it (:func:`clean_stale_temps`).
    """
    if not os.path.lexists(path):
        os.rename(build, path)
        return
    if exchange(build, path):
        remove_path(build)
        return
    old = build.with_name(build.name.removesuffix(".tmp") + ".old")
    atomic_write_json(_journal(path), {"new": build.name, "old": old.name})
    os.rename(path, old)
    os.rename(build, path)
    remove_path(old)
    _journal(path).unlink()


def finish_swap(path: str | Path) -> None:
    """Complete a journaled swap into ``path`` that a killed run left half done: the new
    folder (complete, or the journal would not exist) goes in, the old one is removed."""
    path = Path(path)
    journal = _journal(path)
    if not journal.is_file():
        return
    try:
        names = json.loads(journal.read_text(encoding="utf-8"))
        new, old = (path.with_name(names[key]) for key in ("new", "old"))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputFormatError(journal, f"unreadable swap journal ({error}); remove it") from error
    for side in (new, old):  # a journal may name only our own temps beside path
        match = _TEMP_NAME.match(side.name)
        if match is None or match["name"] != path.name:
            raise InputFormatError(journal, f"swap journal names {side.name}; remove it")
    if new.exists():
        if os.path.lexists(path):
            os.rename(path, old)
        os.rename(new, path)
    log.info("%s: finished an --overwrite that a killed run left half done", path)
    remove_path(old)
    journal.unlink()


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


class _KeptWriteError:
    """A binary file whose ``write`` remembers the ``OSError`` it raised."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.handle.flush()


@contextlib.contextmanager
def atomic_stream(path: str | Path, *, durable: bool = False) -> Iterator[Any]:
    """A binary file written atomically, for writers that report a failed write as their own
    error (``torch.save`` raises a RuntimeError with no errno on a full disk): the OSError
    behind it is raised instead, naming ``path``.

    ``durable``: the file is fsynced before the rename and its folder after it, so a power cut
    leaves the old file or the complete new one (checkpoints, which take hours to redo)."""
    path = Path(path)
    fd, tmp = _temp_file_beside(path, None)
    with _replacing(tmp, path), open(fd, "wb") as handle:
        stream = _KeptWriteError(handle)
        try:
            yield stream
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        except Exception as error:
            if stream.error is not None and stream.error is not error:
                raise stream.error from error
            raise
    if durable:
        fsync_dir(path.parent)


def fsync_dir(folder: str | Path) -> None:
    """Make a rename or new entry in ``folder`` durable (a no-op where folders cannot be
    opened, as on Windows)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


#: kept free beyond an estimate: file system metadata, logs, the next small write
FREE_SPACE_RESERVE_BYTES = 64 << 20


def require_free_space(folder: str | Path, needed_bytes: int, what: str) -> None:
    """Refuse work whose output will not fit before writing any of it (``ENOSPC`` naming the
    folder and both sizes), instead of failing half way. ``needed_bytes`` is an estimate where
    the exact size is unknown (encoded images)."""
    probe = Path(folder).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed_bytes > 0 and needed_bytes + FREE_SPACE_RESERVE_BYTES > free:
        gib = 1 << 30
        raise OSError(
            errno.ENOSPC,
            f"not enough free space: {what} needs about {needed_bytes / gib:.2f} GiB "
            f"(+{FREE_SPACE_RESERVE_BYTES >> 20} MiB reserve), {free / gib:.2f} GiB is free",
            str(folder),
        )


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
    finish_swap(out_dir)  # judge what a killed --overwrite meant to leave, not its halfway state
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
