"""The hash encoding's fused CPU kernels (``hashgrid_cpu.cpp``), built once on first use.

``torch.compile`` of the encoding (still what ``--compile`` uses on GPUs) left most of a CPU step
in the table gradient: inductor scatters it with one atomic add per corner from every thread.
The C++ kernels give each thread whole levels (no atomics, one level's rows in cache) and
recompute the corners in the backward instead of storing them; the maths is the torch path's
(``tests/test_model.py`` checks values and gradients). torch builds them with
``torch.utils.cpp_extension`` (a C++ compiler with OpenMP, ``Python.h`` and ninja) into its
extension cache (``$TORCH_EXTENSIONS_DIR``, else torch's default build root). The backward runs
one level per thread, so it uses at most as many threads as a grid has levels.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shlex
import shutil
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import torch
from torch.autograd.function import once_differentiable

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("hashgrid_cpu.cpp")


#: a build's lock older than this was left by a killed build (torch waits on it forever)
STALE_LOCK_S = 600


def _ninja_dir() -> str | None:
    """The folder of a ``ninja`` binary: on PATH, or the pip package's (outside an activated
    virtual environment its ``bin`` is not on PATH)."""
    found = shutil.which("ninja")
    if found:
        return str(Path(found).parent)
    try:
        import ninja
    except ImportError:
        return None
    return str(ninja.BIN_DIR) or None


def toolchain_problem() -> str | None:
    """Why the kernels could not be built here (no compiler, headers or ninja), or None."""
    compiler = os.environ.get("CXX", "c++")
    if shutil.which((shlex.split(compiler) or [""])[0]) is None:
        return f"no C++ compiler ({compiler} is not on PATH; set CXX or install g++)"
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.is_file():
        return f"no {headers} for the C++ kernels (install the Python headers)"
    if _ninja_dir() is None:
        return "no ninja to build the C++ kernels (pip install ninja)"
    return None


def build_problem() -> str | None:
    """Why the kernels cannot run here, or None: they are built (now, if not yet)."""
    if why := toolchain_problem():
        return why
    if why := _wait_for_lock(build_dir() / "lock"):
        return why
    try:
        kernels()
    except Exception as error:  # the compiler's output: its first "error:" line says why
        from eyeful_tools.errors import first_line

        text = str(error)
        cause = next((line for line in text.splitlines() if "error:" in line), first_line(error))
        return f"the C++ kernels did not build ({cause.strip()})"
    return None


def _wait_for_lock(lock: Path) -> str | None:
    """Wait while another build holds ``lock``; torch itself would wait forever on a lock a
    killed build left, so one older than :data:`STALE_LOCK_S` is reported instead."""
    said = False
    while True:
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return None  # no build running (or it just finished)
        if age > STALE_LOCK_S:
            return (
                f"{lock}: held for over {STALE_LOCK_S:.0f} s, left by a build that did not "
                "finish (killed?); remove it to rebuild"
            )
        if not said:
            log.warning("%s: waiting for another build of the C++ kernels to finish", lock)
            said = True
        time.sleep(1.0)


def build_dir() -> Path:
    """Where torch builds them: named by the source and torch's version, so checkouts and
    versions never load each other's build."""
    digest = hashlib.sha256(SOURCE.read_bytes() + torch.__version__.encode()).hexdigest()[:12]
    from torch.utils.cpp_extension import get_default_build_root

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()
    return Path(root) / f"eyeful_hashgrid_cpu_{digest}"


@functools.cache
def kernels() -> Any:
    """The built extension module (``encode``, ``encode_backward``)."""
    from torch.utils.cpp_extension import load

    ninja_dir = _ninja_dir()
    if ninja_dir and shutil.which("ninja") is None:
        os.environ["PATH"] = ninja_dir + os.pathsep + os.environ.get("PATH", "")
    log.info("loading the hash encoding's CPU kernels (built once, about 40 s)")
    # Apple's clang has no -fopenmp: there the kernels run on one thread
    openmp = [] if sys.platform == "darwin" else ["-fopenmp"]
    directory = build_dir()
    directory.mkdir(parents=True, exist_ok=True)
    return load(
        name=directory.name, sources=[str(SOURCE)], build_directory=str(directory),
        extra_cflags=["-O3", *openmp], extra_ldflags=openmp,
    )  # fmt: skip


class FusedHashEncode(torch.autograd.Function):
    """``x [N, 3], table [L * T, F], scales [L] -> [N, L, F]`` by the C++ kernels."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, table: torch.Tensor, scales: torch.Tensor) -> Any:
        x, scales = x.float().contiguous(), scales.float().contiguous()
        ctx.save_for_backward(x, table, scales)
        return kernels().encode(x, table.contiguous(), scales)

    @staticmethod
    @once_differentiable  # the kernels' backward is not itself differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, Any, None]:
        x, table, scales = ctx.saved_tensors
        want_x, want_table = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_table, grad_x = kernels().encode_backward(
            grad, x, table.contiguous(), scales, want_table, want_x
        )
        return grad_x, grad_table, None
