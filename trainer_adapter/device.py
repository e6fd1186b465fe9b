"""Device helpers: the only module that touches backend-specific torch APIs.

Everything device-dependent in the trainer goes through here (device choice for ``--device auto``,
autocast dtype, grad scaler, synchronize, cache and peak-memory queries), so the model and the
trainer run unchanged on CUDA, XPU, MPS and CPU. ``torch.accelerator`` (torch >= 2.6) and its
``memory`` submodule (>= 2.9) are used when present, the per-backend modules otherwise.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import resource
import sys

import torch

from eyeful_tools.errors import UsageError

log = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda", "xpu", "mps")

#: glibc's ``mallopt`` parameters (``malloc.h``)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
#: the largest free top of the heap glibc keeps instead of giving it back (its maximum)
_KEEP_BYTES = 2**31 - 1


def _backend_available(kind: str) -> bool:
    if kind == "cpu":
        return True
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "xpu":
        return hasattr(torch, "xpu") and torch.xpu.is_available()
    if kind == "mps":
        return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    return False


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> the current accelerator (cuda, xpu or mps) if any, else cpu.

    Under DDP each process takes device ``local_rank`` of its backend.
    """
    if name not in DEVICE_CHOICES:
        raise UsageError("--device", f"unknown device {name!r}; choose from {DEVICE_CHOICES}")
    if name == "auto":
        kind = "cpu"
        accelerator = getattr(torch, "accelerator", None)
        if accelerator is not None and accelerator.is_available():
            current = accelerator.current_accelerator()
            kind = current.type if current is not None else "cpu"
        else:
            kind = next((k for k in ("cuda", "xpu", "mps") if _backend_available(k)), "cpu")
    else:
        kind = name
        if not _backend_available(kind):
            raise UsageError("--device", f"{kind} was requested but is not available here")
    if kind in ("cuda", "xpu"):
        return torch.device(kind, local_rank)
    return torch.device(kind)


def fused_kernel_problem(model: torch.nn.Module, device: torch.device) -> str | None:
    """Why the ``--compile`` fused hash-grid kernels that ``model`` would run cannot run on
    ``device``, or None. Training and loading a run share this one rule: nothing is checked (or
    built) where no grid runs them (sparse table gradients, tiny-cuda-nn's grid)."""
    from trainer_adapter.model.encodings import uses_fused_kernels

    return kernel_build_problem(device) if uses_fused_kernels(model) else None


def kernel_build_problem(device: torch.device) -> str | None:
    """Builds ``--compile``'s fused hash-grid kernels for ``device`` where they are built ahead,
    and says why they cannot run there, or None. On CPU they are C++
    (:mod:`trainer_adapter.model.hashgrid_cpu`, built here and now, once); on CUDA / XPU
    ``torch.compile`` builds them with Triton at the first step, and without it fails there. MPS
    compiles to Metal (nothing to check)."""
    if device.type == "cpu":
        from trainer_adapter.model.hashgrid_cpu import build_problem

        return build_problem()
    if device.type in ("cuda", "xpu"):
        from torch.utils._triton import has_triton

        if not has_triton():
            return f"torch.compile on {device.type} needs Triton, which is not installed"
    return None


def autocast_dtype(
    device: torch.device, mixed_precision: bool, cpu_bf16: bool = False
) -> torch.dtype | None:
    """The autocast dtype for a device, or ``None`` to run in fp32.

    CUDA: fp16 (with a grad scaler), as nerfstudio. XPU: bf16 (no scaler needed). MPS: fp32 (the
    safe default). CPU: fp32 like nerfstudio (which disables mixed precision on CPU), unless
    ``cpu_bf16`` asks for bf16 autocast (it only speeds up the MLPs; see ``bench/train.py``).
    """
    if device.type == "cpu":
        return torch.bfloat16 if cpu_bf16 else None
    if not mixed_precision:
        return None
    return {"cuda": torch.float16, "xpu": torch.bfloat16}.get(device.type)


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for the device, or a no-op when ``dtype`` is ``None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A ``torch.amp.GradScaler``: enabled only for fp16 autocast; disabled ones keep the code
    path (and the checkpoint layout) uniform."""
    enabled = dtype == torch.float16 and device.type in ("cuda", "xpu")
    scaler_device = device.type if device.type in ("cuda", "xpu") else "cpu"
    return torch.amp.GradScaler(scaler_device, enabled=enabled)


def synchronize(device: torch.device) -> None:
    """Wait for queued work (before reading a wall clock on an asynchronous device)."""
    if device.type == "cpu":
        return
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "synchronize"):
        accelerator.synchronize(device)
    elif device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "xpu":
        torch.xpu.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def empty_cache(device: torch.device) -> None:
    """Return cached allocator blocks to the device (no-op on CPU)."""
    if device.type == "cpu":
        return
    memory = getattr(getattr(torch, "accelerator", None), "memory", None)
    if memory is not None and hasattr(memory, "empty_cache"):
        memory.empty_cache()
    elif device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "xpu":
        torch.xpu.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


_mps_peak = {"bytes": 0}


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this process on the device, in bytes.

    CUDA/XPU: the allocator's peak. MPS has no peak counter, so the peak of the values seen by
    earlier calls is tracked here. CPU: the process's peak resident set size.
    """
    if device.type == "cpu":
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(rss if sys.platform == "darwin" else rss * 1024)
    if device.type == "mps":
        _mps_peak["bytes"] = max(_mps_peak["bytes"], int(torch.mps.current_allocated_memory()))
        return _mps_peak["bytes"]
    memory = getattr(getattr(torch, "accelerator", None), "memory", None)
    if memory is not None and hasattr(memory, "max_memory_allocated"):
        return int(memory.max_memory_allocated(device))
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    if device.type == "xpu":
        return int(torch.xpu.max_memory_allocated(device))
    return 0


def distributed_backend(device: torch.device) -> str:
    """nccl on CUDA, gloo everywhere else (as nerfstudio)."""
    return "nccl" if device.type == "cuda" else "gloo"


def set_device(device: torch.device) -> None:
    """Make ``device`` current for its backend (DDP: one process per device)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    elif device.type == "xpu":
        torch.xpu.set_device(device)


def keep_freed_host_memory() -> bool:
    """Have glibc serve every allocation from its heap and keep what is freed, instead of
    mapping each large tensor afresh and unmapping it when it dies. True when applied
    (glibc on Linux); elsewhere nothing changes.

    Why: glibc maps every allocation above its mmap threshold (at most 32 MB) with ``mmap`` and
    returns it with ``munmap``, so on the CPU each large intermediate tensor of a step (the
    hash encodings' corner tensors at nerfacto's 4096 rays) is faulted in again, page by page,
    zeroed by the kernel. Measured on one thread: about 570,000 page faults and 1.3 s of system
    time per forward + backward of nerfacto's main hash encoding; a nerfacto step at 4096 rays
    went from 16.4 to 9.0 s. The cost: memory freed stays with the process (its peak RSS is
    what it holds until it exits), and fragmentation adds to that peak (3.6 -> 4.5 GiB there).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
