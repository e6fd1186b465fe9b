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
    "import": ("importers",),
    "export": ("colmap",),
    "train": ("train",),
    "eval": ("train",),
    "render": ("train",),
    "demo": ("demo",),
    "view": ("view",),
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


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM (``timeout``, ``docker stop``, SLURM), raised in the main thread so
    that every ``finally`` and atomic write cleans up on the way out. Not a KeyboardInterrupt:
    typer turns that into a silent exit 130 before it reaches :func:`main`."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum: int, frame: FrameType | None) -> None:
    del frame
    raise Interrupted(signum)


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _install_handlers() -> dict[int, object]:
    """Our handlers for Ctrl-C and SIGTERM; returns the previous ones (none off the main
    thread, where Python allows no handlers)."""
    try:
        return {signum: signal.signal(signum, _on_signal) for signum in _SIGNALS}
    except ValueError:
        return {}


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


def _interrupted(signum: int) -> int:
    """One line and the shell's code for the signal: 130 (Ctrl-C) or 143 (SIGTERM)."""
    what = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
    print(f"error: {what}; no output was left half-written", file=sys.stderr)
    return 128 + signum


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 known error or OS error, 2 usage, 130
    interrupted, 143 terminated)."""
    previous = _install_handlers()
    try:
        return _run(list(sys.argv[1:] if argv is None else argv))
    except Interrupted as interrupt:
        return _interrupted(interrupt.signum)
    except KeyboardInterrupt:  # one that came before our handler (or from a library)
        return _interrupted(signal.SIGINT)
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                signal.signal(signum, handler)  # type: ignore[arg-type]


def _run(args: list[str]) -> int:
    state["verbose"] = "--verbose" in args or "-v" in args
    load_commands(_modules_for(args))
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
        return exit_.exit_code
    except typer.Abort:
        return _interrupted(signal.SIGINT)
    except Exception as error:
        # Typer vendors click; its usage errors carry ``show`` and ``exit_code`` (2).
        if hasattr(error, "show") and hasattr(error, "exit_code"):
            error.show()
            return int(error.exit_code)
        raise


def entry_point() -> None:
    sys.exit(main())


__all__ = ["app", "main", "entry_point", "load_commands", "COMMAND_MODULES"]
