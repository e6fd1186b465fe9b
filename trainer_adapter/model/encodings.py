"""Multi-resolution hash encoding (nerfstudio's torch hashing, optional tiny-cuda-nn) and SH.

The torch path reproduces nerfstudio's ``HashEncoding.pytorch_fwd``: level ``l`` has resolution
``N_l = floor(base * b**l)``; the 8 cell corners of ``x * N_l`` are hashed as
``(c_x * 1) ^ (c_y * 2654435761) ^ (c_z * 805459861) mod T + l * T`` into one flat table of
``L * T`` rows, and trilinearly interpolated. Two CPU speed-ups keep the maths identical:

* all ``L * 8`` corners are gathered with one indexing op (``fused_gather``; False
  keeps nerfstudio's one-gather-per-corner layout, for benchmarks);
* the table gradient is built by one ``index_add_`` instead of autograd's embedding
  backward; ``sparse_grad=True`` makes it a sparse (row-wise) gradient instead, updated by a
  lazy Adam (``torch.optim.SparseAdam``) in the trainer (reference §6.2; measured in
  ``bench/train.py``).

``use_fused_kernels`` (``train --compile``) runs the same maths in fused kernels: C++ on CPU
(:mod:`trainer_adapter.model.hashgrid_cpu`), ``torch.compile`` elsewhere.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from trainer_adapter.model.hashgrid_cpu import FusedHashEncode

log = logging.getLogger(__name__)

#: nerfstudio / Instant-NGP spatial hash primes, one per axis
HASH_PRIMES = (1, 2654435761, 805459861)


class _TableGather(torch.autograd.Function):
    """``table[index]`` whose backward builds the table gradient cheaply.

    Autograd's embedding backward is the CPU bottleneck of a step (reference §6.2). Here the
    dense gradient is one ``index_add_`` (~4x faster than ``embedding_dense_backward`` on CPU,
    measured; a float ``bincount`` was slower for large tables); with ``sparse`` it is a sparse
    COO tensor (rows touched only) for a lazy Adam.
    """

    @staticmethod
    def forward(ctx: Any, table: torch.Tensor, index: torch.Tensor, sparse: bool) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.table_shape = table.shape
        ctx.sparse = sparse
        return table.index_select(0, index)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (index,) = ctx.saved_tensors
        rows, feats = ctx.table_shape
        grad = grad.contiguous()
        if ctx.sparse:
            sparse_grad = torch.sparse_coo_tensor(
                index[None], grad, (rows, feats), check_invariants=False
            )
            return sparse_grad, None, None
        dense = torch.zeros((rows, feats), dtype=grad.dtype, device=grad.device)
        return dense.index_add_(0, index, grad), None, None


class _Interpolate(torch.autograd.Function):
    """``sum_c w[m, c] * feats[m, c, :]``: corner features ``[M, 8, F]`` and weights ``[M, 8]``
    -> ``[M, F]``, as batched matrix products.

    The same sum as ``(feats * weights[..., None]).sum(1)``, but that broadcast multiply and its
    backward run elementwise loops over an inner dimension of F = 2, which dominated a CPU step
    (measured: the two ``bmm`` are about 4x faster than the broadcast forms).
    """

    @staticmethod
    def forward(ctx, feats: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(feats, weights)
        with torch.autocast(feats.device.type, enabled=False):  # fp32 even under autocast
            return torch.bmm(weights[:, None, :], feats)[:, 0]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        feats, weights = ctx.saved_tensors
        grad = grad.contiguous()
        grad_feats = grad_weights = None
        if ctx.needs_input_grad[0]:
            grad_feats = weights[:, :, None] * grad[:, None, :]
        if ctx.needs_input_grad[1]:
            with torch.autocast(feats.device.type, enabled=False):
                grad_weights = torch.bmm(feats, grad[:, :, None].to(feats.dtype))[..., 0]
        return grad_feats, grad_weights


class _GatherInterpolate(torch.autograd.Function):
    """``sum_c weights[n, l, c] * table[index[n, l, c]]`` -> ``[N, L, F]``, written for
    ``torch.compile``: the forward fuses into one loop that never stores the corner features,
    and the backward builds the table gradient with one scatter into one zeroed table.

    Autograd of eight per-corner gathers (nerfstudio's form) zeroes and scatters eight full-size
    tables and sums them; one gather of all corners makes inductor run an OpenMP region per
    output element. Both measured several times slower than this on CPU (docs/train.md).
    """

    @staticmethod
    def forward(
        ctx: Any, table: torch.Tensor, index: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(table, index, weights)
        out = table[index[..., 0]] * weights[..., 0, None]
        for corner in range(1, 8):
            out = out + table[index[..., corner]] * weights[..., corner, None]
        return out

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, None, torch.Tensor | None]:
        table, index, weights = ctx.saved_tensors
        grad_table = grad_weights = None
        if ctx.needs_input_grad[0]:
            contributions = (weights[..., None] * grad[..., None, :]).reshape(-1, table.shape[1])
            grad_table = torch.zeros_like(table).index_put_(
                (index.reshape(-1),), contributions, accumulate=True
            )
        if ctx.needs_input_grad[2]:
            per_corner = [(table[index[..., c]] * grad).sum(-1) for c in range(8)]
            grad_weights = torch.stack(per_corner, -1)
        return grad_table, None, grad_weights


def growth_factor(num_levels: int, min_res: int, max_res: int) -> float:
    """Per-level scale ``b = exp((ln max_res - ln min_res) / (L - 1))``."""
    if num_levels <= 1:
        return 1.0
    return math.exp((math.log(max_res) - math.log(min_res)) / (num_levels - 1))


def tcnn_available() -> bool:
    """True when tiny-cuda-nn imports (it is only built for CUDA machines)."""
    try:
        import tinycudann  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


class HashEncoding(nn.Module):
    """Hash grid encoding of points in ``[0, 1]^3``: ``[..., 3] -> [..., L * F]``."""

    scalings: torch.Tensor  # [L] buffers, declared for the type checker
    hash_offset: torch.Tensor  # [L]
    primes: torch.Tensor  # [3]

    def __init__(
        self,
        num_levels: int = 16,
        min_res: int = 16,
        max_res: int = 1024,
        log2_hashmap_size: int = 19,
        features_per_level: int = 2,
        hash_init_scale: float = 0.001,
        sparse_grad: bool = False,
        fused_gather: bool = True,
    ) -> None:
        super().__init__()
        self.fused_gather = fused_gather
        self.num_levels = num_levels
        self.features_per_level = features_per_level
        self.hash_table_size = 2**log2_hashmap_size
        self.sparse_grad = sparse_grad
        self.growth = growth_factor(num_levels, min_res, max_res)
        levels = torch.arange(num_levels, dtype=torch.float64)
        self.register_buffer(
            "scalings", torch.floor(min_res * self.growth**levels).float(), persistent=False
        )
        self.register_buffer(
            "hash_offset", torch.arange(num_levels) * self.hash_table_size, persistent=False
        )
        self.register_buffer("primes", torch.tensor(HASH_PRIMES), persistent=False)
        table = torch.rand(self.hash_table_size * num_levels, features_per_level) * 2 - 1
        self.hash_table = nn.Parameter(table * hash_init_scale)
        self.fused_kernels = False

    def use_fused_kernels(self) -> None:
        """Run the same maths in fused kernels: the C++ ones of :mod:`hashgrid_cpu` on CPU,
        ``torch.compile`` elsewhere. Sparse gradients keep the eager path."""
        self.fused_kernels = not self.sparse_grad

    @property
    def output_dim(self) -> int:
        return self.num_levels * self.features_per_level

    def corner_indices(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Table rows ``[N, L, 8]`` and trilinear weights ``[N, L, 8]`` for points ``[N, 3]``.

        Corner ``c`` takes the ceil coordinate on axis ``a`` where bit ``a`` of ``c`` is set. The
        hash is separable (XOR of per-axis products), so each axis is hashed for its floor and
        ceil once and the 8 corners are combined by broadcasting. The work runs points-last
        (``[.., L, N]``): elementwise loops over a long contiguous axis, not over the 2-, 3- or
        8-long axes, which made the points-first layout several times slower on CPU.
        """
        n = x.shape[0]
        scaled = self.scalings[:, None, None] * x.float().t()[None]  # [L, 3, N]
        floor = torch.floor(scaled)
        offset = scaled - floor  # [L, 3, N]
        primes = self.primes[None, :, None]
        lo_hi = torch.stack([floor.long() * primes, torch.ceil(scaled).long() * primes])
        hx, hy, hz = lo_hi[:, :, 0], lo_hi[:, :, 1], lo_hi[:, :, 2]  # [2, L, N] each
        index = hz[:, None, None] ^ hy[None, :, None] ^ hx[None, None, :]  # [2, 2, 2, L, N]
        # T is a power of two and the hashes are non-negative: & (T - 1) == mod T
        index = (index & (self.hash_table_size - 1)) + self.hash_offset[:, None]
        w = torch.stack([1 - offset, offset])  # [2, L, 3, N]
        wx, wy, wz = w[:, :, 0], w[:, :, 1], w[:, :, 2]  # [2, L, N] each
        weights = wz[:, None, None] * wy[None, :, None] * wx[None, None, :]  # [2, 2, 2, L, N]
        index = index.reshape(8, self.num_levels, n).permute(2, 1, 0).contiguous()
        weights = weights.reshape(8, self.num_levels, n).permute(2, 1, 0).contiguous()
        return index, weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in ``[0, 1]^3`` ``[..., 3]`` -> features ``[..., L * F]`` (float32)."""
        if self.fused_kernels and x.device.type == "cpu":
            encoded = FusedHashEncode.apply(x.reshape(-1, 3), self.hash_table, self.scalings)
            return encoded.reshape(*x.shape[:-1], self.output_dim)
        if self.fused_kernels:
            return _compiled_forward()(self, x)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        batch_shape = x.shape[:-1]
        x = x.reshape(-1, 3)
        index, weights = self.corner_indices(x)
        n = x.shape[0]
        if torch.compiler.is_compiling():
            encoded = _GatherInterpolate.apply(self.hash_table, index, weights)
            return encoded.reshape(*batch_shape, self.output_dim)
        if not self.fused_gather:  # nerfstudio's layout, one dense-gradient gather per corner
            corners = [self.hash_table[index[:, :, c]] * weights[:, :, c, None] for c in range(8)]
            return torch.stack(corners, 0).sum(0).reshape(*batch_shape, self.output_dim)
        feats = _TableGather.apply(self.hash_table, index.view(-1), self.sparse_grad)
        feats = feats.view(n * self.num_levels, 8, self.features_per_level)  # [N L, 8, F]
        flat_weights = weights.reshape(n * self.num_levels, 8).to(feats.dtype)
        encoded = _Interpolate.apply(feats, flat_weights)  # [N L, F]
        return encoded.reshape(*batch_shape, self.output_dim)


@functools.cache
def _compiled_forward() -> Callable[[HashEncoding, torch.Tensor], torch.Tensor]:
    """``HashEncoding._forward`` under ``torch.compile``, unbound: a copy of a grid (the viewer's
    snapshot) runs with its own table, not the original's."""
    return torch.compile(HashEncoding._forward)


def uses_fused_kernels(model: nn.Module) -> bool:
    """True when a hash grid of ``model`` runs ``--compile``'s fused kernels."""
    return any(isinstance(m, HashEncoding) and m.fused_kernels for m in model.modules())


def use_eager_kernels(model: nn.Module) -> None:
    """Every hash grid of ``model`` back on the torch path (where the fused kernels cannot run)."""
    for module in model.modules():
        if isinstance(module, HashEncoding):
            module.fused_kernels = False


class TcnnHashEncoding(nn.Module):
    """The same encoding through tiny-cuda-nn's fused HashGrid (CUDA only, imported lazily).

    tcnn's grid geometry differs slightly from nerfstudio's torch hashing (reference §2.2): a half
    cell offset, dense coarse levels, U(+-1e-4) init. The API is that of :class:`HashEncoding`.
    """

    def __init__(
        self,
        num_levels: int = 16,
        min_res: int = 16,
        max_res: int = 1024,
        log2_hashmap_size: int = 19,
        features_per_level: int = 2,
        hash_init_scale: float = 0.001,
        sparse_grad: bool = False,
        fused_gather: bool = True,
    ) -> None:
        super().__init__()
        import tinycudann as tcnn

        self.num_levels = num_levels
        self.features_per_level = features_per_level
        self.sparse_grad = False
        self.encoding = tcnn.Encoding(
            n_input_dims=3,
            encoding_config={
                "otype": "HashGrid",
                "n_levels": num_levels,
                "n_features_per_level": features_per_level,
                "log2_hashmap_size": log2_hashmap_size,
                "base_resolution": min_res,
                "per_level_scale": growth_factor(num_levels, min_res, max_res),
            },
        )

    @property
    def output_dim(self) -> int:
        return self.num_levels * self.features_per_level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch_shape = x.shape[:-1]
        out = self.encoding(x.reshape(-1, 3).contiguous())
        return out.float().reshape(*batch_shape, self.output_dim)


def make_hash_encoding(implementation: str, **kwargs: Any) -> HashEncoding | TcnnHashEncoding:
    """``implementation`` "tcnn" uses tiny-cuda-nn when it imports, else falls back to torch."""
    if implementation == "tcnn":
        if tcnn_available():
            return TcnnHashEncoding(**kwargs)
        log.info("tiny-cuda-nn not importable; using the torch hash encoding")
    return HashEncoding(**kwargs)


def spherical_harmonics(directions: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """Real SH basis of unit ``directions`` ``[..., 3]`` -> ``[..., levels**2]`` (levels <= 4).

    Fed the unit direction itself, not nerfstudio's ``(d + 1) / 2`` (a known bug of its torch
    path, reference §2.2 item 7).
    """
    if not 1 <= levels <= 4:
        raise ValueError(f"SH levels must be 1..4, got {levels}")
    x, y, z = directions[..., 0], directions[..., 1], directions[..., 2]
    xx, yy, zz = x * x, y * y, z * z
    comps = [torch.full_like(x, 0.28209479177387814)]
    if levels > 1:
        comps += [0.4886025119029199 * y, 0.4886025119029199 * z, 0.4886025119029199 * x]
    if levels > 2:
        comps += [
            1.0925484305920792 * x * y,
            1.0925484305920792 * y * z,
            0.9461746957575601 * zz - 0.31539156525251999,
            1.0925484305920792 * x * z,
            0.5462742152960396 * (xx - yy),
        ]
    if levels > 3:
        comps += [
            0.5900435899266435 * y * (3 * xx - yy),
            2.890611442640554 * x * y * z,
            0.4570457994644658 * y * (5 * zz - 1),
            0.3731763325901154 * z * (5 * zz - 3),
            0.4570457994644658 * x * (5 * zz - 1),
            1.445305721320277 * z * (xx - yy),
            0.5900435899266435 * x * (xx - 3 * yy),
        ]
    return torch.stack(comps, dim=-1)
