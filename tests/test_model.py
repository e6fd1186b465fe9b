"""Unit tests of the Nerfacto building blocks against direct reference computations."""

from __future__ import annotations

import math

import pytest
import torch

from trainer_adapter.model import losses
from trainer_adapter.model.camera_opt import CameraOptimizer, exp_map_so3xr3
from trainer_adapter.model.encodings import (
    HashEncoding,
    TcnnHashEncoding,
    spherical_harmonics,
    tcnn_available,
)
from trainer_adapter.model.fields import contract_linf, normalized_positions, trunc_exp
from trainer_adapter.model.hashgrid_cpu import toolchain_problem
from trainer_adapter.model.nerfacto import NerfactoModel
from trainer_adapter.model.rendering import render_rgb, render_weights
from trainer_adapter.model.sampling import (
    anneal_weight,
    pdf_spacing_bins,
    proposal_update_every,
    spacing_to_euclidean,
    uniform_spacing_bins,
)
from trainer_adapter.presets import PRESETS, make_options

PRIMES = (1, 2654435761, 805459861)


def reference_hash_encoding(enc: HashEncoding, point: list[float]) -> torch.Tensor:
    """Scalar loops: per level, the 8 corners of floor/ceil, hashed and trilinearly blended."""
    table = enc.hash_table.detach().double()
    size = enc.hash_table_size
    out = []
    for level in range(enc.num_levels):
        res = math.floor(16 * enc.growth**level)
        q = [c * res for c in point]
        acc = torch.zeros(enc.features_per_level, dtype=torch.float64)
        for cx in (0, 1):
            for cy in (0, 1):
                for cz in (0, 1):
                    corner = [
                        math.ceil(v) if bit else math.floor(v)
                        for v, bit in zip(q, (cx, cy, cz), strict=True)
                    ]
                    h = (corner[0] * PRIMES[0]) ^ (corner[1] * PRIMES[1]) ^ (corner[2] * PRIMES[2])
                    row = h % size + level * size
                    weight = 1.0
                    for v, bit in zip(q, (cx, cy, cz), strict=True):
                        frac = v - math.floor(v)
                        weight *= frac if bit else 1 - frac
                    acc += weight * table[row]
        out.append(acc)
    return torch.cat(out)


@pytest.mark.parametrize("fused", [True, False])
def test_hash_encoding_matches_direct_reference(fused: bool) -> None:
    torch.manual_seed(0)
    enc = HashEncoding(6, 16, 300, 10, 2, hash_init_scale=1.0, fused_gather=fused)
    points = torch.rand(5, 3)
    points[0] = torch.tensor([0.5, 0.25, 0.125])  # exact grid vertices at every level
    encoded = enc(points)
    assert encoded.shape == (5, 12)
    for i in range(5):
        expected = reference_hash_encoding(enc, points[i].double().tolist())
        assert torch.allclose(encoded[i].double(), expected, atol=1e-5), i


def test_hash_encoding_sparse_gradient_equals_dense() -> None:
    torch.manual_seed(1)
    dense = HashEncoding(4, 16, 128, 8, 2, hash_init_scale=1.0)
    sparse = HashEncoding(4, 16, 128, 8, 2, hash_init_scale=1.0, sparse_grad=True)
    sparse.hash_table.data.copy_(dense.hash_table.data)
    points = torch.rand(64, 3)
    weights = torch.randn(64, 8)
    (dense(points) * weights).sum().backward()
    (sparse(points) * weights).sum().backward()
    assert sparse.hash_table.grad.is_sparse
    assert torch.allclose(sparse.hash_table.grad.to_dense(), dense.hash_table.grad, atol=1e-6)
    # both equal autograd's own gradient of plain indexing (nerfstudio's per-corner layout)
    plain = HashEncoding(4, 16, 128, 8, 2, hash_init_scale=1.0, fused_gather=False)
    plain.hash_table.data.copy_(dense.hash_table.data)
    (plain(points) * weights).sum().backward()
    assert torch.allclose(plain.hash_table.grad, dense.hash_table.grad, atol=1e-6)
    assert dense.hash_table.grad.dtype == torch.float32


def test_hash_encoding_position_gradient_equals_autograd() -> None:
    """The fused path's hand-written interpolation backward gives autograd's gradients of
    nerfstudio's per-corner layout, for the positions too (the camera optimizer needs them)."""
    torch.manual_seed(2)
    fused = HashEncoding(4, 16, 128, 8, 2, hash_init_scale=1.0)
    plain = HashEncoding(4, 16, 128, 8, 2, hash_init_scale=1.0, fused_gather=False)
    plain.hash_table.data.copy_(fused.hash_table.data)
    weights = torch.randn(64, 8)
    grads = []
    for enc in (fused, plain):
        points = torch.rand(64, 3, generator=torch.Generator().manual_seed(3)).requires_grad_()
        (enc(points) * weights).sum().backward()
        grads.append((points.grad, enc.hash_table.grad))
    assert grads[0][0].abs().max() > 1e-3  # the positions do get a gradient
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-5)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-6)


def _encoding_and_gradients(
    enc: torch.nn.Module, positions_grad: bool, seed: int = 3
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    points = torch.rand(64, 3, generator=torch.Generator().manual_seed(seed))
    points.requires_grad_(positions_grad)
    out_weights = torch.randn(64, 8, generator=torch.Generator().manual_seed(seed + 1))
    enc.hash_table.grad = None
    out = enc(points)
    (out * out_weights).sum().backward()
    assert enc.hash_table.grad is not None
    position_grad = points.grad if positions_grad else torch.zeros(())
    assert position_grad is not None
    return out.detach(), position_grad, enc.hash_table.grad


@pytest.mark.skipif(toolchain_problem() is not None, reason="no C++ toolchain for torch.compile")
@pytest.mark.parametrize("positions_grad", [True, False])
def test_compiled_encodings_gather_equals_autograd_of_plain_layout(positions_grad: bool) -> None:
    """The gather written for torch.compile (one scatter in backward) gives autograd's values and
    gradients of nerfstudio's per-corner layout, run eagerly and compiled (one whole graph), with
    and without gradients for the positions (the camera optimizer on or off)."""
    from trainer_adapter.model.encodings import _GatherInterpolate

    torch.manual_seed(4)
    plain = HashEncoding(4, 16, 128, 8, 2, hash_init_scale=1.0, fused_gather=False)
    expected = _encoding_and_gradients(plain, positions_grad)

    class EagerGather(HashEncoding):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            index, weights = self.corner_indices(x)
            return _GatherInterpolate.apply(self.hash_table, index, weights).flatten(1)

    eager = EagerGather(4, 16, 128, 8, 2, hash_init_scale=1.0)
    compiled = HashEncoding(4, 16, 128, 8, 2, hash_init_scale=1.0)
    for enc in (eager, compiled):
        enc.hash_table.data.copy_(plain.hash_table.data)
    compiled.compile(fullgraph=True)  # a graph break or eager fallback is an error
    for enc in (eager, compiled):
        got = _encoding_and_gradients(enc, positions_grad)
        assert got[1].abs().max() > 1e-3 or not positions_grad  # the positions get a gradient
        for value, reference in zip(got, expected, strict=True):
            assert torch.allclose(value, reference, atol=1e-5)


@pytest.mark.skipif(toolchain_problem() is not None, reason="no C++ toolchain here")
@pytest.mark.parametrize("positions_grad", [True, False])
@pytest.mark.parametrize("features", [2, 4])
def test_fused_cpu_kernels_equal_the_torch_path(positions_grad: bool, features: int) -> None:
    """--compile's C++ kernels on CPU give the torch path's values, table gradient and position
    gradient, for points in the cube, on grid vertices (floor == ceil) and slightly outside it
    (negative hashes wrap as in torch); the graph keeps a gradient only where asked."""
    torch.manual_seed(5)
    plain = HashEncoding(4, 16, 128, 8, features, hash_init_scale=1.0)
    fused = HashEncoding(4, 16, 128, 8, features, hash_init_scale=1.0)
    fused.hash_table.data.copy_(plain.hash_table.data)
    fused.use_fused_kernels()
    points = torch.rand(64, 3, generator=torch.Generator().manual_seed(6))
    points[:4] = torch.tensor(
        [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.25, 0.125], [-0.01, 1.02, 0.3]]
    )
    weights = torch.randn(64, 4 * features, generator=torch.Generator().manual_seed(7))
    results = []
    for enc in (plain, fused):
        x = points.clone().requires_grad_(positions_grad)
        out = enc(x)
        (out * weights).sum().backward()
        assert enc.hash_table.grad is not None
        results.append((out.detach(), enc.hash_table.grad, x.grad))
    (out_p, table_p, x_p), (out_f, table_f, x_f) = results
    assert out_p.shape == out_f.shape == (64, 4 * features)
    assert torch.allclose(out_f, out_p, atol=1e-6)
    assert torch.allclose(table_f, table_p, atol=1e-5)
    if positions_grad:
        assert x_p is not None and x_f is not None and x_p.abs().max() > 1e-3
        assert torch.allclose(x_f, x_p, atol=1e-4, rtol=1e-5)
    with torch.no_grad():  # eval and the proposal networks between updates
        assert torch.allclose(fused(points), out_p, atol=1e-6)


@pytest.mark.skipif(toolchain_problem() is not None, reason="no C++ toolchain for torch.compile")
def test_the_compiled_forward_of_a_copy_uses_the_copys_table() -> None:
    """--compile off the CPU runs one shared torch.compile of the unbound forward: the viewer's
    deep copy of a grid renders with the copy's table (a compiled bound method kept the
    original's), and the values are the eager ones."""
    import copy

    from trainer_adapter.model.encodings import _compiled_forward

    torch.manual_seed(8)
    enc = HashEncoding(4, 16, 128, 8, 2, hash_init_scale=1.0)
    points = torch.rand(32, 3, generator=torch.Generator().manual_seed(9))
    snapshot = copy.deepcopy(enc)
    with torch.no_grad():
        snapshot.hash_table.mul_(2.0)
        compiled = _compiled_forward()
        assert torch.allclose(compiled(enc, points), enc(points), atol=1e-6)
        assert torch.allclose(compiled(snapshot, points), 2 * enc(points), atol=1e-5)


def test_fused_kernels_leave_sparse_gradients_on_the_torch_path() -> None:
    enc = HashEncoding(4, 16, 128, 8, 2, sparse_grad=True)
    enc.use_fused_kernels()
    enc(torch.rand(8, 3)).sum().backward()
    assert enc.hash_table.grad is not None and enc.hash_table.grad.is_sparse


@pytest.mark.skipif(not tcnn_available(), reason="tiny-cuda-nn is not importable here")
def test_tcnn_hash_encoding_same_api() -> None:  # pragma: no cover - needs CUDA + tcnn
    enc = TcnnHashEncoding(16, 16, 2048, 19, 2).cuda()
    out = enc(torch.rand(10, 3, device="cuda"))
    assert out.shape == (10, 32) and out.dtype == torch.float32


def test_spherical_harmonics_orthonormal() -> None:
    """Monte-Carlo integral of Y_i Y_j over the sphere is the identity (unit directions in)."""
    torch.manual_seed(2)
    dirs = torch.nn.functional.normalize(torch.randn(400_000, 3, dtype=torch.float64), dim=-1)
    basis = spherical_harmonics(dirs, 4)
    gram = basis.T @ basis * (4 * math.pi / dirs.shape[0])
    assert torch.allclose(gram, torch.eye(16, dtype=torch.float64), atol=0.02)


def test_contraction_linf() -> None:
    x = torch.tensor([[0.5, -0.2, 0.9], [2.0, 0.0, 0.0], [0.0, -4.0, 2.0], [1e6, 1.0, 0.0]])
    y = contract_linf(x)
    assert torch.allclose(y[0], x[0])
    assert torch.allclose(y[1], torch.tensor([1.5, 0.0, 0.0]))
    assert torch.allclose(y[2], torch.tensor([0.0, -1.75, 0.875]))  # m=4: (2 - 1/4) x / 4
    assert y.abs().max() <= 2.0
    unit, valid = normalized_positions(torch.tensor([[0.0, 0.0, 0.0], [1e9, 0.0, 0.0]]))
    assert torch.allclose(unit[0], torch.full((3,), 0.5))
    assert valid.tolist() == [True, False] and unit[1].abs().sum() == 0


def test_trunc_exp_gradient_is_clamped() -> None:
    x = torch.tensor([0.0, 20.0], requires_grad=True)
    y = trunc_exp(x)
    y.sum().backward()
    assert torch.allclose(y.detach(), torch.exp(torch.tensor([0.0, 20.0])))
    assert torch.allclose(x.grad, torch.exp(torch.tensor([0.0, 15.0])))


def test_spacing_piecewise() -> None:
    near, far = torch.tensor([[0.05]]), torch.tensor([[1000.0]])
    s = torch.tensor([[0.0, 1.0]])
    assert torch.allclose(
        spacing_to_euclidean(s, near, far), torch.tensor([[0.05, 1000.0]]), rtol=1e-3
    )
    # g(1) = 0.5: the spacing value of t = 1 splits uniform and disparity-linear halves
    s1 = (0.5 - 0.025) / ((1 - 1 / 2000) - 0.025)
    assert torch.allclose(spacing_to_euclidean(torch.tensor([[s1]]), near, far), torch.ones(1, 1))


def test_pdf_sampler_monotonic_and_follows_weights() -> None:
    torch.manual_seed(3)
    bins = uniform_spacing_bins(32, 16, train=True, device=torch.device("cpu"))
    assert (bins[:, 1:] >= bins[:, :-1]).all()
    weights = torch.rand(32, 16)
    weights[:, 5] = 50.0  # a spike: most new samples land in bin 5
    for train in (True, False):
        new = pdf_spacing_bins(bins, weights, 24, train=train)
        assert new.shape == (32, 25)
        assert (new[:, 1:] >= new[:, :-1]).all()
        assert (new >= bins[:, :1]).all() and (new <= bins[:, -1:]).all()
        mids = (new[:, 1:] + new[:, :-1]) / 2
        inside = (mids >= bins[:, 5:6]) & (mids <= bins[:, 6:7])
        assert inside.float().mean() > 0.5


def test_anneal_and_update_schedules() -> None:
    assert anneal_weight(0) == 0.0 and anneal_weight(1000) == 1.0 and anneal_weight(5000) == 1.0
    assert anneal_weight(100) == pytest.approx(10 * 0.1 / (9 * 0.1 + 1))
    assert proposal_update_every(0) == 1 and proposal_update_every(5000) == 5
    assert proposal_update_every(2500) == pytest.approx(2.5)


def test_render_weights_and_last_sample_background() -> None:
    density = torch.tensor([[[1.0], [2.0], [0.0]]])
    deltas = torch.tensor([[0.5, 0.25, 1.0]])
    w = render_weights(density, deltas)
    a0, a1 = 1 - math.exp(-0.5), 1 - math.exp(-0.5)
    expected = torch.tensor([[a0, a1 * math.exp(-0.5), 0.0]])
    assert torch.allclose(w, expected, atol=1e-6)
    rgb = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]])
    out = render_rgb(rgb, w, "last_sample")
    acc = float(w.sum())
    assert torch.allclose(out, torch.tensor([[a0, float(w[0, 1]), 1 - acc]]), atol=1e-6)


def test_distortion_loss_hand_computed() -> None:
    bins = torch.tensor([[0.0, 0.2, 0.6, 1.0]])
    w = torch.tensor([[0.5, 0.25, 0.25]])
    mids = [0.1, 0.4, 0.8]
    inter = sum(w[0, i] * w[0, j] * abs(mids[i] - mids[j]) for i in range(3) for j in range(3))
    intra = (0.25 * 0.2 + 0.0625 * 0.4 + 0.0625 * 0.4) / 3
    assert float(losses.distortion_loss(bins, w)) == pytest.approx(float(inter) + intra, rel=1e-6)


def test_interlevel_loss_hand_computed() -> None:
    nerf_bins = torch.tensor([[0.0, 0.4, 1.0]])
    nerf_w = torch.tensor([[0.6, 0.2]])
    prop_bins = torch.tensor([[0.0, 0.25, 0.5, 0.75, 1.0]])
    prop_w = torch.tensor([[0.1, 0.2, 0.3, 0.0]], requires_grad=True)
    # [0, .4] overlaps proposal bins 0, 1 -> bound .3 < .6; [.4, 1] overlaps 1..3 -> .5 >= .2
    expected = ((0.6 - 0.3) ** 2 / (0.6 + 1e-7) + 0.0) / 2
    loss = losses.interlevel_loss([prop_w, nerf_w], [prop_bins, nerf_bins])
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert prop_w.grad is not None and prop_w.grad[0, 0] < 0  # raise the under-bounding weights


def test_rgb_loss() -> None:
    assert float(losses.rgb_loss(torch.zeros(2, 3), torch.full((2, 3), 0.5))) == pytest.approx(0.25)


def test_camera_optimizer_identity_at_zero() -> None:
    opt = CameraOptimizer(4)
    origins = torch.randn(10, 3)
    dirs = torch.nn.functional.normalize(torch.randn(10, 3), dim=-1)
    o2, d2 = opt.apply_to_rays(origins, dirs, torch.randint(0, 4, (10,)))
    assert torch.allclose(o2, origins) and torch.allclose(d2, dirs, atol=1e-6)
    assert float(opt.regularizer().detach()) == 0.0
    rotation, translation = exp_map_so3xr3(torch.tensor([[1.0, 2, 3, 0, 0, math.pi / 2]]))
    assert torch.allclose(
        rotation[0] @ torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0]), atol=1e-6
    )
    assert torch.allclose(translation, torch.tensor([[1.0, 2, 3]]))


def test_presets_are_faithful_and_model_builds() -> None:
    options = make_options("nerfacto")
    cfg, optim = options.model, options.optim
    assert cfg.average_init_density == 0.01 and optim.lr_decay_steps == 200_000
    assert cfg.num_proposal_samples_per_ray == (256, 96) and cfg.num_nerf_samples_per_ray == 48
    assert optim.eps == 1e-15 and cfg.distortion_loss_mult == 0.002
    assert set(PRESETS) == {"tiny", "nerfacto", "nerfacto-big"}
    torch.manual_seed(4)
    model = NerfactoModel(make_options("tiny").model, num_train_images=3).train()
    origins = torch.zeros(8, 3)
    dirs = torch.nn.functional.normalize(torch.randn(8, 3), dim=-1)
    out = model(origins, dirs, torch.zeros(8, dtype=torch.long), step=0)
    loss_dict = model.loss_dict(out, torch.rand(8, 3))
    assert set(loss_dict) == {"rgb_loss", "interlevel_loss", "distortion_loss"}
    sum(loss_dict.values()).backward()
    assert model.field.encoding.hash_table.grad is not None
    model.eval()
    with torch.no_grad():
        rgb = model(origins, dirs)["rgb"]
    assert rgb.shape == (8, 3) and (rgb >= 0).all() and (rgb <= 1).all()


def test_appearance_codes_start_at_the_mean_the_eval_renders_with() -> None:
    """``init_std`` 0 starts every code at zero, the eval's mean code; 1 (the default) gives
    nerfstudio's N(0, 1) codes, from the same random stream (the rest of the model is
    initialised identically either way)."""
    models = {}
    for std in (0.0, 1.0):
        torch.manual_seed(4)
        options = make_options("tiny", appearance_embed_init_std=std).model
        models[std] = NerfactoModel(options, num_train_images=50)
    assert make_options("nerfacto").model.appearance_embed_init_std == 1.0
    codes = models[1.0].field.appearance.weight.detach()
    assert not models[0.0].field.appearance.weight.any()
    assert 0.9 < float(codes.std()) < 1.1 and float(codes.mean(0).norm()) < 1.5
    assert float(codes.norm(dim=1).min()) > 3  # ~sqrt(32) each: far from their mean
    color = [m.field.color_mlp[0].weight for m in models.values()]
    assert torch.equal(*color)


def test_proposal_update_counter_survives_checkpoint_round_trip() -> None:
    """The schedule counts on the host; the saved buffer follows it, and loading a state
    replaces the host count (a resumed run updates the proposal nets on the same steps)."""
    torch.manual_seed(5)
    model = NerfactoModel(make_options("tiny").model, num_train_images=2).train()
    origins = torch.zeros(4, 3)
    dirs = torch.nn.functional.normalize(torch.randn(4, 3), dim=-1)
    index = torch.zeros(4, dtype=torch.long)
    for step in range(12):  # past the first 10 steps, which always update
        model(origins, dirs, index, step=step)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    assert int(saved["steps_since_update"]) == model._host_steps_since_update > 0

    other = NerfactoModel(make_options("tiny").model, num_train_images=2).train()
    for step in range(11):  # a different count of its own, then the checkpoint's
        other(origins, dirs, index, step=step)
    assert other._host_steps_since_update != model._host_steps_since_update
    other.load_state_dict(saved)
    for step in range(12, 40):
        model(origins, dirs, index, step=step)
        other(origins, dirs, index, step=step)
        assert int(other.steps_since_update) == int(model.steps_since_update)
