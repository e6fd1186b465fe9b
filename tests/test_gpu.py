"""CUDA checks (marked ``gpu``; skipped without CUDA, run by ``make gpu-check``): the fp16
training step, the torch hash grid and SSIM on the device against the CPU, which hash grid runs,
and the non-finite guard under the fp16 grad scaler."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")


def test_fp16_training_steps_stay_finite_on_cuda() -> None:
    from trainer_adapter import device as devices
    from trainer_adapter.model.nerfacto import NerfactoModel
    from trainer_adapter.optim import make_optimizers
    from trainer_adapter.presets import make_options

    options = make_options("nerfacto")
    torch.manual_seed(0)
    model = NerfactoModel(options.model, num_train_images=4).to(CUDA).train()
    optimizers = make_optimizers(model, options.optim, CUDA)
    dtype = devices.autocast_dtype(CUDA, options.optim.mixed_precision)
    assert dtype == torch.float16
    scaler = devices.grad_scaler(CUDA, dtype)
    assert scaler.is_enabled()
    for step in range(20):
        origins = torch.randn(4096, 3, device=CUDA) * 0.3
        directions = torch.nn.functional.normalize(torch.randn(4096, 3, device=CUDA), dim=-1)
        index = torch.randint(0, 4, (4096,), device=CUDA)
        with devices.autocast(CUDA, dtype):
            out = model(origins, directions, index, step=step)
            loss = sum(model.loss_dict(out, torch.rand(4096, 3, device=CUDA)).values())
        scaler.scale(loss).backward()
        optimizers.step(scaler)
        optimizers.zero_grad()
        assert torch.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_torch_hash_grid_and_ssim_on_cuda_match_the_cpu() -> None:
    from trainer_adapter.evaluate import ssim
    from trainer_adapter.model.encodings import HashEncoding

    torch.manual_seed(1)
    grid = HashEncoding(num_levels=8, max_res=512, log2_hashmap_size=15)
    points = torch.rand(10_000, 3)
    expected = grid(points)
    assert torch.allclose(grid.to(CUDA)(points.to(CUDA)).cpu(), expected, atol=1e-6)
    pred, gt = torch.rand(64, 80, 3), torch.rand(64, 80, 3)
    valid = torch.rand(64, 80) > 0.3
    assert ssim(pred.to(CUDA), gt.to(CUDA), valid.to(CUDA)) == pytest.approx(
        ssim(pred, gt, valid), abs=1e-9
    )


def test_the_hash_grid_that_runs_is_the_one_recorded() -> None:
    from trainer_adapter.checkpoints import hash_grid_of
    from trainer_adapter.model.encodings import tcnn_available
    from trainer_adapter.model.nerfacto import NerfactoModel
    from trainer_adapter.presets import make_options

    model = NerfactoModel(make_options("tiny").model, num_train_images=2).to(CUDA)
    assert hash_grid_of(model) == ("tcnn" if tcnn_available() else "torch")


def test_the_guard_stops_a_nan_run_under_the_fp16_scaler(
    synth_v2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eyeful_tools.convert import convert_capture
    from eyeful_tools.errors import TrainingError
    from trainer_adapter.model.nerfacto import NerfactoModel
    from trainer_adapter.trainer import train

    shutil.copytree(synth_v2, tmp_path / synth_v2.name)
    convert_capture(tmp_path / synth_v2.name, resolutions=["jpeg_1k"])
    original, calls = NerfactoModel.loss_dict, itertools.count()

    def poisoned(self: NerfactoModel, outputs: dict, gt: torch.Tensor) -> dict:
        losses = original(self, outputs, gt)
        if next(calls) >= 4:
            losses["rgb_loss"] = losses["rgb_loss"] * float("nan")
        return losses

    monkeypatch.setattr(NerfactoModel, "loss_dict", poisoned)
    with pytest.raises(TrainingError, match="from step 4; training stopped at step 6"):
        train(tmp_path / synth_v2.name / "images-jpeg-1k", preset="tiny", max_steps=20,
              device="cuda", mixed_precision=True, output_dir=tmp_path / "out")  # fmt: skip
