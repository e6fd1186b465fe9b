"""Eval metrics: SSIM equals torchmetrics' on whole images and uses only valid pixels under a
mask (fisheye circle, masks), checked against a direct per-window computation."""

from __future__ import annotations

import pytest
import torch

from trainer_adapter.evaluate import _gaussian_taps, ssim


def _noisy_pair(seed: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    gt = torch.rand(height, width, 3, generator=generator)
    noise = 0.15 * torch.randn(height, width, 3, generator=generator)
    return (gt + noise).clamp(0, 1), gt


@pytest.mark.parametrize(("height", "width", "data_range"), [(32, 40, None), (23, 17, 1.0)])
def test_ssim_without_mask_equals_torchmetrics(
    height: int, width: int, data_range: float | None
) -> None:
    from torchmetrics.functional.image import structural_similarity_index_measure

    for seed in range(3):
        pred, gt = _noisy_pair(seed, height, width)
        expected = structural_similarity_index_measure(
            pred.permute(2, 0, 1)[None].double(),
            gt.permute(2, 0, 1)[None].double(),
            data_range=data_range,
        )
        ours = ssim(pred, gt, data_range=data_range)
        assert ours == pytest.approx(float(expected), abs=1e-6)
        everywhere = torch.ones(height, width, dtype=torch.bool)
        assert ssim(pred, gt, everywhere, data_range=data_range) == pytest.approx(ours, abs=1e-9)


def _direct_masked_ssim(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> float:
    """Window by window around each valid pixel (images and mask reflect-padded by 5, as
    torchmetrics pads): Gaussian weights over the window's valid pixels only, renormalised."""
    x, y = pred.double(), gt.double()
    xs, ys = x[valid], y[valid]
    data_range = float(max(xs.max() - xs.min(), ys.max() - ys.min()))
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def padded(t: torch.Tensor) -> torch.Tensor:  # [H, W, C] -> [H + 10, W + 10, C]
        chw = t.permute(2, 0, 1)[None]
        return torch.nn.functional.pad(chw, [5] * 4, mode="reflect")[0].permute(1, 2, 0)

    x, y, m = padded(x), padded(y), padded(valid[..., None].double())[..., 0]
    taps = _gaussian_taps(11, 1.5)
    kernel = torch.outer(taps, taps)
    values = []
    for i, j in valid.nonzero().tolist():
        w = kernel * m[i : i + 11, j : j + 11]
        w = (w / w.sum())[..., None]
        a, b = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
        mu_a, mu_b = (w * a).sum((0, 1)), (w * b).sum((0, 1))
        var_a = ((w * a * a).sum((0, 1)) - mu_a**2).clamp_min(0)
        var_b = ((w * b * b).sum((0, 1)) - mu_b**2).clamp_min(0)
        cov = (w * a * b).sum((0, 1)) - mu_a * mu_b
        num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
        values.append(num / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))
    return float(torch.stack(values).mean())


def _circle(height: int, width: int, radius: float) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return (rows - height / 2 + 0.5) ** 2 + (cols - width / 2 + 0.5) ** 2 <= radius**2


def test_masked_ssim_uses_only_valid_pixels() -> None:
    pred, gt = _noisy_pair(7, 30, 34)
    valid = _circle(30, 34, 12.0)  # a fisheye-like circle
    ours = ssim(pred, gt, valid)
    assert ours == pytest.approx(_direct_masked_ssim(pred, gt, valid), abs=1e-9)
    # whatever lies outside the circle changes nothing
    other = pred.clone()
    other[~valid] = torch.rand(int((~valid).sum()), 3)
    assert ssim(other, gt, valid) == pytest.approx(ours, abs=1e-12)
    # the old way (black outside, whole image averaged) counts the blank corners as agreement
    blank_pred, blank_gt = pred * valid[..., None], gt * valid[..., None]
    assert ssim(blank_pred, blank_gt) > ours + 0.05
