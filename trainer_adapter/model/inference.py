"""How many rays an eval / render chunk may hold: a memory budget over the model's bytes per ray.

Rendering a chunk of R rays materialises, for the widest sampling stage (proposal level 0 with
256 samples in ``nerfacto``, the field with 128 samples in ``nerfacto-big``), every sample's
hash-grid corner indices (int64), trilinear weights, gathered features and MLP activations at
once. That is ~0.5 MB per ray for ``nerfacto`` (~1 MB for ``nerfacto-big``): nerfstudio's
32768-ray eval chunk was ~14 GB of host memory on the torch path (issue #17). So the chunk is
sized from a byte budget, and never holds more rays than a training batch, whose forward pass
materialises the same tensors and keeps more alive for the backward pass: eval and render of a
run then peak below training it.

The per-sample costs below are upper bounds of the torch path's peak (measured with VmHWM on
CPU: nerfacto 0.43-0.49 MB per ray against 0.51 estimated, tiny 0.10-0.12 against 0.15,
nerfacto-big 0.81-0.90 against 1.26); tiny-cuda-nn's fused grid needs less.
"""

from __future__ import annotations

from typing import Any

from trainer_adapter.options import ModelOptions, TrainOptions

#: default working-set budget of one eval / render chunk, bytes
DEFAULT_CHUNK_BYTES = 1 << 30
#: per sample and hash level, without features: scaled/floor/ceil/offset, the int64 floor/ceil
#: hashes and the 8 int64 corner rows (kept through the mask and offset), trilinear weights
HASH_BYTES_PER_LEVEL = 192
#: per sample and hash level and feature: the 8 gathered corners and their weighted copy (float32)
HASH_BYTES_PER_FEATURE = 64
#: per sample, whatever the field: positions, contraction, spacing/distance bins, weights, PDF
#: resampling indices
SAMPLE_BYTES = 256
#: per sample and MLP unit: the Linear output and its ReLU copy (float32)
MLP_BYTES_PER_UNIT = 8
#: the field's SH (16) and geometry features (15) that enter the colour MLP with the appearance
COLOR_INPUT_BASE = 16 + 15


def _stage_bytes(samples: int, levels: int, features: int, mlp_units: int) -> int:
    per_level = HASH_BYTES_PER_LEVEL + HASH_BYTES_PER_FEATURE * features
    return samples * (levels * per_level + SAMPLE_BYTES + MLP_BYTES_PER_UNIT * mlp_units)


def _proposal_stage(samples: int, args: dict[str, Any]) -> int:
    hidden = int(args.get("hidden_dim", 16))
    return _stage_bytes(
        samples, int(args.get("num_levels", 5)), int(args.get("features_per_level", 2)), hidden + 1
    )


def inference_bytes_per_ray(config: ModelOptions) -> int:
    """Upper bound of the peak bytes one ray costs in an inference chunk (the widest stage)."""
    stages = [
        _proposal_stage(samples, args)
        for samples, args in zip(
            config.num_proposal_samples_per_ray, config.proposal_net_args_list, strict=False
        )
    ]
    embed = config.appearance_embed_dim if config.use_appearance_embedding else 0
    color_in = COLOR_INPUT_BASE + embed
    units = config.hidden_dim + 16 + color_in + 2 * config.hidden_dim_color + 3
    stages.append(
        _stage_bytes(
            config.num_nerf_samples_per_ray, config.num_levels, config.features_per_level, units
        )
    )
    return max(stages)


def chunk_rays(options: TrainOptions, budget_bytes: int | None = None) -> int:
    """Rays per eval / render chunk: what fits ``budget_bytes`` (default 1 GiB), at most a
    training batch and at most the run's ``eval_num_rays_per_chunk``; at least 1."""
    budget = DEFAULT_CHUNK_BYTES if budget_bytes is None else int(budget_bytes)
    fits = budget // inference_bytes_per_ray(options.model)
    cap = min(options.model.eval_num_rays_per_chunk, options.loader.train_num_rays_per_batch)
    return max(1, min(fits, cap))
