"""The lazy loader streaming a capture larger than its cache, against full load of the same
images, in the same run: coverage, rays/s and decode wait per 1,000 steps.

    python -m bench.loader [--images 960] [--width 1368 --height 2048] [--cache-bytes 2GiB]
                           [--steps 3000] [--max-steps 20000] [--workers N] [--workdir DIR]
                           [--pool-stride auto|N]

Defaults: 960 JPEGs at 1368x2048 (riverview's count at 2K; generated once into ``--workdir``,
default ``/tmp/eyeful-bench-loader``, and reused) and the nerfacto preset's 2 GiB cache. The
full-load baseline decodes all the images up front (8 GB at the defaults) and draws every batch
from all of them, as nerfstudio does; the lazy run streams them through the pool at the default
``"auto"`` swap rate until one pass is complete. Each mode runs in its own subprocess so its
peak RSS is its own; the startup (full load, or the lazy pool's first fill) is timed apart.

Targets (issue 16): lazy rays/s >= 0.8x full load; every image in the pool once per pass; decode
wait under 5% of the lazy run's wall time after its startup. Exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench import _args

WINDOW = 1000  # steps per reported line
TARGET_RATIO, TARGET_WAIT = 0.8, 0.05


def make_dataset(root: Path, count: int, width: int = 1368, height: int = 2048) -> Path:
    """``count`` JPEGs (smooth noise + grain, so decoding costs what a photo costs) under
    ``root/<width>x<height>/``, kept between runs; returns the ``transforms_<count>.json``."""
    import cv2

    from eyeful_tools.cameras import Camera, CameraModel, Frame, Scene, WorldUp
    from eyeful_tools.imageio import write_image
    from eyeful_tools.transforms import scene_to_transforms, write_transforms

    root = root / f"{width}x{height}"
    camera = Camera(
        model=CameraModel.OPENCV,
        width_px=width,
        height_px=height,
        fx=1000.0,
        fy=1000.0,
        cx=width / 2,
        cy=height / 2,
        distortion=(-0.06, 0.012, -0.0015, 0.0, 0.0006, -0.0004),
    )
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (max(height // 16, 1), max(width // 16, 1), 3), dtype=np.uint8)
    base = cv2.resize(small, (width, height))
    frames = []
    for i in range(count):
        name = f"images/img_{i:04d}.jpg"
        if not (root / name).is_file():
            grain = rng.integers(0, 24, (height, width, 3), dtype=np.uint8)
            write_image(root / name, np.roll(base, 37 * i, axis=1) + grain, jpeg_quality=92)
        pose = np.eye(4)
        pose[:3, 3] = [0.1 * i, 0.05 * (i % 5), 0.0]
        frames.append(Frame(image_path=name, camera=camera, world_from_cam=pose))
    scene = Scene(
        frames=tuple(frames),
        world_up=WorldUp.Z_UP,
        splits={"train": [f.image_path for f in frames], "val": [], "test": []},
    )
    path = root / f"transforms_{count}.json"
    write_transforms(path, scene_to_transforms(scene))
    return path


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def run_mode(args: argparse.Namespace) -> dict:
    """One mode, in this process (a subprocess of :func:`main`): per-window numbers."""
    import torch

    from trainer_adapter.data.loader import RayLoader
    from trainer_adapter.data.parser import parse_dataset

    # per-batch tensors (4096 rays) are below torch's parallel grain size; extra intra-op
    # threads only spin, and on a shared 2-core machine steal the decoder's core
    torch.set_num_threads(args.threads)
    dataset = parse_dataset(args.transforms)
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS
    baseline = _status("VmRSS")
    start = time.perf_counter()
    lazy = args.mode == "lazy"
    with RayLoader(
        dataset,
        rays_per_batch=args.rays,
        mode=args.mode,
        cache_bytes=args.cache_bytes if lazy else None,
        workers=args.workers,
        disk_cache=args.disk_cache,
        pool_stride=args.pool_stride,
    ) as loader:
        loader.next_batch()  # full: after the load; lazy: the pool's first fill
        # a pool of the whole split completes a pass with its first fill: stream one more
        passes_wanted = 1 if loader.plan.pool_images < len(loader.indices) else 2
        startup = time.perf_counter() - start
        windows = []
        while True:
            before = loader.coverage()
            tic, cpu_tic = time.perf_counter(), time.process_time()
            for _ in range(WINDOW):
                loader.next_batch()
            toc, cpu_toc = time.perf_counter(), time.process_time()
            after = loader.coverage()
            windows.append(
                {
                    "steps": after.steps,
                    "rays_per_s": WINDOW * args.rays / (toc - tic),
                    "rays_per_cpu_s": WINDOW * args.rays / max(cpu_toc - cpu_tic, 1e-9),
                    "wall_s": toc - tic,
                    "wait_s": after.decode_wait_s - before.decode_wait_s,
                    "seen": after.images_seen,
                    "in_pool": int(np.count_nonzero(after.pool_visits)),
                    "passes": after.passes,
                }
            )
            done = after.steps >= args.steps and (not lazy or after.passes >= passes_wanted)
            if done or after.steps >= args.max_steps:
                break
        coverage = loader.coverage()
    return {
        "mode": args.mode,
        "startup_s": startup,
        "windows": windows,
        "coverage": {k: v for k, v in coverage.to_json().items() if k != "per_image"},
        "min_visits": int(coverage.pool_visits.min()),
        "peak_rss_mb": _status("VmHWM") / 2**20,
        "peak_above_baseline_mb": (_status("VmHWM") - baseline) / 2**20,
        "pool_images": loader.pool_images,
        "pool_stride": loader.plan.stride,
        "decode_duty": loader.decode_duty,
        "pool_mb": loader.pool_bytes / 2**20,
    }


def _measure(transforms: Path, mode: str, args: argparse.Namespace) -> dict:
    command = [
        sys.executable, "-m", "bench.loader", "--child", "--transforms", str(transforms),
        "--mode", mode, "--steps", str(args.steps), "--max-steps", str(args.max_steps),
        "--rays", str(args.rays), "--threads", str(args.threads),
        "--cache-bytes", str(args.cache_bytes), "--pool-stride", str(args.pool_stride),
    ]  # fmt: skip
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    if args.disk_cache is not None:
        command += ["--disk-cache", str(args.disk_cache)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _mean_rate(run: dict) -> float:
    rays = sum(w["rays_per_s"] * w["wall_s"] for w in run["windows"])
    return rays / sum(w["wall_s"] for w in run["windows"])


def report(full: dict, lazy: dict, images: int) -> list[str]:
    """Print the per-window table and the verdict; returns the targets missed."""
    print(f"{'steps':>6} | full: {'seen':>5} {'M rays/s':>8} {'wait s':>6} | lazy: {'seen':>5} "
          f"{'in pool':>7} {'passes':>6} {'M rays/s':>8} {'wait s':>6}")  # fmt: skip
    for i in range(max(len(full["windows"]), len(lazy["windows"]))):
        f = full["windows"][i] if i < len(full["windows"]) else None
        z = lazy["windows"][i] if i < len(lazy["windows"]) else None
        left = (
            f"{f['seen']:>5} {f['rays_per_s'] / 1e6:>8.2f} {f['wait_s']:>6.2f}" if f else " " * 21
        )
        right = (
            f"{z['seen']:>5} {z['in_pool']:>7} {z['passes']:>6} {z['rays_per_s'] / 1e6:>8.2f} "
            f"{z['wait_s']:>6.2f}"
            if z
            else ""
        )
        print(f"{(i + 1) * WINDOW:>6} |       {left} |       {right}")
    for name, run in (("full", full), ("lazy", lazy)):
        print(
            f"{name}: startup {run['startup_s']:.1f} s, pool {run['pool_images']} images "
            f"at pixel stride {run['pool_stride']} "
            f"= {run['pool_mb']:.0f} MB, peak RSS {run['peak_rss_mb']:.0f} MB "
            f"(+{run['peak_above_baseline_mb']:.0f} MB over baseline)"
        )
    cov = lazy["coverage"]
    ratio = _mean_rate(lazy) / _mean_rate(full)
    cpu_ratio = np.mean([w["rays_per_cpu_s"] for w in lazy["windows"]]) / np.mean(
        [w["rays_per_cpu_s"] for w in full["windows"]]
    )
    wall = sum(w["wall_s"] for w in lazy["windows"])
    wait = sum(w["wait_s"] for w in lazy["windows"])
    print(
        f"lazy: {cov['passes_completed']} passes of ~{cov['steps_per_pass'] or 0:.0f} steps "
        f"({cov['swap_per_step']:.3f} images per step at {cov['decode_ms_per_image'] or 0:.0f} ms "
        f"per decode, decode duty {lazy['decode_duty']:.2f}), every image in the pool at least "
        f"{lazy['min_visits']} times"
    )
    print(
        f"ratio lazy / full: {ratio:.2f} rays/s ({cpu_ratio:.2f} per CPU-second); decode wait "
        f"{wait:.2f} s = {100 * wait / wall:.1f}% of {wall:.0f} s after the first fill; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    missed = []
    if ratio < TARGET_RATIO:
        missed.append(f"lazy throughput {ratio:.2f}x < {TARGET_RATIO}x of full load")
    if cov["passes_completed"] < 1 or lazy["min_visits"] < cov["passes_completed"]:
        missed.append("not every image was in the pool in every pass")
    if cov["images_seen"] < images:
        missed.append(f"only {cov['images_seen']}/{images} images contributed rays")
    if wait > TARGET_WAIT * wall:
        missed.append(f"decode wait {100 * wait / wall:.1f}% >= {100 * TARGET_WAIT:.0f}%")
    return missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=960)
    parser.add_argument("--width", type=int, default=1368)
    parser.add_argument("--height", type=int, default=2048)
    parser.add_argument("--cache-bytes", type=int, default=2 << 30, help="lazy pool budget")
    parser.add_argument("--steps", type=int, default=3000, help="fewest timed steps per mode")
    parser.add_argument("--max-steps", type=int, default=20_000, help="lazy: stop even if no pass")
    parser.add_argument("--rays", type=int, default=4096)
    parser.add_argument("--workers", type=int, default=None, help="decode threads (default: auto)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/eyeful-bench-loader"))
    parser.add_argument("--disk-cache", type=Path, default=None, help="decoded .npy cache folder")
    parser.add_argument(
        "--pool-stride",
        type=_args.pool_stride,
        default="auto",
        help="lazy pool's pixel stride, or auto",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--transforms", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="lazy", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_mode(args)))
        return 0

    print(f"{args.images} JPEGs of {args.width}x{args.height} in {args.workdir} ...", flush=True)
    transforms = make_dataset(args.workdir, args.images, args.width, args.height)
    decoded = args.images * args.width * args.height * 3
    print(
        f"decoded {decoded / 2**30:.1f} GiB; lazy cache {args.cache_bytes / 2**30:.2f} GiB; "
        f"{args.rays} rays/batch, {args.threads} torch thread(s)",
        flush=True,
    )
    full = _measure(transforms, "full", args)
    lazy = _measure(transforms, "lazy", args)
    missed = report(full, lazy, args.images)
    for miss in missed:
        print(f"target missed: {miss}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
