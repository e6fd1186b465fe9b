"""Training presets as data: nerfstudio's ``nerfacto`` defaults, ``nerfacto-big`` and ``tiny``.

``TrainConfig`` holds every knob with nerfacto's value as its default (nerfstudio 1.1.5,
``models/nerfacto.py`` and ``configs/method_configs.py``); a preset is a dict of overrides. The
resolved config is written to ``config.json`` in each run and read back by eval, render and resume.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from eyeful_tools.errors import UsageError


def _proposal_nets() -> list[dict[str, Any]]:
    return [
        {"hidden_dim": 16, "log2_hashmap_size": 17, "num_levels": 5, "max_res": 128},
        {"hidden_dim": 16, "log2_hashmap_size": 17, "num_levels": 5, "max_res": 256},
    ]


@dataclass
class TrainConfig:
    """Model, sampler, loss, optimizer and trainer settings (nerfacto defaults)."""

    # model: field
    near_plane: float = 0.05
    far_plane: float = 1000.0
    background_color: str = "last_sample"
    hidden_dim: int = 64
    hidden_dim_color: int = 64
    num_levels: int = 16
    base_res: int = 16
    max_res: int = 2048
    log2_hashmap_size: int = 19
    features_per_level: int = 2
    appearance_embed_dim: int = 32
    use_appearance_embedding: bool = True
    use_average_appearance_embedding: bool = True
    #: 0.01 in nerfstudio's ``nerfacto`` method config (the class default is 1.0)
    average_init_density: float = 0.01
    #: "tcnn" uses tiny-cuda-nn's hash grid when it imports, else torch; "torch" forces torch
    implementation: str = "tcnn"
    # model: sampling
    num_proposal_samples_per_ray: tuple[int, ...] = (256, 96)
    num_nerf_samples_per_ray: int = 48
    proposal_update_every: int = 5
    proposal_warmup: int = 5000
    proposal_net_args_list: list[dict[str, Any]] = field(default_factory=_proposal_nets)
    proposal_average_init_density: float = 0.01
    use_proposal_weight_anneal: bool = True
    proposal_weights_anneal_slope: float = 10.0
    proposal_weights_anneal_max_num_iters: int = 1000
    # losses
    interlevel_loss_mult: float = 1.0
    distortion_loss_mult: float = 0.002
    camera_optimizer: str = "SO3xR3"  # or "off"
    camera_trans_l2_penalty: float = 1e-2
    camera_rot_l2_penalty: float = 1e-3
    # optimizers and schedules (Adam betas are torch's defaults)
    optimizer: str = "adam"  # "adam" or "radam"
    lr: float = 1e-2
    eps: float = 1e-15
    lr_final: float = 1e-4
    lr_decay_steps: int = 200_000
    #: nerfacto-big has no scheduler on the proposal group
    proposal_lr_decay: bool = True
    camera_lr: float = 1e-3
    camera_lr_final: float = 1e-4
    camera_lr_decay_steps: int = 5000
    # trainer
    max_num_iterations: int = 30_000
    train_num_rays_per_batch: int = 4096
    eval_num_rays_per_chunk: int = 1 << 15
    mixed_precision: bool = True
    steps_per_save: int = 2000
    #: loss, PSNR and rays/s are read back (a device sync) every this many steps, as nerfstudio logs
    steps_per_log: int = 10
    keep_checkpoints: int = 1
    seed: int = 42
    # CPU speed (identical maths; see trainer_adapter.model.encodings)
    #: one gather for all 8 corners (False: nerfstudio's per-corner gathers)
    fused_gather: bool = True
    #: sparse (row-wise) hash-table gradients with a lazy Adam (SparseAdam) for the tables
    sparse_grad: bool = False
    #: fused (single-kernel) Adam where torch supports it
    fused_adam: bool = True
    #: bf16 autocast on CPU (off: nerfstudio trains in fp32 on CPU)
    cpu_autocast_bf16: bool = False
    #: torch.compile the hash encodings (same maths, fused kernels; compiling costs minutes)
    compile_encodings: bool = False
    # loader (docs/loader.md): every pass streams all training images through the pool
    #: cap on the images sampled from at once (None: as many as cache_bytes holds)
    pool_images: int | None = None
    #: "auto": each step the pool takes every image decoded since the last one; a number:
    #: images entering the pool per step (batches independent of timing: exact resume)
    swap_rate: str | float = "auto"
    cache_bytes: int = 2 << 30
    loader_mode: Literal["lazy", "full"] = "lazy"
    #: decode threads (None: two, always leaving one core to the training loop)
    workers: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["num_proposal_samples_per_ray"] = list(self.num_proposal_samples_per_ray)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        if "num_proposal_samples_per_ray" in known:
            known["num_proposal_samples_per_ray"] = tuple(known["num_proposal_samples_per_ray"])
        return cls(**known)


PRESETS: dict[str, dict[str, Any]] = {
    "nerfacto": {},
    "nerfacto-big": {
        "max_num_iterations": 100_000,
        "train_num_rays_per_batch": 8192,
        "num_nerf_samples_per_ray": 128,
        "num_proposal_samples_per_ray": (512, 256),
        "hidden_dim": 128,
        "hidden_dim_color": 128,
        "appearance_embed_dim": 128,
        "max_res": 4096,
        "proposal_weights_anneal_max_num_iters": 5000,
        "log2_hashmap_size": 21,
        # the method config does not set it, so the class default applies [inferred]
        "average_init_density": 1.0,
        "proposal_average_init_density": 1.0,
        "optimizer": "radam",
        "lr_decay_steps": 50_000,
        "proposal_lr_decay": False,
    },
    # small enough to learn the synthetic capture on 2 CPU cores in a few minutes
    "tiny": {
        "max_num_iterations": 1000,
        "train_num_rays_per_batch": 512,
        "num_levels": 12,
        "max_res": 512,
        "log2_hashmap_size": 15,
        "num_proposal_samples_per_ray": (64, 32),
        "num_nerf_samples_per_ray": 24,
        "proposal_net_args_list": [
            {"hidden_dim": 16, "log2_hashmap_size": 14, "num_levels": 5, "max_res": 64},
            {"hidden_dim": 16, "log2_hashmap_size": 14, "num_levels": 5, "max_res": 128},
        ],
        "proposal_warmup": 500,
        "proposal_weights_anneal_max_num_iters": 200,
        "camera_optimizer": "off",
        "eval_num_rays_per_chunk": 4096,
        "steps_per_save": 500,
        "mixed_precision": False,
    },
}


def make_config(preset: str = "nerfacto", **overrides: Any) -> TrainConfig:
    """The config of a preset with optional overrides (e.g. ``max_num_iterations``)."""
    if preset not in PRESETS:
        raise UsageError("--preset", f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UsageError("--preset", f"unknown config keys {unknown}")
    return TrainConfig(**values)
