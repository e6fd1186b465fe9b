"""The Nerfacto model: proposal sampling -> field -> volume rendering -> losses.

Rays are in the normalised world of the dataset (cameras inside ``[-1, 1]^3``): origins ``[R, 3]``,
unit directions ``[R, 3]``, and for training rays the training-image index ``[R]`` (appearance
embedding and camera optimizer). Near/far are nerfacto's constant 0.05 / 1000.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import cast

import torch
from torch import nn

from trainer_adapter.model import losses
from trainer_adapter.model.camera_opt import CameraOptimizer
from trainer_adapter.model.encodings import HashEncoding
from trainer_adapter.model.fields import HashMLPDensityField, NerfactoField
from trainer_adapter.model.rendering import render_depth, render_rgb, render_weights
from trainer_adapter.model.sampling import (
    RaySamples,
    anneal_weight,
    pdf_spacing_bins,
    proposal_update_every,
    spacing_to_euclidean,
    uniform_spacing_bins,
)
from trainer_adapter.options import ModelOptions


def _forget_host_steps(module: NerfactoModel, _incompatible_keys: object) -> None:
    """After ``load_state_dict``: the buffer is the truth again."""
    module._host_steps_since_update = None


class NerfactoModel(nn.Module):
    steps_since_update: torch.Tensor  # a buffer, declared for the type checker
    _host_steps_since_update: int | None

    def __init__(self, config: ModelOptions, num_train_images: int) -> None:
        super().__init__()
        self.config = config
        impl = config.implementation
        self.field = NerfactoField(
            num_images=num_train_images,
            num_levels=config.num_levels,
            base_res=config.base_res,
            max_res=config.max_res,
            log2_hashmap_size=config.log2_hashmap_size,
            features_per_level=config.features_per_level,
            hidden_dim=config.hidden_dim,
            hidden_dim_color=config.hidden_dim_color,
            appearance_embed_dim=config.appearance_embed_dim,
            appearance_embed_init_std=config.appearance_embed_init_std,
            use_appearance_embedding=config.use_appearance_embedding,
            use_average_appearance_embedding=config.use_average_appearance_embedding,
            average_init_density=config.average_init_density,
            implementation=impl,
            sparse_grad=config.sparse_grad,
            fused_gather=config.fused_gather,
        )
        self.proposal_networks = nn.ModuleList(
            HashMLPDensityField(
                **args,
                average_init_density=config.proposal_average_init_density,
                implementation=impl,
                sparse_grad=config.sparse_grad,
                fused_gather=config.fused_gather,
            )
            for args in config.proposal_net_args_list
        )
        if len(self.proposal_networks) != len(config.num_proposal_samples_per_ray):
            raise ValueError("need one proposal network per proposal sample count")
        if config.compile_encodings:
            for module in self.modules():
                if isinstance(module, HashEncoding):
                    module.use_fused_kernels()
        self.camera_optimizer = CameraOptimizer(
            num_train_images,
            enabled=config.camera_optimizer != "off",
            trans_l2_penalty=config.camera_trans_l2_penalty,
            rot_l2_penalty=config.camera_rot_l2_penalty,
        )
        # sampler state, saved with the weights so a resumed run continues identically; the
        # schedule reads a host copy (reading the buffer itself would wait for the GPU every
        # step), re-read from the buffer once after a checkpoint is loaded
        self.register_buffer("steps_since_update", torch.zeros((), dtype=torch.long))
        self._host_steps_since_update: int | None = None
        self.register_load_state_dict_post_hook(_forget_host_steps)

    # -- parameters -------------------------------------------------------------------------

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """nerfstudio's three groups; with ``sparse_grad`` the hash tables get their own
        ``*_tables`` groups (sparse gradients need a sparse-aware optimizer)."""
        groups: dict[str, list[nn.Parameter]] = {}

        def add(name: str, module: nn.Module) -> None:
            for pname, param in module.named_parameters():
                sparse = self.config.sparse_grad and pname.endswith("hash_table")
                groups.setdefault(f"{name}_tables" if sparse else name, []).append(param)

        add("proposal_networks", self.proposal_networks)
        add("fields", self.field)
        if self.camera_optimizer.enabled:
            groups["camera_opt"] = [self.camera_optimizer.pose_adjustment]
        return groups

    # -- forward ----------------------------------------------------------------------------

    def forward(
        self,
        origins: torch.Tensor,  # [R, 3]
        directions: torch.Tensor,  # [R, 3] unit
        image_index: torch.Tensor | None = None,  # [R] training image index (training only)
        *,
        step: int = 0,
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Render a batch of rays. In training mode also returns the per-level weights and
        spacing edges the losses need."""
        cfg = self.config
        train = self.training
        if train and image_index is not None:
            origins, directions = self.camera_optimizer.apply_to_rays(
                origins, directions, image_index
            )
        num_rays = origins.shape[0]
        device = origins.device
        near = torch.full((num_rays, 1), cfg.near_plane, device=device)
        far = torch.full((num_rays, 1), cfg.far_plane, device=device)
        anneal = 1.0
        if train and cfg.use_proposal_weight_anneal:
            anneal = anneal_weight(
                step, cfg.proposal_weights_anneal_slope, cfg.proposal_weights_anneal_max_num_iters
            )
        update = False
        if train:
            every = proposal_update_every(step, cfg.proposal_update_every, cfg.proposal_warmup)
            if self._host_steps_since_update is None:
                self._host_steps_since_update = int(self.steps_since_update)
            update = self._host_steps_since_update > every or step < 10
            if update:
                self._host_steps_since_update = 0
            self._host_steps_since_update += 1
            self.steps_since_update.fill_(self._host_steps_since_update)  # no host sync

        weights_list: list[torch.Tensor] = []
        bins_list: list[torch.Tensor] = []
        spacing = uniform_spacing_bins(
            num_rays, cfg.num_proposal_samples_per_ray[0], train=train, device=device
        )
        counts = [*cfg.num_proposal_samples_per_ray[1:], cfg.num_nerf_samples_per_ray]
        networks = cast("Iterable[HashMLPDensityField]", self.proposal_networks)
        for level, network in enumerate(networks):
            samples = RaySamples(spacing, spacing_to_euclidean(spacing, near, far))
            positions = samples.positions(origins, directions)
            grad = contextlib.nullcontext() if update else torch.no_grad()
            with grad:
                density = network.density(positions)
            weights = render_weights(density, samples.deltas)
            weights_list.append(weights)
            bins_list.append(spacing)
            annealed = weights.detach() ** anneal if anneal != 1.0 else weights.detach()
            spacing = pdf_spacing_bins(spacing, annealed, counts[level], train=train)

        samples = RaySamples(spacing, spacing_to_euclidean(spacing, near, far))
        density, rgb = self.field(
            samples.positions(origins, directions), directions, image_index if train else None
        )
        weights = render_weights(density, samples.deltas)
        weights_list.append(weights)
        bins_list.append(spacing)
        out_rgb = render_rgb(rgb, weights, cfg.background_color)
        if not train:
            out_rgb = torch.clamp(torch.nan_to_num(out_rgb), 0.0, 1.0)
        outputs: dict[str, torch.Tensor | list[torch.Tensor]] = {
            "rgb": out_rgb,
            "accumulation": weights.sum(-1, keepdim=True),
            "depth": render_depth(weights.detach(), samples.midpoints),
        }
        if train:
            outputs["weights_list"] = weights_list
            outputs["spacing_bins_list"] = bins_list
        return outputs

    def loss_dict(
        self, outputs: dict[str, torch.Tensor | list[torch.Tensor]], gt_rgb: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """rgb MSE + interlevel + distortion + camera regulariser (the trainer sums them)."""
        cfg = self.config
        rgb = outputs["rgb"]
        assert isinstance(rgb, torch.Tensor)
        result = {"rgb_loss": losses.rgb_loss(rgb, gt_rgb)}
        if self.training:
            weights_list = outputs["weights_list"]
            bins_list = outputs["spacing_bins_list"]
            assert isinstance(weights_list, list) and isinstance(bins_list, list)
            result["interlevel_loss"] = cfg.interlevel_loss_mult * losses.interlevel_loss(
                weights_list, bins_list
            )
            result["distortion_loss"] = cfg.distortion_loss_mult * losses.distortion_loss(
                bins_list[-1], weights_list[-1]
            )
            if self.camera_optimizer.enabled:
                result["camera_opt_regularizer"] = self.camera_optimizer.regularizer()
        return result

    @torch.inference_mode()
    def render_rays_chunked(
        self, origins: torch.Tensor, directions: torch.Tensor, chunk: int
    ) -> dict[str, torch.Tensor]:
        """Eval rendering of ``[N, 3]`` rays in chunks -> rgb ``[N, 3]``, depth, accumulation.

        No autograd state is kept (inference mode). A chunk's working set grows with ``chunk``
        times the samples per ray: size it with :func:`trainer_adapter.model.inference.chunk_rays`.
        """
        parts: dict[str, list[torch.Tensor]] = {"rgb": [], "depth": [], "accumulation": []}
        for start in range(0, origins.shape[0], chunk):
            out = self.forward(origins[start : start + chunk], directions[start : start + chunk])
            for key in parts:
                value = out[key]
                assert isinstance(value, torch.Tensor)
                parts[key].append(value)
        return {k: torch.cat(v, dim=0) for k, v in parts.items()}
