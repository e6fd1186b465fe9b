"""A small error hierarchy. The CLI maps each to one line: ``error: <path>: <what>``."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class EyefulError(Exception):
    """Base class for errors a user can act on (bad input, missing files, failed transfers)."""

    def __init__(self, path: str | Path | None, reason: str) -> None:
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


class InputFormatError(EyefulError):
    """A file exists but its content is malformed or unsupported."""


class MissingFileError(EyefulError):
    """A file or folder the command needs is not there."""


class UnsupportedError(EyefulError):
    """Valid input that eyeful deliberately does not convert (e.g. equisolid fisheye)."""


class DownloadError(EyefulError):
    """A transfer failed for good (after retries)."""


class SplitError(EyefulError):
    """A split cannot be built: unknown cameras, missing files, an empty held-out set."""


class LimitError(EyefulError):
    """Input over a safety limit (an archive member's unpacked size or compression ratio); the
    reason names the option that raises the limit."""


class UsageError(EyefulError):
    """Options that contradict each other or name things that do not exist."""


class TrainingError(EyefulError):
    """A training run that cannot go on without being wrong or losing work (a loss that stays
    non-finite, a checkpoint that cannot be written)."""


def field_error(error: Any, path: str | Path | None, what: str = "") -> InputFormatError:
    """A pydantic ``ValidationError`` as one line naming its first bad field
    (``field frames.3.fl_x: ...``), optionally prefixed by what the file is."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "(top level)"
    return InputFormatError(path, f"{what}field {field}: {first['msg']}")


def first_line(error: BaseException) -> str:
    """An exception's first message line (library errors can span many), else its type name."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else error.__class__.__name__
