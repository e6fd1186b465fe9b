"""What an importer is: the :class:`Importer` protocol every row of
:data:`eyeful_tools.importers.IMPORTERS` provides, and the plain data it is made of.

An importer declares its name, help and options as data (the CLI turns them into a command),
says whether it reads an input and why (:class:`Detection`), reads it into a canonical
:class:`~eyeful_tools.cameras.Scene` whose frames carry their extras (depth, confidence, the
app's sharpness score) where the format has poses of its own, and runs. Options are data, not
Typer objects, so the library stays free of the CLI.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from eyeful_tools.archive import Source
from eyeful_tools.errors import UsageError
from eyeful_tools.ios_import import PhoneExport

Progress = Callable[[str, int, int], None]
Values = Mapping[str, Any]
E = TypeVar("E", bound=Enum)


# ---------------------------------------------------------------------------------------------
# What an importer is.


@dataclass(frozen=True)
class Detection:
    """Whether an importer reads the input, and why (or why not), in a few words."""

    matched: bool
    reason: str


@dataclass(frozen=True)
class Option:
    """One option of an importer's command, as plain data (the CLI makes it a flag)."""

    name: str  # the keyword the importer's ``run`` reads from its values
    flags: str  # "--max-frames", or "--depth/--no-depth" for a switch
    type: Any  # int, float, str, bool, Path, or ``X | None``
    default: Any  # ``...``: required
    help: str
    min: float | None = None
    max: float | None = None


class Probe:
    """The input under test, opened once for every importer's :meth:`Importer.detect`.

    A file that is no zip archive (a video, a stray document) leaves ``source`` None and says
    why in ``unreadable``; a zip that cannot be read or is unsafe raises, as its reader would.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.source: Source | None = None
        self.unreadable = ""
        if path.is_file() and not zipfile.is_zipfile(path):
            self.unreadable = "not a folder or a zip archive"
        else:
            self.source = Source(path)

    def close(self) -> None:
        if self.source is not None:
            self.source.close()


class Importer(Protocol):
    """What every row of :data:`eyeful_tools.importers.IMPORTERS` provides."""

    @property
    def name(self) -> str:
        """The subcommand, and what ``import auto`` reports."""
        ...

    @property
    def help(self) -> str:
        """The command's help, with a runnable example."""
        ...

    @property
    def source_help(self) -> str: ...

    @property
    def source_name(self) -> str:
        """The positional argument's name."""
        ...

    @property
    def options(self) -> tuple[Option, ...]: ...

    @property
    def progress(self) -> Literal["stages", "sfm", "none"]: ...

    @property
    def label(self) -> str:
        """What the named command prints before the report's line."""
        ...

    @property
    def refusal(self) -> str | None:
        """Why ``import auto`` does not run it, when it does not."""
        ...

    @property
    def runs(self) -> bool:
        """Whether it imports anything (a row may only recognise what needs no import)."""
        ...

    @property
    def reads(self) -> bool:
        """Whether :meth:`read` works: the format holds poses (SfM makes its own by running)."""
        ...

    def detect(self, probe: Probe) -> Detection: ...

    def read(self, source: Path, values: Values) -> PhoneExport:
        """The input as a canonical scene (``.scene``; ``Frame.extras`` hold each frame's depth
        encoding, confidence map and app score) with the open export its members come from,
        writing nothing; close ``.source`` when done (``run`` does)."""
        ...

    def run(self, source: Path, values: Values, progress: Progress) -> str: ...


@dataclass(frozen=True)
class Row:
    """An :class:`Importer` made of functions: the table's rows."""

    name: str
    help: str
    source_help: str
    options: tuple[Option, ...]
    detector: Callable[[Probe], Detection]
    runner: Callable[[Path, Values, Progress], str] | None = None
    progress: Literal["stages", "sfm", "none"] = "stages"
    label: str = ""
    refusal: str | None = None
    source_name: str = "source"
    reader: Callable[[Path, Values], PhoneExport] | None = None

    @property
    def runs(self) -> bool:
        return self.runner is not None

    @property
    def reads(self) -> bool:
        return self.reader is not None

    def detect(self, probe: Probe) -> Detection:
        return self.detector(probe)

    def read(self, source: Path, values: Values) -> PhoneExport:
        if self.reader is None:
            raise UsageError(source, f"{self.name} has no poses to read without running")
        return self.reader(source, values)

    def run(self, source: Path, values: Values, progress: Progress) -> str:
        if self.runner is None:
            raise UsageError(source, self.refusal or f"{self.name} is not imported")
        return self.runner(source, values, progress)


def choice(enum: type[E], value: str, option: str) -> E:
    """``enum(value)``, or a UsageError listing the choices."""
    try:
        return enum(value.lower())
    except ValueError:
        choices = ", ".join(member.value for member in enum)
        raise UsageError(option, f"expected one of {choices}, got {value!r}") from None


def defaults(importer: Importer) -> dict[str, Any]:
    """Every option of ``importer`` at its default (required ones left out)."""
    return {o.name: o.default for o in importer.options if o.default is not ...}
