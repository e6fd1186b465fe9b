"""``eyeful demo`` / ``make demo``: the whole pipeline on the synthetic capture, offline.

Each stage calls the library function its command calls, and first prints the ``eyeful``
command line a user would type for it: synth -> a local S3 endpoint (moto on 127.0.0.1) laid
out like the EyefulTower bucket -> download (+ KRT convert) -> Metashape rig convert with the
KRT cross-check -> split -> downscale -> train (``tiny``) -> eval. The S3 server is stopped
before training starts. It lives here, above both packages, because it trains (torch).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from eyeful_tools import catalog
from eyeful_tools.errors import DownloadError, EyefulError, UsageError

CAPTURE = "synthetic"
RESOLUTION = "jpeg_2k"
PRESET = "tiny"


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


def local_s3_available() -> None:
    """Raise a one-line :class:`UsageError` when moto (the ``demo`` extra) is missing."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        raise UsageError(
            None, "the demo serves its capture with moto: pip install 'eyeful[demo]'"
        ) from None


def run_demo(options: DemoOptions, say: Callable[[str], None] = print) -> DemoResult:
    """Run every stage; raise an :class:`EyefulError` naming what failed."""
    local_s3_available()
    started = time.perf_counter()
    workdir = options.workdir.resolve()
    bucket_copy = workdir / "bucket" / CAPTURE
    data = workdir / "data"
    capture_dir = data / CAPTURE
    dataset = capture_dir / catalog.RESOLUTIONS[RESOLUTION].folder

    def stage(*args: str | Path | int) -> None:
        say(f"\n$ eyeful {shlex.join(str(a) for a in args)}")

    _synth(options, bucket_copy, stage, say)
    _download(bucket_copy, data, stage, say)
    _convert_split_downscale(capture_dir, dataset, stage, say)
    run_dir, checkpoint = _train(dataset, workdir / "outputs", options, stage, say)
    return _evaluate(run_dir, checkpoint, dataset, options, stage, say, started)


def _synth(
    options: DemoOptions, out: Path, stage: Callable[..., None], say: Callable[[str], None]
) -> None:
    from eyeful_tools.synth import synthesize

    width, height = options.size
    stage(
        "synth",
        out,
        "--rig",
        "v2",
        "--positions",
        options.positions,
        "--size",
        f"{width}x{height}",
        "--seed",
        options.seed,
    )
    result = synthesize(
        out, rig="v2", positions=options.positions, seed=options.seed, size=options.size
    )
    say(f"synth: {result.image_count} images x {len(result.folder_sizes)} folders -> {out}")


def _download(
    bucket_copy: Path, data: Path, stage: Callable[..., None], say: Callable[[str], None]
) -> None:
    from eyeful_tools.download import DownloadRequest, plan_download, run_download
    from eyeful_tools.locals3 import serve_capture

    resolutions = [RESOLUTION, "exr_2k"]
    with serve_capture(bucket_copy, CAPTURE) as endpoint:
        say(
            f"\n# a local S3 endpoint at {endpoint} serves s3://{catalog.PUBLIC_BUCKET}/"
            f"{catalog.PUBLIC_PREFIX}{CAPTURE}/ (moto, 127.0.0.1 only)"
        )
        stage(
            "download",
            "--endpoint-url",
            endpoint,
            "--capture",
            CAPTURE,
            "--resolution",
            resolutions[0],
            "--resolution",
            resolutions[1],
            "--dest",
            data,
        )
        request = DownloadRequest(
            captures=[CAPTURE], resolutions=resolutions, dest=data, endpoint_url=endpoint
        )
        report = run_download(plan_download(request))
    say("# the S3 endpoint is stopped")
    if report.sync.failures:
        url, reason = report.sync.failures[0]
        raise DownloadError(url, reason)
    converted = sum(len(r) for _, r in report.converted)
    say(
        f"downloaded {report.sync.files_fetched} files to {data}; "
        f"converted {converted} resolution folders"
    )


def _convert_split_downscale(
    capture_dir: Path, dataset: Path, stage: Callable[..., None], say: Callable[[str], None]
) -> None:
    """The Metashape rig convert (cross-checked against KRT), a subset and x2 copies."""
    from eyeful_tools.convert import convert_capture
    from eyeful_tools.downscale import downscale
    from eyeful_tools.split import split_transforms_file

    stage("convert", capture_dir, "--from", "metashape", "--check", "--resolution", RESOLUTION)
    report = convert_capture(capture_dir, resolutions=[RESOLUTION], source="metashape", check=True)
    say(report.summary())
    subset = dataset / "transforms_half_positions.json"
    stage(
        "split",
        dataset / "transforms.json",
        "--subsample",
        "half",
        "--by",
        "position",
        "--out",
        subset,
    )
    say(
        split_transforms_file(
            dataset / "transforms.json", subsample_n="half", by="position", out=subset
        )
    )
    stage("downscale", dataset, "--factor", 2)
    result = downscale(dataset, (2,))
    say(f"downscaled {result.sources} files (x2): {result.written} written")


def _train(
    dataset: Path,
    outputs: Path,
    options: DemoOptions,
    stage: Callable[..., None],
    say: Callable[[str], None],
) -> tuple[Path, Path]:
    from trainer_adapter.trainer import train

    stage(
        "train",
        dataset,
        "--preset",
        PRESET,
        "--max-steps",
        options.steps,
        "--output-dir",
        outputs,
        "--device",
        options.device,
    )
    result = train(
        dataset, preset=PRESET, max_steps=options.steps, output_dir=outputs, device=options.device
    )
    if result.checkpoint is None:
        raise UsageError(result.run_dir, "training saved no checkpoint")
    say(
        f"trained to step {result.last_step} in {result.run_dir} "
        f"(train psnr {result.stats.get('psnr', float('nan')):.2f} dB)"
    )
    return result.run_dir, result.checkpoint


def _evaluate(
    run_dir: Path,
    checkpoint: Path,
    dataset: Path,
    options: DemoOptions,
    stage: Callable[..., None],
    say: Callable[[str], None],
    started: float,
) -> DemoResult:
    from trainer_adapter.evaluate import evaluate

    stage("eval", run_dir, "--split", "test", "--device", options.device)
    result = evaluate(run_dir, split="test", device=options.device)
    psnr = result.results.get("psnr")
    if psnr is None:
        raise EyefulError(result.metrics_path, "evaluation wrote no PSNR")
    say(f"{len(result.per_image)} test images: psnr {psnr:.2f} dB -> {result.metrics_path}")
    side_by_side = sorted((result.images_dir / "side_by_side").glob("*.png"))
    if not side_by_side:
        raise EyefulError(run_dir, "demo run left no side-by-side image")
    return DemoResult(
        dataset_dir=dataset,
        run_dir=run_dir,
        metrics_path=result.metrics_path,
        psnr=psnr,
        side_by_side=side_by_side[0],
        checkpoint=checkpoint,
        seconds=time.perf_counter() - started,
    )
