"""Ray samplers (nerfstudio ``ray_samplers.py``): piecewise initial sampler, PDF sampler, and the
proposal network sampler with weight annealing and its update schedule.

Samples are kept as bin edges in two coordinates: Euclidean distance ``t`` along the unit ray
direction ``[R, S + 1]`` and the normalised "spacing" ``s`` in ``[0, 1]`` ``[R, S + 1]``, where
``t = g^-1(s * g(far) + (1 - s) * g(near))`` with the piecewise ``g`` (uniform up to distance 1,
linear in disparity beyond). Losses use the spacing edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def _g(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x < 1, x / 2, 1 - 1 / (2 * x.clamp_min(1e-12)))


def _g_inv(s: torch.Tensor) -> torch.Tensor:
    return torch.where(s < 0.5, 2 * s, 1 / (2 - 2 * s).clamp_min(1e-12))


def spacing_to_euclidean(
    spacing: torch.Tensor, near: torch.Tensor, far: torch.Tensor
) -> torch.Tensor:
    """Spacing ``s`` ``[R, K]`` -> distance ``t`` ``[R, K]`` for per-ray ``near``/``far`` ``[R, 1]``."""
    return _g_inv(spacing * _g(far) + (1 - spacing) * _g(near))


@dataclass
class RaySamples:
    """Samples along a batch of rays: bin edges in both coordinates."""

    spacing_bins: torch.Tensor  # [R, S + 1] in [0, 1]
    bins: torch.Tensor  # [R, S + 1] metric distance along the unit direction

    @property
    def starts(self) -> torch.Tensor:
        return self.bins[:, :-1]

    @property
    def ends(self) -> torch.Tensor:
        return self.bins[:, 1:]

    @property
    def deltas(self) -> torch.Tensor:  # [R, S]
        return self.bins[:, 1:] - self.bins[:, :-1]

    @property
    def midpoints(self) -> torch.Tensor:  # [R, S]
        return (self.bins[:, 1:] + self.bins[:, :-1]) / 2

    def positions(self, origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """World points at bin midpoints ``[R, S, 3]``."""
        return origins[:, None, :] + directions[:, None, :] * self.midpoints[..., None]


def uniform_spacing_bins(
    num_rays: int,
    num_samples: int,
    *,
    train: bool,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``num_samples + 1`` edges in ``[0, 1]`` per ray ``[R, S + 1]``; with ``train`` each edge moves
    within its neighbouring half bins by one random number per ray (single jitter)."""
    bins = torch.linspace(0.0, 1.0, num_samples + 1, device=device).expand(num_rays, -1)
    if not train:
        return bins.contiguous()
    centers = (bins[:, 1:] + bins[:, :-1]) / 2
    upper = torch.cat([centers, bins[:, -1:]], dim=-1)
    lower = torch.cat([bins[:, :1], centers], dim=-1)
    u = torch.rand(num_rays, 1, device=device, generator=generator)
    return lower + (upper - lower) * u


def pdf_spacing_bins(
    spacing_bins: torch.Tensor,  # [R, S + 1]
    weights: torch.Tensor,  # [R, S]
    num_samples: int,
    *,
    train: bool,
    generator: torch.Generator | None = None,
    histogram_padding: float = 0.01,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Inverse-CDF resampling of the histogram ``weights`` over ``spacing_bins`` -> new edges
    ``[R, num_samples + 1]`` (sorted, detached), as nerfstudio's ``PDFSampler``
    (``include_original=False``, single jitter)."""
    num_rays, num_bins = weights.shape
    weights = weights.detach().float() + histogram_padding
    weights_sum = weights.sum(dim=-1, keepdim=True)
    padding = torch.relu(eps - weights_sum)
    weights = weights + padding / num_bins
    weights_sum = weights_sum + padding
    pdf = weights / weights_sum
    cdf = torch.clamp_max(torch.cumsum(pdf, dim=-1), 1.0)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], dim=-1)  # [R, S + 1]
    n = num_samples + 1
    device = weights.device
    u = torch.linspace(0.0, 1.0 - 1.0 / n, n, device=device).expand(num_rays, -1)
    if train:
        u = u + torch.rand(num_rays, 1, device=device, generator=generator) / n
    else:
        u = u + 1.0 / (2 * n)
    u = u.contiguous()
    existing = spacing_bins.detach().float().contiguous()
    inds = torch.searchsorted(cdf.contiguous(), u, side="right")
    below = torch.clamp(inds - 1, 0, num_bins)
    above = torch.clamp(inds, 0, num_bins)
    cdf_g0 = torch.gather(cdf, 1, below)
    cdf_g1 = torch.gather(cdf, 1, above)
    bins_g0 = torch.gather(existing, 1, below)
    bins_g1 = torch.gather(existing, 1, above)
    t = torch.clip(torch.nan_to_num((u - cdf_g0) / (cdf_g1 - cdf_g0), 0.0), 0.0, 1.0)
    return (bins_g0 + t * (bins_g1 - bins_g0)).detach()


def anneal_weight(step: int, slope: float = 10.0, max_num_iters: int = 1000) -> float:
    """mip-NeRF 360 eq. 18 bias curve: 0 at step 0, 1 from ``max_num_iters`` on."""
    x = float(np.clip(step / max_num_iters, 0.0, 1.0))
    return slope * x / ((slope - 1) * x + 1)


def proposal_update_every(step: int, update_every: int = 5, warmup: int = 5000) -> float:
    """nerfstudio's schedule: ``clip(interp(step, [0, warmup], [0, update_every]), 1, update_every)``."""
    return float(np.clip(np.interp(step, [0, warmup], [0, update_every]), 1, update_every))
