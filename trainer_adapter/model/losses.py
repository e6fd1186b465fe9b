"""Nerfacto's losses (nerfstudio ``model_components/losses.py``), in normalised spacing.

``spacing_bins`` are the sample edges ``[R, S + 1]`` in ``[0, 1]``; weights are ``[R, S]``.
"""

from __future__ import annotations

import torch

EPS = 1e-7


def outer_bound(
    t0: torch.Tensor,  # [R, S0 + 1] target edges
    t1: torch.Tensor,  # [R, S1 + 1] proposal edges
    w1: torch.Tensor,  # [R, S1] proposal weights
) -> torch.Tensor:
    """For each target interval, the summed proposal weight of the intervals overlapping it
    ``[R, S0]`` (mip-NeRF 360's "outer" envelope)."""
    cw1 = torch.cat([torch.zeros_like(w1[:, :1]), torch.cumsum(w1, dim=-1)], dim=-1)
    last = w1.shape[-1] - 1
    lo = torch.searchsorted(t1[:, :-1].contiguous(), t0[:, :-1].contiguous(), side="right") - 1
    lo = lo.clamp(0, last)
    hi = torch.searchsorted(t1[:, 1:].contiguous(), t0[:, 1:].contiguous(), side="right")
    hi = hi.clamp(0, last)
    return torch.gather(cw1[:, 1:], 1, hi) - torch.gather(cw1[:, :-1], 1, lo)


def interlevel_loss(
    weights_list: list[torch.Tensor], spacing_bins_list: list[torch.Tensor]
) -> torch.Tensor:
    """mip-NeRF 360 proposal loss: the last entry is the NeRF level (detached); every earlier
    level must bound it from above. Mean over rays and samples, summed over proposal levels."""
    target_bins = spacing_bins_list[-1].detach()
    target_w = weights_list[-1].detach()
    loss = torch.zeros((), device=target_w.device)
    for bins, w in zip(spacing_bins_list[:-1], weights_list[:-1], strict=True):
        bound = outer_bound(target_bins, bins, w)
        loss = loss + (torch.clip(target_w - bound, min=0) ** 2 / (target_w + EPS)).mean()
    return loss


def distortion_loss(spacing_bins: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """mip-NeRF 360 L_dist, mean over rays: ``sum_ij w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 ds_i``.

    The double sum is evaluated in O(S) with prefix sums (midpoints are sorted): it equals
    ``2 sum_i w_i (m_i W_<i - (wm)_<i)``.
    """
    mid = (spacing_bins[:, 1:] + spacing_bins[:, :-1]) / 2
    wm = weights * mid
    w_before = torch.cumsum(weights, dim=-1) - weights
    wm_before = torch.cumsum(wm, dim=-1) - wm
    inter = 2 * torch.sum(weights * (mid * w_before - wm_before), dim=-1)
    intra = torch.sum(weights**2 * (spacing_bins[:, 1:] - spacing_bins[:, :-1]), dim=-1) / 3
    return (inter + intra).mean()


def rgb_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean squared error over rays and channels."""
    return torch.mean((pred.float() - gt.float()) ** 2)
