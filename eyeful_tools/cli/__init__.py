"""``eyeful``: a thin Typer CLI over the library. Errors become ``error: <path>: <what>``."""

from __future__ import annotations

import importlib
import os
import pkgutil
import signal
import sys
import traceback
from collections.abc import Sequence
from types import FrameType

import typer

from eyeful_tools.cli._app import app, state
from eyeful_tools.errors import EyefulError

#: The modules that register each top-level command. ``main`` imports only the invoked
#: command's modules, so ``eyeful download`` does not pay for OpenCV, pycolmap or torch at
#: start-up; a test keeps this table in step with what the modules register.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "list": ("catalog",),
    "schema": ("schema",),
    "synth": ("synth",),
    "download": ("download",),
    "convert": ("convert",),
    "split": ("split",),
    "downscale": ("downscale",),
    "import": ("import_ios", "colmap"),
    "export": ("colmap",),
    "train": ("train",),
    "eval": ("train",),
    "render": ("train",),
    "demo": ("demo",),
}


def command_modules() -> list[str]:
    """Every command module in this package (``_``-prefixed ones are infrastructure)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load_commands(modules: Sequence[str] | None = None) -> None:
    """Import command modules (all by default) so their commands register on ``app``."""
    for module in command_modules() if modules is None else modules:
        importlib.import_module(f"{__name__}.{module}")


#: root options that take a value (so the value is not taken for the command's name)
_ROOT_VALUE_OPTIONS = ("--max-image-pixels",)


def _modules_for(args: Sequence[str]) -> Sequence[str] | None:
    words = iter(args)
    for word in words:
        if word in _ROOT_VALUE_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            return COMMAND_MODULES.get(word)
    return None


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, ``docker stop``, SLURM), raised like Ctrl-C so that every
    ``finally`` and atomic write cleans up on the way out."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    del signum, frame
    raise Terminated


def os_error_line(error: OSError) -> str:
    """``<path>: <reason>`` for an OS error (``EACCES``, ``ENOSPC``, ``EROFS``, ``ENOENT``...);
    both paths of a failed rename or copy."""
    reason = error.strerror or str(error)
    if error.filename is None:
        return reason
    path = os.fsdecode(error.filename)
    if error.filename2 is not None:
        return f"{path} -> {os.fsdecode(error.filename2)}: {reason}"
    return f"{path}: {reason}"


def _interrupted(error: BaseException) -> int:
    """One line and the shell's code for a signal: 130 (Ctrl-C) or 143 (SIGTERM)."""
    if isinstance(error, Terminated) or isinstance(error.__cause__, Terminated):
        print("error: terminated (SIGTERM); no output was left half-written", file=sys.stderr)
        return 128 + signal.SIGTERM
    print("error: interrupted; no output was left half-written", file=sys.stderr)
    return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 known error or OS error, 2 usage, 130
    interrupted, 143 terminated)."""
    args = list(sys.argv[1:] if argv is None else argv)
    state["verbose"] = "--verbose" in args or "-v" in args
    load_commands(_modules_for(args))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (tests calling main from a thread)
        previous = None
    try:
        result = app(args=args, prog_name="eyeful", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except (EyefulError, OSError) as error:
        if state["verbose"]:
            traceback.print_exc()
        line = error.one_line() if isinstance(error, EyefulError) else os_error_line(error)
        print(f"error: {line}", file=sys.stderr)
        return 1
    except typer.Exit as exit_:
        if isinstance(exit_.__cause__, KeyboardInterrupt):  # typer turns Ctrl-C into Exit(130)
            return _interrupted(exit_.__cause__)
        return exit_.exit_code
    except (KeyboardInterrupt, typer.Abort) as error:
        return _interrupted(error)
    except Exception as error:
        # Typer vendors click; its usage errors carry ``show`` and ``exit_code`` (2).
        if hasattr(error, "show") and hasattr(error, "exit_code"):
            error.show()
            return int(error.exit_code)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def entry_point() -> None:
    sys.exit(main())


__all__ = ["app", "main", "entry_point", "load_commands", "COMMAND_MODULES"]
