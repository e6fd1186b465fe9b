"""Training presets as data: nerfstudio's ``nerfacto`` defaults, ``nerfacto-big`` and ``tiny``.

A preset is a flat dict of option overrides (names from :mod:`trainer_adapter.options`, routed
to their group); ``nerfacto`` is the options' defaults. The resolved options are written to each
run's ``config.json`` and read back by eval, render and resume.
"""

from __future__ import annotations

from typing import Any

from eyeful_tools.errors import UsageError
from trainer_adapter.options import TrainOptions, with_settings

PRESETS: dict[str, dict[str, Any]] = {
    "nerfacto": {},
    "nerfacto-big": {
        "max_steps": 100_000,
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
        "max_steps": 1000,
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
        "steps_per_eval_image": 0,  # renders cost seconds a view on CPU; turn on when wanted
        "mixed_precision": False,
    },
}


def make_options(preset: str = "nerfacto", **settings: Any) -> TrainOptions:
    """The options of a preset with flat settings applied (``None`` values are ignored)."""
    if preset not in PRESETS:
        raise UsageError("--preset", f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    return with_settings(TrainOptions(preset=preset), {**PRESETS[preset], **settings})
