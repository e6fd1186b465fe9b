"""End to end: the `make demo` pipeline at a small size (synth -> local S3 -> download ->
convert (KRT, Metashape rig + check) -> split -> downscale -> train tiny -> eval)."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from eyeful_tools.cli import main
from trainer_adapter.demo import DemoOptions, run_demo


def test_demo_without_moto_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "moto.server", None)  # what a plain pip install has
    assert main(["demo", "--workdir", str(tmp_path / "demo")]) == 1
    err = capsys.readouterr().err
    assert err == "error: the demo serves its capture with moto: pip install 'eyeful[demo]'\n"
    assert not (tmp_path / "demo").exists()


@pytest.mark.slow
def test_demo_pipeline_end_to_end(tmp_path: Path) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the loader's decode threads share the 2 cores
    lines: list[str] = []
    try:
        result = run_demo(
            DemoOptions(workdir=tmp_path / "demo", positions=3, size=(64, 96), steps=120),
            say=lines.append,
        )
    finally:
        torch.set_num_threads(threads)

    commands = [line.split()[2] for line in lines if line.strip().startswith("$ eyeful")]
    assert commands == [
        "synth",
        "download",
        "convert",
        "split",
        "downscale",
        "train",
        "eval",
    ]
    dataset = result.dataset_dir
    for name in (
        "transforms.json",
        "transforms_300.json",
        "transforms_half.json",
        "transforms_half_positions.json",
        "transforms_2.json",
    ):
        assert (dataset / name).is_file(), name
    assert (dataset.parent / "images-2k" / "transforms.json").is_file()  # EXR folder converted
    transforms = json.loads((dataset / "transforms.json").read_text())
    assert transforms["test_filenames"], "the held-out camera fills the test split"
    assert all(f.startswith("17/") for f in transforms["test_filenames"])

    metrics = json.loads(result.metrics_path.read_text())["results"]
    for key in ("psnr", "ssim", "lpips", "num_rays_per_sec", "fps"):
        assert key in metrics and f"{key}_std" in metrics
    assert 5.0 < result.psnr < 60.0
    assert result.side_by_side.is_file() and result.checkpoint.is_file()

    # the local S3 endpoint is stopped when the demo is done with it
    endpoint = next(line for line in lines if "local S3 endpoint at" in line).split()[6]
    url = urlparse(endpoint)
    with pytest.raises(OSError), socket.create_connection((url.hostname, url.port), timeout=1):
        pass
