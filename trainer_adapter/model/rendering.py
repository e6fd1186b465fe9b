"""Volume rendering over batched samples (replaces nerfacc's accumulate: a sum over samples).

Shapes: densities ``[R, S, 1]`` (1/length), deltas ``[R, S]`` (metric length), colours
``[R, S, 3]``; outputs are per ray.
"""

from __future__ import annotations

import torch


def render_weights(densities: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """``w_i = (1 - exp(-sigma_i d_i)) exp(-sum_{j<i} sigma_j d_j)`` -> ``[R, S]``."""
    sigma_delta = densities[..., 0].float() * deltas
    alphas = 1 - torch.exp(-sigma_delta)
    transmittance = torch.cumsum(sigma_delta[:, :-1], dim=-1)
    transmittance = torch.cat([torch.zeros_like(sigma_delta[:, :1]), transmittance], dim=-1)
    return torch.nan_to_num(alphas * torch.exp(-transmittance))


def render_rgb(
    rgb: torch.Tensor,  # [R, S, 3]
    weights: torch.Tensor,  # [R, S]
    background: str = "last_sample",
) -> torch.Tensor:
    """``C = sum_i w_i c_i + bg (1 - sum_i w_i)`` -> ``[R, 3]``; ``last_sample`` uses the colour of
    the farthest sample as the background."""
    comp = torch.sum(weights[..., None] * rgb.float(), dim=-2)
    accumulation = weights.sum(dim=-1, keepdim=True)
    if background == "last_sample":
        bg = rgb[:, -1, :].float()
    elif background == "black":
        bg = torch.zeros_like(comp)
    elif background == "white":
        bg = torch.ones_like(comp)
    else:
        raise ValueError(f"unknown background {background!r}")
    return comp + bg * (1 - accumulation)


def render_depth(weights: torch.Tensor, midpoints: torch.Tensor) -> torch.Tensor:
    """Expected depth ``sum w t / (sum w + 1e-10)``, clipped to the sample range -> ``[R, 1]``."""
    depth = (weights * midpoints).sum(-1, keepdim=True) / (weights.sum(-1, keepdim=True) + 1e-10)
    return torch.clip(
        depth, midpoints.min(-1, keepdim=True).values, midpoints.max(-1, keepdim=True).values
    )
