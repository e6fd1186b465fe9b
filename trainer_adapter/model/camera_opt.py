"""SO3xR3 camera pose refinement (nerfstudio ``camera_optimizers.py``).

One 6-vector per training image, ``[translation(3), so(3) rotation vector(3)]``, initialised to
zero. Applied to training rays in world space: ``origin += t``, ``direction = R direction``.
"""

from __future__ import annotations

import torch
from torch import nn


def skew(w: torch.Tensor) -> torch.Tensor:
    """``[..., 3] -> [..., 3, 3]`` cross-product matrices."""
    zero = torch.zeros_like(w[..., 0])
    wx, wy, wz = w[..., 0], w[..., 1], w[..., 2]
    return torch.stack([zero, -wz, wy, wz, zero, -wx, -wy, wx, zero], dim=-1).reshape(
        *w.shape[:-1], 3, 3
    )


def exp_map_so3xr3(tangent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, 6]`` -> rotations ``[N, 3, 3]`` (Rodrigues, theta floored at 1e-2 as nerfstudio)
    and translations ``[N, 3]``."""
    translation, omega = tangent[:, :3], tangent[:, 3:]
    theta_sq = (omega**2).sum(-1).clamp_min(1e-4)[:, None, None]
    theta = torch.sqrt(theta_sq)
    k = skew(omega)
    eye = torch.eye(3, device=tangent.device, dtype=tangent.dtype).expand_as(k)
    rotation = eye + (torch.sin(theta) / theta) * k + ((1 - torch.cos(theta)) / theta_sq) * (k @ k)
    return rotation, translation


class CameraOptimizer(nn.Module):
    """Per-image pose corrections, regularised with plain (unsquared) norms."""

    def __init__(
        self,
        num_images: int,
        *,
        enabled: bool = True,
        trans_l2_penalty: float = 1e-2,
        rot_l2_penalty: float = 1e-3,
    ) -> None:
        super().__init__()
        self.enabled = enabled
        self.trans_l2_penalty = trans_l2_penalty
        self.rot_l2_penalty = rot_l2_penalty
        self.pose_adjustment = nn.Parameter(torch.zeros(max(num_images, 1), 6))

    def apply_to_rays(
        self,
        origins: torch.Tensor,  # [R, 3] world
        directions: torch.Tensor,  # [R, 3] world, unit
        image_index: torch.Tensor,  # [R]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.enabled:
            return origins, directions
        rotation, translation = exp_map_so3xr3(self.pose_adjustment[image_index])
        directions = (rotation @ directions[..., None])[..., 0]
        return origins + translation, directions

    def regularizer(self) -> torch.Tensor:
        if not self.enabled:
            return torch.zeros((), device=self.pose_adjustment.device)
        adj = self.pose_adjustment
        return (
            adj[:, :3].norm(dim=-1).mean() * self.trans_l2_penalty
            + adj[:, 3:].norm(dim=-1).mean() * self.rot_l2_penalty
        )
