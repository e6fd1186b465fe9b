"""The Typer application objects that command modules register on.

Each ``eyeful_tools/cli/<name>.py`` module adds its commands to ``app`` (or to the ``import`` /
``export`` groups); :mod:`eyeful_tools.cli` imports every module in this package, so adding a
command never means editing a shared list.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from eyeful_tools.errors import UsageError
from eyeful_tools.image_limits import DEFAULT_MAX_IMAGE_PIXELS, MAX_PIXELS_ENV

app = typer.Typer(
    name="eyeful",
    help="EyefulTower, Metashape rigs and iOS captures to nerfstudio datasets, and Nerfacto.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
import_app = typer.Typer(
    help="Import captures from other tools into transforms.json.", no_args_is_help=True
)
export_app = typer.Typer(
    help="Export a transforms.json dataset to other tools.", no_args_is_help=True
)
app.add_typer(import_app, name="import")
app.add_typer(export_app, name="export")

#: progress and summaries go to stderr, so stdout stays clean for machine-readable output
console = Console(stderr=True, highlight=False)
out = Console(highlight=False)

state = {"verbose": False}


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks for errors."),
    max_image_pixels: int | None = typer.Option(
        None,
        "--max-image-pixels",
        metavar="N",
        help="Refuse images of more than N pixels, read from the header before decoding "
        f"(default {DEFAULT_MAX_IMAGE_PIXELS:,}, or ${MAX_PIXELS_ENV}).",
    ),
) -> None:
    """eyeful: from the EyefulTower bucket (or an iPhone) to a trained NeRF.

    Example: eyeful download --capture riverview --resolution jpeg_1k

    Example: eyeful --max-image-pixels 400000000 downscale data/pano
    """
    state["verbose"] = verbose
    if max_image_pixels is not None:
        if max_image_pixels < 1:
            raise UsageError("--max-image-pixels", f"must be at least 1, got {max_image_pixels}")
        # the environment carries it to spawned workers (downscale's pool, the loader's)
        os.environ[MAX_PIXELS_ENV] = str(max_image_pixels)


def summary(message: str) -> None:
    """The one-line summary every command prints when it succeeds (never wrapped)."""
    console.print(message, soft_wrap=True)


@contextlib.contextmanager
def stage_progress() -> Iterator[Callable[[str, int, int], None]]:
    """``progress(stage, done, total)`` drawing one transient bar per stage on stderr."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


@contextlib.contextmanager
def sfm_progress() -> Iterator[Callable[[str, int, int], None]]:
    """:func:`stage_progress`, with COLMAP's own logging quieted unless ``--verbose``."""
    import pycolmap

    if not state["verbose"]:
        pycolmap.logging.minloglevel = pycolmap.logging.Level.ERROR.value  # COLMAP's INFO flood
    with stage_progress() as update:
        yield update


def need_torch() -> None:
    """A one-line error instead of an ImportError when the ``train`` extra is missing."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UsageError(None, "training needs torch: pip install 'eyeful[train]'") from None
