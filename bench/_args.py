"""argparse types for the benchmarks that reuse the project's own option rules, so a bad value
is argparse's one-line usage error, never a traceback from a worker."""

from __future__ import annotations

import argparse

from eyeful_tools.errors import EyefulError
from eyeful_tools.synth import parse_size
from trainer_adapter.data.schedule import PoolStride, check_pool_stride


def pool_stride(text: str) -> PoolStride:
    """``auto`` or a whole number >= 1 (the loader's own check)."""
    try:
        return check_pool_stride(text if text == "auto" else int(text))
    except EyefulError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` (``eyeful synth --size``'s parser)."""
    try:
        parsed = parse_size(text)
    except EyefulError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    assert parsed is not None  # only None for None
    return parsed
