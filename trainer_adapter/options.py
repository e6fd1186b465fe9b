"""Training options, each defined once: nested groups read by the CLI, ``config.json`` and resume.

``TrainOptions`` holds five groups (as gsplat's ``Config`` and NerfBaselines' method specs keep
one definition of each setting):

* ``data``: which dataset and how nerfstudio's dataparser normalises and splits it;
* ``model``: Nerfacto's architecture, sampler, losses and how its hash grid runs (same maths);
* ``optim``: optimizers, schedules, precision, the number of steps and the non-finite guard;
* ``loader``: how rays are served (pool, cache, workers; see docs/loader.md);
* ``runtime``: where and how this process runs (device, output folder, logging, saving).

Every field name is unique across the groups, so a flat ``{name: value}`` (the CLI flags, a
preset, a test's overrides) is routed to its group by :func:`with_settings`. Defaults are
nerfstudio 1.1.5's ``nerfacto`` values (``models/nerfacto.py``, ``configs/method_configs.py``).
This module imports no torch: the CLI builds options before torch is loaded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Literal

from eyeful_tools.errors import UsageError


def _proposal_nets() -> list[dict[str, Any]]:
    return [
        {"hidden_dim": 16, "log2_hashmap_size": 17, "num_levels": 5, "max_res": 128},
        {"hidden_dim": 16, "log2_hashmap_size": 17, "num_levels": 5, "max_res": 256},
    ]


@dataclass
class DataOptions:
    """The dataset and nerfstudio's dataparser options (see ``data.parser.parse_dataset``).

    A run stores them resolved (the ``transforms.json`` path, the downscale factor), so eval,
    render and resume see the same normalised world and split."""

    data: str = ""
    #: N: train on ``images_N/``; "auto": the copies ``ns-train`` would use
    downscale: int | str = "auto"
    orientation: str = "up"
    center: str = "poses"
    eval_mode: str = "fraction"
    eval_interval: int = 8

    def parser_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``parse_dataset`` (after ``data``)."""
        return {
            "downscale": self.downscale,
            "orientation": self.orientation,
            "center": self.center,
            "eval_mode": self.eval_mode,
            "eval_interval": self.eval_interval,
        }


@dataclass
class ModelOptions:
    """Nerfacto: field, proposal sampler, losses, eval chunking, and the hash-grid kernels."""

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
    #: the codes start at this times N(0, 1), nerfstudio's 1 by default; 0 for captures whose
    #: images differ in exposure (docs/train.md, "Appearance embedding")
    appearance_embed_init_std: float = 1.0
    use_appearance_embedding: bool = True
    use_average_appearance_embedding: bool = True
    #: 0.01 in nerfstudio's ``nerfacto`` method config (the class default is 1.0)
    average_init_density: float = 0.01
    # sampling
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
    #: rays per forward pass when rendering whole images (eval, render)
    eval_num_rays_per_chunk: int = 1 << 15
    # how the hash grid runs. "tcnn": tiny-cuda-nn's grid when it imports, else torch; "torch"
    # forces torch. The two store different grids: the one that ran is recorded in checkpoints.
    implementation: str = "tcnn"
    #: one gather for all 8 corners (False: nerfstudio's per-corner gathers); same maths
    fused_gather: bool = True
    #: sparse (row-wise) hash-table gradients, updated by a lazy Adam (SparseAdam)
    sparse_grad: bool = False
    #: fused hash-grid kernels (same maths): C++ on CPU (model/hashgrid_cpu.py), torch.compile
    #: elsewhere; how the maths runs, so a resumed run may change it
    compile_encodings: bool = False


@dataclass
class OptimOptions:
    """Optimizers and schedules (Adam betas are torch's), steps, precision, non-finite guard."""

    max_steps: int = 30_000
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
    #: fp16 autocast + grad scaler on CUDA (nerfstudio); fp32 on CPU unless cpu_autocast_bf16
    mixed_precision: bool = True
    cpu_autocast_bf16: bool = False
    #: fused (single-kernel) Adam where torch supports it
    fused_adam: bool = True
    #: the run stops (exit 1) after this many consecutive steps with a non-finite loss or
    #: gradient; such steps never update the weights
    nonfinite_patience: int = 3


@dataclass
class LoaderOptions:
    """The lazy ray loader (docs/loader.md): every pass streams all training images through
    the pool."""

    train_num_rays_per_batch: int = 4096
    #: cap on the images sampled from at once (None: as many as cache_bytes holds)
    pool_images: int | None = None
    #: "auto" or the pixel stride of a pool slot: a slot keeps every n-th row and column (a new
    #: lattice each pass), so the same budget holds n*n times the images ("auto": 1 when the
    #: split fits whole, else the smallest stride up to 4 whose pool holds the whole split)
    pool_stride: str | int = "auto"
    #: "auto": each step the pool takes every image decoded since the last one; a number:
    #: images entering the pool per step (batches independent of timing: exact resume)
    swap_rate: str | float = "auto"
    cache_bytes: int = 2 << 30
    loader_mode: Literal["lazy", "full"] = "lazy"
    #: decode threads (None: two, always leaving one core to the training loop)
    workers: int | None = None
    #: share of a decode thread's time spent decoding as the pool turns over (None: 0.5 on a
    #: machine of at most 2 CPUs, else 1; see docs/loader.md)
    decode_duty: float | None = None


@dataclass
class RuntimeOptions:
    """Where and how this process runs; free to change when a run is resumed."""

    device: str = "auto"
    output_dir: str = "outputs"
    #: the run folder's name (default: the start time)
    timestamp: str | None = None
    seed: int = 42
    steps_per_save: int = 2000
    #: loss, PSNR and rays/s are read back (a device sync) every this many steps, as nerfstudio
    steps_per_log: int = 10
    keep_checkpoints: int = 1
    #: training curves in the run folder: TensorBoard events, metrics.jsonl, curves.png
    curves: bool = True
    #: a held-out view (render | ground truth) is added to the curves every this many steps
    #: (0: never; it is rendered at a log step, and its time is left out of rays/s)
    steps_per_eval_image: int = 500
    #: the eval image is rendered with its longest side at most this many pixels
    eval_image_max_px: int = 800
    #: on the CPU, glibc keeps freed memory for reuse instead of unmapping every large tensor
    #: (:func:`trainer_adapter.device.keep_freed_host_memory`: ~1.8x faster nerfacto steps)
    keep_host_memory: bool = True


GROUPS: dict[str, type] = {
    "data": DataOptions,
    "model": ModelOptions,
    "optim": OptimOptions,
    "loader": LoaderOptions,
    "runtime": RuntimeOptions,
}


def _group_of_fields() -> dict[str, str]:
    owner: dict[str, str] = {}
    for group, cls in GROUPS.items():
        for f in dataclasses.fields(cls):
            if f.name in owner:
                raise TypeError(f"option {f.name!r} is defined in {owner[f.name]} and {group}")
            owner[f.name] = group
    return owner


#: option name -> its group; names are unique across groups (checked at import)
GROUP_OF: dict[str, str] = _group_of_fields()


@dataclass
class TrainOptions:
    """Everything a run is made from: its preset's name and the five option groups."""

    preset: str = "nerfacto"
    data: DataOptions = field(default_factory=DataOptions)
    model: ModelOptions = field(default_factory=ModelOptions)
    optim: OptimOptions = field(default_factory=OptimOptions)
    loader: LoaderOptions = field(default_factory=LoaderOptions)
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict (tuples become lists)."""
        return json_ready(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainOptions:
        """The inverse of :meth:`to_dict`; keys this version does not know are ignored."""
        groups = {name: _group_from_dict(GROUPS[name], data.get(name) or {}) for name in GROUPS}
        return cls(preset=str(data.get("preset", "nerfacto")), **groups)

    def flat(self) -> dict[str, Any]:
        """``{name: value}`` over all groups (the names :func:`with_settings` takes)."""
        return {
            k: v for group in GROUPS for k, v in dataclasses.asdict(getattr(self, group)).items()
        }


def json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def _group_from_dict(cls: type, values: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    known = {k: v for k, v in values.items() if k in names}
    if cls is LoaderOptions and values and "pool_stride" not in values:
        known["pool_stride"] = 1  # a run from before strided pools resumes with whole images
    if "num_proposal_samples_per_ray" in known:
        known["num_proposal_samples_per_ray"] = tuple(known["num_proposal_samples_per_ray"])
    return cls(**known)


def with_settings(options: TrainOptions, settings: dict[str, Any]) -> TrainOptions:
    """A copy of ``options`` with flat ``{name: value}`` settings applied (``None`` = keep)."""
    given = {k: v for k, v in settings.items() if v is not None}
    unknown = sorted(set(given) - set(GROUP_OF))
    if unknown:
        raise UsageError(None, f"unknown training options {unknown}")
    changed: dict[str, dict[str, Any]] = {}
    for name, value in given.items():
        if name == "num_proposal_samples_per_ray":
            value = tuple(value)
        elif isinstance(value, PurePath):  # paths are stored as text (config.json)
            value = str(value)
        changed.setdefault(GROUP_OF[name], {})[name] = value
    groups = {g: dataclasses.replace(getattr(options, g), **v) for g, v in changed.items()}
    return dataclasses.replace(options, **groups)


#: config.json of runs written before the nested layout: the flat "config" + top-level data keys
_LEGACY_RENAMES = {"max_num_iterations": "max_steps"}
_LEGACY_DATA_DEFAULTS = {"downscale": 1, "orientation": "up", "center": "poses",
                         "eval_mode": "fraction", "eval_interval": 8}  # fmt: skip


def options_from_legacy(meta: dict[str, Any]) -> TrainOptions:
    """The options of a run whose ``config.json`` has the old flat layout (runs from before a
    key existed get the default they were trained with: full-size images, nerfstudio's split)."""
    old = dict(meta.get("config") or {})
    flat: dict[str, Any] = {_LEGACY_RENAMES.get(str(k), str(k)): v for k, v in old.items()}
    flat = {k: v for k, v in flat.items() if k in GROUP_OF}
    for key, default in _LEGACY_DATA_DEFAULTS.items():
        flat[key] = meta.get(key, default)
    flat["data"] = str(meta.get("data", ""))
    flat.setdefault("pool_stride", 1)  # from before strided pools: whole images
    return with_settings(TrainOptions(preset=str(meta.get("preset", "nerfacto"))), flat)
