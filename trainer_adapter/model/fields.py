"""Nerfacto's field and proposal density fields (nerfstudio ``nerfacto_field.py``,
``density_fields.py``), plain torch.

Positions are world points in the normalised scene (cameras inside ``[-1, 1]^3``); they are
contracted with the L-inf scene contraction to ``[-2, 2]^3`` and mapped to ``[0, 1]^3`` for the hash
grid. Densities are ``average_init_density * trunc_exp(raw)``; samples not strictly inside
``(0, 1)^3`` get zero density.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainer_adapter.model.encodings import (
    HashEncoding,
    TcnnHashEncoding,
    make_hash_encoding,
    spherical_harmonics,
)


class _TruncExp(torch.autograd.Function):
    """exp in forward; the backward clamps the input to [-15, 15] (nerfstudio ``trunc_exp``).

    Computed in fp32 even under autocast (no device-bound ``custom_fwd`` decorator needed).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(-15, 15))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    return _TruncExp.apply(x)


def contract_linf(x: torch.Tensor) -> torch.Tensor:
    """Scene contraction, L-inf norm: identity inside the unit cube, ``(2 - 1/m) x/m`` outside,
    with ``m = |x|_inf``; maps R^3 into ``[-2, 2]^3``. ``[..., 3] -> [..., 3]``."""
    mag = x.abs().amax(dim=-1, keepdim=True)
    safe = mag.clamp_min(1.0)
    return torch.where(mag < 1, x, (2 - 1 / safe) * (x / safe))


def normalized_positions(positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """World points ``[..., 3]`` -> hash-grid coordinates in ``[0, 1]^3`` and a validity mask
    ``[...]`` (strictly inside). Invalid points are zeroed, as nerfstudio's selector does."""
    unit = (contract_linf(positions) + 2.0) / 4.0
    valid = ((unit > 0) & (unit < 1)).all(dim=-1)
    return unit * valid[..., None], valid


def mlp(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> nn.Sequential:
    """nerfstudio's torch MLP: ``num_layers`` Linear layers with ReLU between them."""
    if num_layers < 1:
        raise ValueError("an MLP needs at least one layer")
    dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
    layers: list[nn.Module] = []
    for i in range(num_layers):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < num_layers - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _encoding(
    implementation: str,
    *,
    num_levels: int,
    base_res: int,
    max_res: int,
    log2_hashmap_size: int,
    features_per_level: int,
    sparse_grad: bool,
    fused_gather: bool,
) -> HashEncoding | TcnnHashEncoding:
    return make_hash_encoding(
        implementation,
        num_levels=num_levels,
        min_res=base_res,
        max_res=max_res,
        log2_hashmap_size=log2_hashmap_size,
        features_per_level=features_per_level,
        sparse_grad=sparse_grad,
        fused_gather=fused_gather,
    )


class HashMLPDensityField(nn.Module):
    """A proposal network: hash grid + small MLP -> density only."""

    def __init__(
        self,
        *,
        num_levels: int = 5,
        base_res: int = 16,
        max_res: int = 128,
        log2_hashmap_size: int = 17,
        features_per_level: int = 2,
        hidden_dim: int = 16,
        num_layers: int = 2,
        average_init_density: float = 0.01,
        implementation: str = "torch",
        sparse_grad: bool = False,
        fused_gather: bool = True,
    ) -> None:
        super().__init__()
        self.average_init_density = average_init_density
        self.encoding = _encoding(
            implementation,
            num_levels=num_levels,
            base_res=base_res,
            max_res=max_res,
            log2_hashmap_size=log2_hashmap_size,
            features_per_level=features_per_level,
            sparse_grad=sparse_grad,
            fused_gather=fused_gather,
        )
        self.mlp = mlp(self.encoding.output_dim, hidden_dim, 1, num_layers)

    def density(self, positions: torch.Tensor) -> torch.Tensor:
        """World points ``[..., 3]`` -> density ``[..., 1]`` (1/unit length)."""
        unit, valid = normalized_positions(positions)
        raw = self.mlp(self.encoding(unit))
        sigma = self.average_init_density * trunc_exp(raw.float())
        return sigma * valid[..., None]


class NerfactoField(nn.Module):
    """The main field: density from hash grid + MLP, colour from SH(direction), geometry
    features and a per-image appearance embedding (the mean embedding at eval).

    The embedding starts at ``appearance_embed_init_std`` times N(0, 1). nerfstudio's 1 (the
    default) leaves random codes of norm ~sqrt(dim) whose mean (norm ~1/sqrt(N) of that) the
    colour MLP never sees in training; 0 starts every code at the mean the eval renders with,
    so a code learns only its image's departure from it (better where exposure varies, worse
    where it does not: docs/train.md, "Appearance embedding")."""

    def __init__(
        self,
        *,
        num_images: int,
        num_levels: int = 16,
        base_res: int = 16,
        max_res: int = 2048,
        log2_hashmap_size: int = 19,
        features_per_level: int = 2,
        hidden_dim: int = 64,
        hidden_dim_color: int = 64,
        geo_feat_dim: int = 15,
        num_layers: int = 2,
        num_layers_color: int = 3,
        appearance_embed_dim: int = 32,
        appearance_embed_init_std: float = 1.0,
        use_appearance_embedding: bool = True,
        use_average_appearance_embedding: bool = True,
        average_init_density: float = 0.01,
        implementation: str = "torch",
        sparse_grad: bool = False,
        fused_gather: bool = True,
    ) -> None:
        super().__init__()
        self.geo_feat_dim = geo_feat_dim
        self.average_init_density = average_init_density
        self.use_appearance_embedding = use_appearance_embedding
        self.use_average_appearance_embedding = use_average_appearance_embedding
        self.encoding = _encoding(
            implementation,
            num_levels=num_levels,
            base_res=base_res,
            max_res=max_res,
            log2_hashmap_size=log2_hashmap_size,
            features_per_level=features_per_level,
            sparse_grad=sparse_grad,
            fused_gather=fused_gather,
        )
        self.base_mlp = mlp(self.encoding.output_dim, hidden_dim, 1 + geo_feat_dim, num_layers)
        self.appearance_embed_dim = appearance_embed_dim if use_appearance_embedding else 0
        if use_appearance_embedding:
            self.appearance = nn.Embedding(max(num_images, 1), appearance_embed_dim)
            with torch.no_grad():  # scales torch's N(0, 1): the same random stream either way
                self.appearance.weight.mul_(appearance_embed_init_std)
        self.color_mlp = mlp(
            16 + geo_feat_dim + self.appearance_embed_dim, hidden_dim_color, 3, num_layers_color
        )

    def density(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World points ``[R, S, 3]`` -> density ``[R, S, 1]`` and geo features ``[R, S, 15]``."""
        unit, valid = normalized_positions(positions)
        h = self.base_mlp(self.encoding(unit))
        raw, geo = h[..., :1], h[..., 1:]
        sigma = self.average_init_density * trunc_exp(raw.float()) * valid[..., None]
        return sigma, geo

    def forward(
        self,
        positions: torch.Tensor,  # [R, S, 3]
        directions: torch.Tensor,  # [R, 3] unit
        image_index: torch.Tensor | None,  # [R] training image index, None at eval
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Density ``[R, S, 1]`` and RGB in ``[0, 1]`` ``[R, S, 3]``."""
        sigma, geo = self.density(positions)
        num_rays, num_samples = positions.shape[:2]
        sh = spherical_harmonics(directions, 4)[:, None, :].expand(num_rays, num_samples, 16)
        parts = [sh.to(geo.dtype), geo]
        if self.use_appearance_embedding:
            if image_index is not None:
                embed = self.appearance(image_index)
            elif self.use_average_appearance_embedding:
                embed = self.appearance.weight.mean(dim=0, keepdim=True).expand(num_rays, -1)
            else:
                embed = torch.zeros(num_rays, self.appearance_embed_dim, device=positions.device)
            parts.append(embed[:, None, :].expand(-1, num_samples, -1).to(geo.dtype))
        rgb = torch.sigmoid(self.color_mlp(torch.cat(parts, dim=-1)).float())
        return sigma, rgb
