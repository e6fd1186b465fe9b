"""Optimizers and learning-rate schedules as nerfstudio's nerfacto, and the finiteness check
that keeps a non-finite step from updating the weights."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from trainer_adapter.model.nerfacto import NerfactoModel
from trainer_adapter.options import OptimOptions


class ExponentialDecay:
    """nerfstudio's ``ExponentialDecayScheduler`` multiplier (no warmup):
    ``lr(step) = exp((1 - t) ln lr_init + t ln lr_final)``, ``t = clip(step / max_steps, 0, 1)``.
    A callable object (not a closure) so ``LambdaLR.state_dict`` stores plain numbers."""

    def __init__(self, lr_init: float, lr_final: float, max_steps: int) -> None:
        self.lr_init = lr_init
        self.lr_final = lr_final
        self.max_steps = max_steps

    def __call__(self, step: int) -> float:
        t = min(max(step / self.max_steps, 0.0), 1.0)
        lr = math.exp((1 - t) * math.log(self.lr_init) + t * math.log(self.lr_final))
        return lr / self.lr_init


@dataclass
class Optimizers:
    """One optimizer (and optional scheduler) per parameter group, by group name."""

    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = field(default_factory=dict)

    def zero_grad(self) -> None:
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)

    def step(self, scaler: torch.amp.GradScaler) -> bool:
        """Step every group that received gradients (nerfstudio's ``optimizer_scaler_step_some``);
        then the schedulers, unless the scaler skipped the step (scale decreased)."""
        for optimizer in self.optimizers.values():
            if any(p.grad is not None for g in optimizer.param_groups for p in g["params"]):
                scaler.step(optimizer)
        scale = scaler.get_scale() if scaler.is_enabled() else 1.0
        scaler.update()
        skipped = scaler.is_enabled() and scaler.get_scale() < scale
        if not skipped:
            for scheduler in self.schedulers.values():
                scheduler.step()
        return not skipped


def make_optimizers(model: NerfactoModel, optim: OptimOptions, device: torch.device) -> Optimizers:
    """proposal_networks / fields: Adam(1e-2, eps 1e-15) decaying to 1e-4 over 200k steps;
    camera_opt: Adam(1e-3) decaying to 1e-4 over 5k steps (nerfacto). ``*_tables`` groups (sparse
    hash-table gradients) use ``SparseAdam``, the lazy Adam, with the same lr and schedule."""
    result = Optimizers()
    fused = optim.fused_adam and device.type in ("cpu", "cuda", "xpu", "mps")
    for name, params in model.param_groups().items():
        base = name.removesuffix("_tables")
        lr = optim.camera_lr if base == "camera_opt" else optim.lr
        if name.endswith("_tables"):
            optimizer: torch.optim.Optimizer = torch.optim.SparseAdam(params, lr=lr, eps=optim.eps)
        elif optim.optimizer == "radam" and base != "camera_opt":
            optimizer = torch.optim.RAdam(params, lr=lr, eps=optim.eps)
        else:
            optimizer = torch.optim.Adam(params, lr=lr, eps=optim.eps, fused=fused)
        result.optimizers[name] = optimizer
        if base == "camera_opt":
            decay = ExponentialDecay(lr, optim.camera_lr_final, optim.camera_lr_decay_steps)
        elif base == "proposal_networks" and not optim.proposal_lr_decay:
            continue
        else:
            decay = ExponentialDecay(lr, optim.lr_final, optim.lr_decay_steps)
        result.schedulers[name] = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
    return result


def gradients_finite(model: nn.Module) -> torch.Tensor:
    """A 0-dim bool tensor (on the device, no sync): every gradient of ``model`` is finite.

    Sparse (row-wise) table gradients are checked on their values."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.ones((), dtype=torch.bool)
    values = [g._values() if g.is_sparse else g for g in grads]
    return torch.stack([torch.isfinite(v).all() for v in values]).all()
