"""``eyeful``: a thin Typer CLI over the library. Errors become ``error: <path>: <what>``."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
from collections.abc import Sequence

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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 known error, 2 usage, 130 interrupted)."""
    args = list(sys.argv[1:] if argv is None else argv)
    state["verbose"] = "--verbose" in args or "-v" in args
    load_commands(_modules_for(args))
    try:
        result = app(args=args, prog_name="eyeful", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except EyefulError as error:
        if state["verbose"]:
            traceback.print_exc()
        print(f"error: {error.one_line()}", file=sys.stderr)
        return 1
    except typer.Exit as exit_:
        return exit_.exit_code
    except (KeyboardInterrupt, typer.Abort):
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        # Typer vendors click; its usage errors carry ``show`` and ``exit_code`` (2).
        if hasattr(error, "show") and hasattr(error, "exit_code"):
            error.show()
            return int(error.exit_code)
        raise


def entry_point() -> None:
    sys.exit(main())


__all__ = ["app", "main", "entry_point", "load_commands", "COMMAND_MODULES"]
