"""Held-out quality of lazy loading against full load, over several seeds (issue 16, item 2).

    python -m bench.lazy_quality [--seeds 42 43 44 45] [--size 300x448] [--steps 500]
                                 [--embedding both|on|off] [--pool-stride auto|N]
                                 [--eval-images 6] [--jobs 2] [--workdir DIR]

A synthetic capture of 320 images (the v2 rig at 40 positions: 280 train, 40 held out) is
trained with the tiny preset twice per seed: full load, and lazy with a cache of 10% of the
decoded training images. The swap rate is fixed at 2 images a step so that timing never changes
a result. Each run is scored on the first ``--eval-images`` held-out images, and a seed's two
runs share that seed (model initialisation and ray draws).

Why several seeds: at a few hundred steps one mode's seed-to-seed spread is 0.3-0.7 dB, as large
as the 0.3 dB being checked, so a single pair proves little either way (docs/loader.md, "Tests").
Why 300x448 by default: it is about the smallest size of the capture's aspect at which the
automatic pixel stride gives what a 2K capture gets from the nerfacto preset, a pool that holds
every training image as lattices big enough for the batch (stride 4 here; riverview gets 3,
apartment 4). At the test's 50x75 the lattice floor keeps whole images, a pool of 24 of the 280.
Scoring dominates the time (one thread renders ~6,000 rays/s), hence 6 held-out images: the 16
runs take about 30 minutes on 2 cores.

``--embedding both`` runs each pair with and without the appearance embedding: with it, the
codes train differently whenever the pool does not hold every image; without it, only the
sampling differs.

Target: for each embedding setting, the mean over seeds of (lazy - full) held-out PSNR is within
0.3 dB either way, and every lazy run drew rays from every training image. Exits 1 when one is
missed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from bench import _args

TARGET_DB = 0.3
TRAIN_IMAGES = 280  # the v2 rig at 40 positions, less its held-out camera


@dataclasses.dataclass(frozen=True)
class Job:
    """One training run and its held-out score."""

    data: Path
    out: Path
    mode: str  # "full" or "lazy"
    seed: int
    embedding: bool
    steps: int
    cache_bytes: int
    pool_stride: int | str  # "auto" or N
    eval_images: int


def make_capture(workdir: Path, width: int, height: int) -> Path:
    """The synthetic capture at ``width``x``height``, made once and reused."""
    from eyeful_tools.convert import convert_capture
    from eyeful_tools.synth import synthesize

    root = workdir / f"synth-{width}x{height}"
    data = root / "images-jpeg-2k"
    if not (data / "transforms.json").is_file():
        synthesize(root, rig="v2", positions=40, size=(width, height), supersample=1)
        convert_capture(root, resolutions=["jpeg_2k"])
    return data


@dataclasses.dataclass(frozen=True)
class Score:
    """A run's held-out PSNR and what its loader did."""

    job: Job
    psnr: float
    pool_images: int
    pool_stride: int
    images_seen: int
    resident: bool
    run_dir: Path


def run_job(job: Job) -> Score:
    """Train and score one run (in a worker process, on one thread)."""
    import torch

    from trainer_adapter.evaluate import evaluate
    from trainer_adapter.trainer import train

    torch.set_num_threads(1)
    overrides: dict[str, object] = {"use_appearance_embedding": job.embedding}
    if job.mode == "full":
        overrides["loader_mode"] = "full"
    else:
        overrides.update(cache_bytes=job.cache_bytes, swap_rate=2.0, pool_stride=job.pool_stride)
    name = f"{job.mode}-{'emb' if job.embedding else 'noemb'}-{job.seed}"
    run = train(
        job.data, preset="tiny", max_steps=job.steps, output_dir=job.out, device="cpu",
        timestamp=name, seed=job.seed, overrides=overrides,
    )  # fmt: skip
    psnr = evaluate(run.run_dir, device="cpu", max_images=job.eval_images).results["psnr"]
    coverage = run.coverage
    if coverage is None or psnr is None:  # no step, or no held-out image: nothing to compare
        raise SystemExit(f"error: {run.run_dir}: no coverage or held-out PSNR")
    return Score(
        job, psnr, coverage.pool_images, coverage.pool_stride,
        coverage.images_seen, coverage.resident, run.run_dir,
    )  # fmt: skip


def run_jobs(jobs: list[Job], at_once: int) -> list[Score]:
    """``run_job`` for each of ``jobs``, ``at_once`` in fresh processes (one thread each)."""
    with ProcessPoolExecutor(at_once, mp_context=get_context("spawn")) as pool:
        return list(pool.map(run_job, jobs))


def summarise(scores: list[Score], embedding: bool) -> tuple[float, list[str]]:
    """The mean paired gap (lazy - full) for one embedding setting, and the table's lines."""
    runs = {(s.job.mode, s.job.seed): s for s in scores if s.job.embedding == embedding}
    seeds = sorted({seed for _, seed in runs})
    full = [runs["full", seed].psnr for seed in seeds]
    lazy = [runs["lazy", seed].psnr for seed in seeds]
    gaps = [b - a for a, b in zip(full, lazy, strict=True)]
    lines = [
        f"appearance embedding {'on' if embedding else 'off'}:",
        "  seed    full    lazy  lazy-full",
    ]
    for seed, a, b in zip(seeds, full, lazy, strict=True):
        lines.append(f"  {seed:>4}  {a:6.2f}  {b:6.2f}  {b - a:+9.2f}")
    gap = statistics.mean(gaps)
    spread = f"{statistics.stdev(gaps):.2f}" if len(gaps) > 1 else "-"
    lines.append(
        f"  mean  {statistics.mean(full):6.2f}  {statistics.mean(lazy):6.2f}  {gap:+9.2f}"
        f"  (sd of the gaps {spread})"
    )
    lazy_runs = [runs["lazy", seed] for seed in seeds]
    pools = sorted({(run.pool_images, run.pool_stride) for run in lazy_runs})
    lines.append(
        f"  lazy pool (images, pixel stride): {', '.join(map(str, pools))} of {TRAIN_IMAGES}; "
        f"fewest images seen in a run: {min(run.images_seen for run in lazy_runs)}"
    )
    return gap, lines


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options; a bad value is argparse's one-line usage error, not a worker's traceback."""
    parser = argparse.ArgumentParser(prog="python -m bench.lazy_quality", description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44, 45])
    parser.add_argument("--size", type=_args.size, default="300x448", help="image width x height")
    parser.add_argument("--steps", type=_positive, default=500)
    parser.add_argument("--embedding", choices=("both", "on", "off"), default="both")
    parser.add_argument("--pool-stride", type=_args.pool_stride, default="auto", help="auto or N")
    parser.add_argument("--eval-images", type=_positive, default=6)
    parser.add_argument("--jobs", type=_positive, default=2, help="runs at once, one thread each")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/eyeful-bench-lazy-quality"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    width, height = args.size
    args.seeds = list(dict.fromkeys(args.seeds))  # a seed named twice is one pair
    data = make_capture(args.workdir, width, height)
    cache_bytes = TRAIN_IMAGES * width * height * 3 // 10
    embeddings = {"both": [False, True], "on": [True], "off": [False]}[args.embedding]
    out = args.workdir / f"runs-{width}x{height}-{args.steps}-{args.pool_stride}"
    shutil.rmtree(out, ignore_errors=True)  # this benchmark's own runs from an earlier time
    jobs = [
        Job(data, out, mode, seed, embedding, args.steps, cache_bytes, args.pool_stride,
            args.eval_images)
        for embedding in embeddings for seed in args.seeds for mode in ("full", "lazy")
    ]  # fmt: skip
    print(
        f"{len(jobs)} runs of {args.steps} tiny steps on {width}x{height} px, cache "
        f"{cache_bytes / 2**20:.1f} MiB (10% of the decoded training images), "
        f"{args.eval_images} held-out images each",
        flush=True,
    )
    results = run_jobs(jobs, args.jobs)
    missed = [
        f"{score.job.mode} seed {score.job.seed}: {score.images_seen} images seen"
        for score in results
        if score.images_seen < TRAIN_IMAGES
    ]
    for embedding in embeddings:
        gap, lines = summarise(results, embedding)
        print("\n".join(lines))
        if abs(gap) > TARGET_DB:
            missed.append(f"embedding {'on' if embedding else 'off'}: mean gap {gap:+.2f} dB")
    rows = [dataclasses.asdict(score) for score in results]
    (args.workdir / "results.json").write_text(json.dumps(rows, indent=1, default=str))
    if missed:
        print(
            f"MISSED (targets: mean lazy - full within {TARGET_DB} dB, every image seen): "
            f"{'; '.join(missed)}"
        )
        return 1
    print(f"ok: every mean lazy - full gap is within {TARGET_DB} dB; every image seen")
    return 0


if __name__ == "__main__":
    sys.exit(main())
