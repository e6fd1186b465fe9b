"""Rays/s the lazy loader delivers from 1368x2048 JPEGs with a decoded-pixel cache 10x smaller
than the decoded dataset, against the full-load mode on a dataset that fits, in the same run.

    python -m bench.loader [--images 40] [--steps 600] [--refresh-every 32] [--workdir DIR]

Each mode runs in its own subprocess so its peak RSS (VmHWM, reset after imports and after
building the dataset) is its own. Targets (issue 7): >= 1M rays/s warm, lazy within 2x of full.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WIDTH, HEIGHT = 1368, 2048


def make_dataset(root: Path, count: int) -> Path:
    """``count`` JPEGs (smooth noise + texture, so decoding costs what a photo costs)."""
    from eyeful_tools.cameras import Camera, CameraModel, Frame, Scene, WorldUp
    from eyeful_tools.imageio import write_image
    from eyeful_tools.transforms import scene_to_transforms, write_transforms

    camera = Camera(
        model=CameraModel.OPENCV,
        width_px=WIDTH,
        height_px=HEIGHT,
        fx=1000.0,
        fy=1000.0,
        cx=WIDTH / 2,
        cy=HEIGHT / 2,
        distortion=(-0.06, 0.012, -0.0015, 0.0, 0.0006, -0.0004),
    )
    rng = np.random.default_rng(0)
    import cv2

    base = cv2.resize(
        rng.integers(0, 256, (HEIGHT // 16, WIDTH // 16, 3), dtype=np.uint8), (WIDTH, HEIGHT)
    )
    frames = []
    for i in range(count):
        name = f"images/img_{i:04d}.jpg"
        path = root / name
        if not path.is_file():
            grain = rng.integers(0, 24, (HEIGHT, WIDTH, 3), dtype=np.uint8)
            write_image(path, np.roll(base, 37 * i, axis=1) + grain, jpeg_quality=92)
        pose = np.eye(4)
        pose[:3, 3] = [0.1 * i, 0.05 * (i % 5), 0.0]
        frames.append(Frame(image_path=name, camera=camera, world_from_cam=pose))
    scene = Scene(
        frames=tuple(frames),
        world_up=WorldUp.Z_UP,
        splits={"train": [f.image_path for f in frames], "val": [], "test": []},
    )
    write_transforms(root / f"transforms_{count}.json", scene_to_transforms(scene))
    return root / f"transforms_{count}.json"


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def run_mode(args: argparse.Namespace) -> dict:
    """One measurement, in this process (called in a subprocess by :func:`main`)."""
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
    options = dict(
        rays_per_batch=args.rays,
        pool_images=args.pool_images,
        refresh_every=args.refresh_every,
        workers=args.workers,
        mode=args.mode,
        cache_bytes=args.cache_bytes,
        disk_cache=args.disk_cache,
    )
    start = time.perf_counter()
    with RayLoader(dataset, **options) as loader:
        for _ in range(args.warmup):
            loader.next_batch()
        warm, warm_cpu = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            loader.next_batch()
        end, end_cpu = time.perf_counter(), time.process_time()
        pool_images, pool_bytes = loader.pool_images, loader.pool_bytes
    return {
        "mode": args.mode,
        "images": len(dataset),
        "rays_per_s": args.steps * args.rays / (end - warm),
        # per CPU-second of this process (all threads, decoding included): insensitive to
        # other processes competing for the cores
        "rays_per_cpu_s": args.steps * args.rays / max(end_cpu - warm_cpu, 1e-9),
        "startup_s": warm - start,
        "peak_rss_mb": _status("VmHWM") / 2**20,
        "peak_above_baseline_mb": (_status("VmHWM") - baseline) / 2**20,
        "pool_images": pool_images,
        "pool_mb": pool_bytes / 2**20,
    }


def _measure(transforms: Path, mode: str, args: argparse.Namespace, **extra: object) -> dict:
    command = [
        sys.executable, "-m", "bench.loader", "--child", "--transforms", str(transforms),
        "--mode", mode, "--steps", str(args.steps), "--warmup", str(args.warmup),
        "--rays", str(args.rays), "--refresh-every", str(args.refresh_every),
        "--pool-images", str(args.pool_images), "--workers", str(args.workers),
        "--threads", str(args.threads),
    ]  # fmt: skip
    for key, value in extra.items():
        if value is not None:
            command += [f"--{key.replace('_', '-')}", str(value)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40, help="images in the lazy dataset")
    parser.add_argument("--fit-images", type=int, default=8, help="images for full-load")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rays", type=int, default=4096)
    parser.add_argument("--refresh-every", type=int, default=32)
    parser.add_argument("--pool-images", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs, best kept")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--transforms", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="lazy", help=argparse.SUPPRESS)
    parser.add_argument("--cache-bytes", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--disk-cache", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_mode(args)))
        return

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-loader-"))
    print(f"generating {args.images} JPEGs of {WIDTH}x{HEIGHT} in {workdir} ...", flush=True)
    lazy_set = make_dataset(workdir, args.images)
    fit_set = make_dataset(workdir, args.fit_images)
    decoded = args.images * WIDTH * HEIGHT * 3
    cache_bytes = decoded // 10
    runs: dict[str, list[dict]] = {"full": [], "lazy": [], "disk": []}
    for _ in range(args.repeats):  # interleaved, best of each: the machine may be shared
        runs["full"].append(_measure(fit_set, "full", args))
        runs["lazy"].append(_measure(lazy_set, "lazy", args, cache_bytes=cache_bytes))
        for _ in range(2):  # the first pass fills the disk cache, the second reads it
            disk_run = _measure(
                lazy_set, "lazy", args, cache_bytes=cache_bytes, disk_cache=workdir / "npy"
            )
        runs["disk"].append(disk_run)
    full, lazy, disk = (max(runs[k], key=lambda r: r["rays_per_s"]) for k in runs)

    def line(name: str, r: dict) -> str:
        return (
            f"{name:<34} {r['rays_per_s'] / 1e6:5.2f} M rays/s ({r['rays_per_cpu_s'] / 1e6:5.2f} M"
            f" per CPU-s)  peak RSS {r['peak_rss_mb']:4.0f} MB"
            f" (+{r['peak_above_baseline_mb']:.0f} MB over baseline; pool {r['pool_images']} images"
            f" = {r['pool_mb']:.0f} MB)"
        )

    print(
        f"{args.rays} rays/batch, refresh every {args.refresh_every} steps, {args.workers} "
        f"decode threads, {args.threads} torch thread(s), {args.steps} timed steps after "
        f"{args.warmup} warm-up; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(line(f"full-load ({args.fit_images} images)", full))
    print(line(f"lazy ({args.images} imgs, cache {cache_bytes / 2**20:.0f} MB)", lazy))
    print(line("lazy + disk cache (2nd pass)", disk))
    print(f"decoded dataset {decoded / 2**20:.0f} MB; cache budget {cache_bytes / 2**20:.0f} MB")
    for name, run in (("lazy", lazy), ("lazy+disk", disk)):
        print(
            f"ratio {name} / full-load: {run['rays_per_s'] / full['rays_per_s']:.2f} wall, "
            f"{run['rays_per_cpu_s'] / full['rays_per_cpu_s']:.2f} per CPU-second"
        )


if __name__ == "__main__":
    main()
