"""Checkpoints: durable writes, a free-space check, no non-finite weights, and the hash grid.

A checkpoint is ``nerfstudio_models/step-%09d.ckpt`` holding ``{step, pipeline, optimizers,
schedulers, scalers, hash_grid}`` of tensors and primitive containers only, so it loads with
``torch.load(weights_only=True)``.

Writing: the free space is checked first (``fsio.require_free_space``: the checkpoint's size plus
a reserve); the file is written beside its final name, fsynced, renamed into place and its
folder fsynced (``fsio.atomic_stream(durable=True)``), and only then are older checkpoints
deleted, so a full disk, a read-only folder or a crash leaves the previous checkpoint as it was.

``hash_grid`` records which hash grid ran: ``"torch"`` (nerfstudio's torch hashing) or ``"tcnn"``
(tiny-cuda-nn's ``HashGrid``). The two store different grids, not two layouts of one grid:
tiny-cuda-nn scales level ``l`` by ``base * b**l - 1`` with a half-cell offset and stores coarse
levels densely (``include/tiny-cuda-nn/encodings/grid.h``; reference/nerfacto.md §1.4, §2.2),
while nerfstudio's torch path hashes every level at ``floor(base * b**l)``. Its parameter
buffer's order is not documented as an interface either. So a tcnn checkpoint is not converted:
loading it where tinycudann does not import is refused with one line saying so; a torch
checkpoint always loads with the torch grid, also where tinycudann imports.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eyeful_tools.errors import InputFormatError, MissingFileError, TrainingError, first_line
from eyeful_tools.fsio import atomic_stream, require_free_space

CHECKPOINT_DIR = "nerfstudio_models"
_CKPT_RE = re.compile(r"step-(\d+)\.ckpt$")
HASH_GRIDS = {"torch": "the torch hash grid", "tcnn": "tiny-cuda-nn's hash grid"}
#: zip headers and pickled containers on top of the tensor bytes (measured: < 100 KiB)
_SAVE_OVERHEAD_BYTES = 1 << 20
_DISK_ERRORS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG)


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def latest_checkpoint(load_dir: str | Path) -> Path:
    """The highest ``step-*.ckpt`` in ``load_dir`` (a run dir or its ``nerfstudio_models``)."""
    load_dir = Path(load_dir)
    if (load_dir / CHECKPOINT_DIR).is_dir():
        load_dir = load_dir / CHECKPOINT_DIR
    found = checkpoints_in(load_dir)
    if not found:
        raise MissingFileError(load_dir, "no step-*.ckpt checkpoint found")
    return found[-1]


def checkpoints_in(folder: Path) -> list[Path]:
    """The ``step-*.ckpt`` files of a folder, by increasing step."""
    found = (
        (int(m.group(1)), p) for p in folder.glob("step-*.ckpt") if (m := _CKPT_RE.search(p.name))
    )
    return [p for _, p in sorted(found)]


def hash_grid_of(model: nn.Module) -> str:
    """``"tcnn"`` if any encoding of ``model`` is tiny-cuda-nn's, else ``"torch"``."""
    from trainer_adapter.model.encodings import TcnnHashEncoding

    return "tcnn" if any(isinstance(m, TcnnHashEncoding) for m in model.modules()) else "torch"


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _tensors(item)


def _nonfinite_entry(state: dict[str, Any]) -> str | None:
    """The first weight or optimizer-state entry holding NaN or inf, or ``None``."""
    for part in ("pipeline", "optimizers"):
        for tensor in _tensors(state[part]):
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                return part
    return None


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write ``state`` as ``step-%09d.ckpt`` durably, then delete all but the latest ``keep``.

    Raises :class:`TrainingError` (nothing written, older checkpoints kept) when the state is not
    finite, the folder lacks the space, or the write fails with a full or read-only disk."""
    folder = checkpoint_dir(run_dir)
    path = folder / f"step-{step:09d}.ckpt"
    bad = _nonfinite_entry(state)
    if bad is not None:
        raise TrainingError(
            folder, f"step {step}: the {bad} hold NaN or inf; no checkpoint written"
        )
    needed = sum(t.nbytes for t in _tensors(state)) + _SAVE_OVERHEAD_BYTES
    try:
        folder.mkdir(parents=True, exist_ok=True)
        require_free_space(folder, needed, "the checkpoint")
        with atomic_stream(path, durable=True) as handle:  # a full disk: OSError, not RuntimeError
            torch.save(state, handle)
    except OSError as error:
        if error.errno not in _DISK_ERRORS:
            raise
        what = "is read-only" if error.errno == errno.EROFS else "has too little free space"
        raise TrainingError(
            folder,
            f"{what} for the checkpoint ({needed} bytes needed); the previous checkpoint is kept",
        ) from error
    others = checkpoints_in(folder)
    for old in others[: max(len(others) - max(keep, 1), 0)]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, *, mmap: bool = False) -> dict[str, Any]:
    """``torch.load(weights_only=True)``; a bad file becomes an :class:`InputFormatError`.
    Checkpoints from before ``hash_grid`` was stored get it from their parameter names.

    ``mmap`` maps the file instead of reading it: eval loads only the weights, so the optimizer
    state (twice the weights) is never read into memory."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # any unpickling failure is a bad checkpoint
        raise InputFormatError(
            path, f"not a loadable checkpoint ({error.__class__.__name__})"
        ) from error
    if not isinstance(state, dict) or "pipeline" not in state or "step" not in state:
        raise InputFormatError(path, "checkpoint lacks 'step' or 'pipeline'")
    if state.get("hash_grid") not in HASH_GRIDS:
        tcnn = any(k.endswith("encoding.encoding.params") for k in state["pipeline"])
        state["hash_grid"] = "tcnn" if tcnn else "torch"
    return state


def implementation_for(state: dict[str, Any], path: Path) -> str:
    """The ``ModelOptions.implementation`` that rebuilds the grid a checkpoint holds; a tcnn
    checkpoint where tinycudann does not import is refused (see the module docstring)."""
    from trainer_adapter.model.encodings import tcnn_available

    if state["hash_grid"] == "tcnn" and not tcnn_available():
        raise InputFormatError(
            path,
            "trained with tiny-cuda-nn's hash grid, which stores a different grid than the torch "
            "one; load it where tinycudann imports (a CUDA machine)",
        )
    return str(state["hash_grid"])


def load_model_state(model: nn.Module, state: dict[str, Any], path: Path) -> None:
    """Load a checkpoint's weights into ``model``. One that does not fit is refused before any
    weight is copied (``load_state_dict`` copies what fits, then raises), so a model shown by
    ``eyeful view`` stays whole."""
    pipeline = {k.removeprefix("module."): v for k, v in state["pipeline"].items()}
    ours = model.state_dict()
    misfit = [f"{k} missing" for k in ours if k not in pipeline]
    misfit += [f"{k} not in the model" for k in pipeline if k not in ours]
    misfit += [
        f"{k} is not a tensor ({type(v).__name__})"
        for k, v in pipeline.items()
        if not isinstance(v, torch.Tensor)
    ]
    shapes = {k: tuple(v.shape) for k, v in pipeline.items() if isinstance(v, torch.Tensor)}
    misfit += [
        f"{k} is {shapes[k]}, not {tuple(v.shape)}"
        for k, v in ours.items()
        if k in shapes and shapes[k] != tuple(v.shape)
    ]
    if misfit:
        raise InputFormatError(path, f"checkpoint does not match the model: {misfit[0]}")
    try:
        model.load_state_dict(pipeline)
    except RuntimeError as error:
        what = f"checkpoint does not match the model: {first_line(error)}"
        raise InputFormatError(path, what) from error
