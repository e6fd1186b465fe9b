"""``python -m bench.downscale``: images/s of ``eyeful downscale`` against two yardsticks.

Two sets of generated 1368x2048 JPEGs (the EyefulTower jpeg_2k size): quality 92 (typical
photos) and quality 100 (what the EyefulTower JPEGs are; entropy decoding dominates there, so a
reduced-size decode gains less). Per factor 2, 4, 8, in one shared spawn pool:

- baseline: full decode + ``cv2.INTER_AREA`` resize + the same atomic JPEG write;
- reduced decode only (``IMREAD_REDUCED_COLOR_N``, nothing written): the practical limit;
- eyeful: :func:`eyeful_tools.downscale.downscale` end to end (plan, decode, resize, write,
  ``transforms_N.json``).

Targets: at quality 92, eyeful >= 2.5x the baseline at factors 4 and 8; on both sets, eyeful
within 1.3x of the reduced-decode time. Each timing is the best of ``--repeat`` runs. Ratios
use the CPU seconds of the parent and the pool's workers (wall time too, for reference): on a
shared machine wall time follows other people's load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

import cv2
import numpy as np

from eyeful_tools import downscale, imageio, procpool, transforms
from eyeful_tools.cameras import Camera, CameraModel, Frame, Scene, WorldUp, downscaled_folder

WIDTH_PX, HEIGHT_PX = 1368, 2048
FACTORS = (2, 4, 8)
QUALITIES = (92, 100)
CAMERAS = 8  # camera folders 10..17, as a v2 rig's
DISTINCT = 12  # distinct pictures; the rest of the set repeats their bytes under new names


def _picture(seed: int) -> np.ndarray:
    """Photo-like RGB: smooth shading, edges and texture at several scales, sensor noise."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:HEIGHT_PX, 0:WIDTH_PX].astype(np.float32)
    image = np.zeros((HEIGHT_PX, WIDTH_PX, 3), np.float32)
    for channel in range(3):
        image[..., channel] = 90 + 60 * np.sin(xs / rng.uniform(150, 400) + rng.uniform(0, 6))
        image[..., channel] += 40 * np.cos(ys / rng.uniform(100, 300) + xs / 700)
    for _ in range(40):  # flat patches with hard edges, like furniture and walls
        x0, y0 = rng.integers(0, WIDTH_PX), rng.integers(0, HEIGHT_PX)
        w, h = rng.integers(40, 400), rng.integers(40, 400)
        image[y0 : y0 + h, x0 : x0 + w] = rng.uniform(20, 235, size=3)
    texture = cv2.GaussianBlur(rng.normal(0, 25, size=image.shape).astype(np.float32), (0, 0), 2)
    image += texture + rng.normal(0, 3, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_set(root: Path, count: int, quality: int) -> Path:
    """``count`` JPEGs in Eyeful's ``<cam>/<cam>_DSC<NNNN>.jpg`` layout and a transforms.json."""
    encoded = []
    for seed in range(min(DISTINCT, count)):
        ok, data = cv2.imencode(
            ".jpg", _picture(seed)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        assert ok
        encoded.append(data.tobytes())
    camera = Camera(
        model=CameraModel.OPENCV,
        width_px=WIDTH_PX,
        height_px=HEIGHT_PX,
        fx=1000.0,
        fy=1000.0,
        cx=WIDTH_PX / 2,
        cy=HEIGHT_PX / 2,
    )
    frames = []
    for index in range(count):
        cam = 10 + index % CAMERAS
        name = f"{cam}/{cam}_DSC{index:04d}.jpg"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(encoded[index % len(encoded)])
        pose = np.eye(4)
        pose[0, 3] = index * 0.01
        frames.append(Frame(image_path=name, camera=camera, world_from_cam=pose))
    scene = Scene(frames=tuple(frames), world_up=WorldUp.Y_UP, name=f"bench-q{quality}")
    return transforms.write_transforms(
        root / "transforms.json", transforms.scene_to_transforms(scene)
    )


# Workers (module level so the spawn pool can import them).


def _noop(_: int) -> None:
    return None


def _decode_reduced(task: tuple[str, int]) -> None:
    path, factor = task
    flags = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4}.get(
        factor, cv2.IMREAD_REDUCED_COLOR_8
    )
    if cv2.imread(path, flags | cv2.IMREAD_IGNORE_ORIENTATION) is None:
        raise RuntimeError(path)


def _baseline(task: tuple[str, str, int]) -> None:
    """Full decode, area resize to the same floor size, the same atomic q95 write."""
    source, target, factor = task
    pixels = cv2.imread(source, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if pixels is None:
        raise SystemExit(f"bench: cannot decode {source}")
    size = downscale.scaled_size(pixels.shape[1], pixels.shape[0], factor)
    small = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    imageio.write_image(target, small[..., ::-1], jpeg_quality=downscale.DEFAULT_JPEG_QUALITY)


def _cpu_seconds(pool: Executor) -> float:
    """CPU time (user + system) used so far by this process and the pool's workers.

    Timings on a shared machine swing with other people's load; CPU seconds do not (much), so
    the ratios are computed from them. Linux only (``/proc``); elsewhere 0 (wall time is used).
    """
    total = time.process_time()
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in getattr(pool, "_processes", {}) or {}:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def _best_of(
    repeat: int, pool: Executor, run: Callable[[], object], reset: Callable[[], object]
) -> tuple[float, float]:
    """(wall seconds, CPU seconds), each the best of ``repeat`` runs."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        reset()
        cpu_start, start = _cpu_seconds(pool), time.perf_counter()
        run()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, _cpu_seconds(pool) - cpu_start)
    return wall, cpu


def bench_set(path: Path, pool: Executor, repeat: int) -> dict[int, dict[str, tuple[float, float]]]:
    """(wall, CPU) seconds per variant and factor for one set."""
    root = path.parent
    sources = [str(root / f.file_path) for f in transforms.read_transforms(path).frames]
    results: dict[int, dict[str, tuple[float, float]]] = {}
    for factor in FACTORS:
        out = root / f"baseline_{factor}"
        base_tasks = [(s, str(out / Path(s).name), factor) for s in sources]

        def clear(factor: int = factor, out: Path = out) -> None:
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(root / downscaled_folder("images", factor), ignore_errors=True)
            (root / f"transforms_{factor}.json").unlink(missing_ok=True)

        def ours(factor: int = factor) -> None:
            result = downscale.downscale(path, [factor], executor=pool)
            assert result.written == len(sources), result

        def decode(factor: int = factor) -> None:
            procpool.run_jobs(_decode_reduced, [(s, factor) for s in sources], executor=pool)

        def baseline(tasks: list[tuple[str, str, int]] = base_tasks) -> None:
            procpool.run_jobs(_baseline, tasks, executor=pool)

        results[factor] = {
            name: _best_of(repeat, pool, run, clear)
            for name, run in (("decode", decode), ("baseline", baseline), ("eyeful", ours))
        }
        clear()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.downscale", description=__doc__)
    parser.add_argument("--count", type=int, default=200, help="images per set (default 200)")
    parser.add_argument("--jobs", type=int, default=None, help="pool size (default: CPU count)")
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs (default 2)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the sets here")
    args = parser.parse_args(argv)

    jobs = args.jobs or procpool.default_jobs()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-downscale-"))
    print(
        f"{args.count} images of {WIDTH_PX}x{HEIGHT_PX} per set, {jobs} workers, best of "
        f"{args.repeat}; ratios from CPU seconds of parent + workers (robust to other load)"
    )
    failures = []
    pool = procpool.make_pool(jobs)
    try:
        procpool.run_jobs(_noop, list(range(4 * jobs)), executor=pool)  # start every worker
        for quality in QUALITIES:
            root = workdir / f"q{quality}"
            path = root / "transforms.json"
            if not path.is_file():
                make_set(root, args.count, quality)
            for factor, timings in bench_set(path, pool, args.repeat).items():
                wall = {k: v[0] for k, v in timings.items()}
                cpu = {k: v[1] for k, v in timings.items()}
                t = cpu if all(v > 0 for v in cpu.values()) else wall
                speedup = t["baseline"] / t["eyeful"]
                over_limit = t["eyeful"] / t["decode"]
                print(
                    f"q{quality} x{factor}: images/s wall (per CPU-second): "
                    + "  ".join(
                        f"{k} {args.count / wall[k]:5.1f} ({args.count / max(cpu[k], 1e-9):5.1f})"
                        for k in ("eyeful", "baseline", "decode")
                    )
                    + f"  | eyeful vs baseline {speedup:4.2f}x (wall "
                    f"{wall['baseline'] / wall['eyeful']:4.2f}x), eyeful / decode-only time "
                    f"{over_limit:4.2f}x (wall {wall['eyeful'] / wall['decode']:4.2f}x)"
                )
                if quality == 92 and factor in (4, 8) and speedup < 2.5:
                    failures.append(f"q{quality} x{factor}: {speedup:.2f}x < 2.5x baseline")
                if over_limit > 1.3:
                    failures.append(f"q{quality} x{factor}: {over_limit:.2f}x > 1.3x decode-only")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print("targets met" if not failures else "targets missed: " + "; ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
