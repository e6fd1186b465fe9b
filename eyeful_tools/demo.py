"""``eyeful demo`` / ``make demo``: the whole pipeline on the synthetic capture, offline.

It runs the same ``eyeful`` commands a user would type, in-process, and prints each one first:
synth -> a local S3 endpoint (moto on 127.0.0.1) laid out like the EyefulTower bucket ->
download (+ KRT convert) -> Metashape rig convert with the KRT cross-check -> split -> downscale
-> train (``tiny``) -> eval. The S3 server is stopped before training starts.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from eyeful_tools import catalog
from eyeful_tools.errors import EyefulError, UsageError
from eyeful_tools.fsio import read_json

CAPTURE = "synthetic"
RESOLUTION = "jpeg_2k"


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path = Path("demo_run")
    positions: int = 8
    size: tuple[int, int] = (192, 288)
    steps: int = 1500
    device: str = "cpu"
    seed: int = 0


@dataclass(frozen=True)
class DemoResult:
    dataset_dir: Path
    run_dir: Path
    metrics_path: Path
    psnr: float
    side_by_side: Path
    checkpoint: Path
    seconds: float


def run_demo(options: DemoOptions, say: Callable[[str], None] = print) -> DemoResult:
    """Run every stage; raise an :class:`EyefulError` naming the stage that failed."""
    from eyeful_tools.cli import main
    from eyeful_tools.locals3 import serve_capture

    started = time.perf_counter()
    workdir = options.workdir.resolve()
    bucket_copy = workdir / "bucket" / CAPTURE
    data = workdir / "data"
    outputs = workdir / "outputs"
    capture_dir = data / CAPTURE
    dataset = capture_dir / catalog.RESOLUTIONS[RESOLUTION].folder

    def eyeful(*args: str | Path) -> None:
        argv = [str(a) for a in args]
        say(f"\n$ eyeful {shlex.join(argv)}")
        code = main(argv)
        if code != 0:
            raise EyefulError(None, f"demo stage `eyeful {argv[0]}` failed (exit {code})")

    width, height = options.size
    eyeful(
        "synth",
        bucket_copy,
        "--rig",
        "v2",
        "--positions",
        options.positions,
        "--size",
        f"{width}x{height}",
        "--seed",
        options.seed,
    )
    with serve_capture(bucket_copy, CAPTURE) as endpoint:
        say(
            f"\n# a local S3 endpoint at {endpoint} serves s3://{catalog.PUBLIC_BUCKET}/"
            f"{catalog.PUBLIC_PREFIX}{CAPTURE}/ (moto, 127.0.0.1 only)"
        )
        eyeful(
            "download",
            "--endpoint-url",
            endpoint,
            "--capture",
            CAPTURE,
            "--resolution",
            RESOLUTION,
            "--resolution",
            "exr_2k",
            "--dest",
            data,
        )
    say("# the S3 endpoint is stopped")
    eyeful("convert", capture_dir, "--from", "metashape", "--check", "--resolution", RESOLUTION)
    eyeful(
        "split",
        dataset / "transforms.json",
        "--subsample",
        "half",
        "--by",
        "position",
        "--out",
        dataset / "transforms_half_positions.json",
    )
    eyeful("downscale", dataset, "--factor", "2")
    eyeful(
        "train",
        dataset,
        "--preset",
        "tiny",
        "--max-steps",
        options.steps,
        "--output-dir",
        outputs,
        "--device",
        options.device,
    )
    run_dir = _newest_run(outputs / CAPTURE / "tiny")
    eyeful("eval", run_dir, "--split", "test", "--device", options.device)

    metrics_path = run_dir / "eval" / "test" / "metrics.json"
    metrics = read_json(metrics_path, "metrics")
    side_by_side = sorted((metrics_path.parent / "side_by_side").glob("*.png"))
    from trainer_adapter.trainer import latest_checkpoint  # the demo trains: torch is here

    checkpoint = latest_checkpoint(run_dir)  # raises when the run saved none
    if not side_by_side:
        raise EyefulError(run_dir, "demo run left no side-by-side image")
    return DemoResult(
        dataset_dir=dataset,
        run_dir=run_dir,
        metrics_path=metrics_path,
        psnr=float(metrics["results"]["psnr"]),
        side_by_side=side_by_side[0],
        checkpoint=checkpoint,
        seconds=time.perf_counter() - started,
    )


def _newest_run(folder: Path) -> Path:
    runs = sorted(p for p in folder.glob("*") if (p / "config.json").is_file())
    if not runs:
        raise UsageError(folder, "training wrote no run folder")
    return runs[-1]
