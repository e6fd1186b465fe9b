"""The hash encoding's fused CPU kernels (``hashgrid_cpu.cpp``), built once on first use.

``torch.compile`` of the encoding (still what ``--compile`` uses on GPUs) left most of a CPU step
in the table gradient: inductor scatters it with one atomic add per corner from every thread.
The C++ kernels give each thread whole levels (no atomics, one level's rows in cache) and
recompute the corners in the backward instead of storing them; the maths is the torch path's
(``tests/test_model.py`` checks values and gradients). torch builds them with
``torch.utils.cpp_extension`` (a C++ compiler with OpenMP, ``Python.h`` and ninja) into its
extension cache, ``~/.cache/torch_extensions`` or ``$TORCH_EXTENSIONS_DIR``.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sysconfig
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("hashgrid_cpu.cpp")


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
    return str(ninja.BIN_DIR)


def build_problem() -> str | None:
    """Why the kernels cannot be built here, or None (they are built, or can be)."""
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler ({compiler} is not on PATH; set CXX or install g++)"
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.is_file():
        return f"no {headers} for the C++ kernels (install the Python headers)"
    if _ninja_dir() is None:
        return "no ninja to build the C++ kernels (pip install ninja)"
    try:
        kernels()
    except Exception as error:  # a compiler's failure: its output is long, the cause is first
        from eyeful_tools.errors import first_line

        return f"the C++ kernels did not build ({first_line(error)})"
    return None


@functools.cache
def kernels() -> Any:
    """The built extension module (``encode``, ``encode_backward``)."""
    from torch.utils.cpp_extension import load

    ninja_dir = _ninja_dir()
    if ninja_dir and shutil.which("ninja") is None:
        os.environ["PATH"] = ninja_dir + os.pathsep + os.environ.get("PATH", "")
    log.info("loading the hash encoding's CPU kernels (built once, about 40 s)")
    flags = ["-O3", "-fopenmp"]
    return load(
        name="eyeful_hashgrid_cpu", sources=[str(SOURCE)], extra_cflags=flags,
        extra_ldflags=["-fopenmp"],
    )  # fmt: skip


class FusedHashEncode(torch.autograd.Function):
    """``x [N, 3], table [L * T, F], scales [L] -> [N, L, F]`` by the C++ kernels."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, table: torch.Tensor, scales: torch.Tensor) -> Any:
        x, scales = x.float().contiguous(), scales.float().contiguous()
        ctx.save_for_backward(x, table, scales)
        return kernels().encode(x, table.contiguous(), scales)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, Any, None]:
        x, table, scales = ctx.saved_tensors
        want_x, want_table = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_table, grad_x = kernels().encode_backward(
            grad, x, table.contiguous(), scales, want_table, want_x
        )
        return grad_x, grad_table, None
