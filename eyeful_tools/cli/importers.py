"""``eyeful import <format>``, one command per row of the importer table, and ``import auto``.

Nothing here knows a format: each command is made from an
:class:`~eyeful_tools.importer.Importer`'s name, help and options, and runs it.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import typer

from eyeful_tools import importers
from eyeful_tools.cli._app import import_app, sfm_progress, stage_progress, summary
from eyeful_tools.errors import UsageError
from eyeful_tools.importer import Importer, Option, Progress

AUTO_HELP = (
    "Detect what made SOURCE (Record3D, Polycam, Stray Scanner, NeRFCapture, a video or "
    "photos) and import it with that importer's defaults. When nothing matches, every "
    "importer says why not.\n\nExample: eyeful import auto ~/Downloads/scan.zip --out data/scan"
)
AUTO_SOURCE_HELP = "A phone export (folder, .zip or .r3d), a video file, or a folder of photos."


def _noop(stage: str, done: int, total: int) -> None:
    del stage, done, total


@contextlib.contextmanager
def _progress(importer: Importer) -> Iterator[Progress]:
    if importer.progress == "none":
        yield _noop
        return
    with sfm_progress() if importer.progress == "sfm" else stage_progress() as update:
        yield update


def _parameter(option: Option) -> inspect.Parameter:
    info = typer.Option(
        option.default, option.flags, help=option.help, min=option.min, max=option.max
    )
    return inspect.Parameter(
        option.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=option.type
    )


def _register(
    name: str,
    help: str,
    source: inspect.Parameter,
    options: Sequence[Option],
    body: Callable[[Path, dict[str, Any]], None],
) -> None:
    """Add ``eyeful import NAME`` with ``options`` as its flags; ``body`` gets their values."""

    def command(**values: Any) -> None:
        body(values.pop(source.name), values)

    parameters = [source, *(_parameter(option) for option in options)]
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = help
    import_app.command(name, help=help)(command)


def _source(help: str, name: str) -> inspect.Parameter:
    argument = typer.Argument(..., help=help)
    return inspect.Parameter(
        name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=argument, annotation=Path
    )


def _named(importer: Importer) -> Callable[[Path, dict[str, Any]], None]:
    def body(source: Path, values: dict[str, Any]) -> None:
        with _progress(importer) as progress:
            line = importer.run(source, values, progress)
        summary(f"{importer.label}{line}")

    return body


def _auto(source: Path, values: dict[str, Any]) -> None:
    importer = importers.detect(source)
    if importer.refusal is not None:
        raise UsageError(source, importer.refusal)
    with _progress(importer) as progress:
        line = importer.run(source, importers.auto_values(importer, values), progress)
    summary(f"import auto ({importer.name}): {line}")


for _importer in importers.IMPORTERS:
    if _importer.runs:
        _register(
            _importer.name,
            _importer.help,
            _source(_importer.source_help, _importer.source_name),
            _importer.options,
            _named(_importer),
        )
_register("auto", AUTO_HELP, _source(AUTO_SOURCE_HELP, "source"), importers.AUTO_OPTIONS, _auto)
