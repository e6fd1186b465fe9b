"""Peak RSS of ``eyeful eval`` against training the same run, at a large image size (issue 17).

    python -m bench.eval_memory [--size 5784x8660] [--images 6] [--workdir DIR]

Writes ``--images`` JPEGs of ``--size`` (one held out; a real capture has hundreds, so the
training pool fills its ``cache_bytes``), trains a run for 2 steps on them and
evaluates its test image, each in its own subprocess (VmHWM is the process's own), then does
the same at half the size. The model is Nerfacto with few samples and small grids
(``CHEAP``) so that rendering tens of millions of rays takes minutes on a CPU: the eval chunk
follows a byte budget whatever the model, so what this measures is what grows with the image
(decoding, rays, the render, metrics, PNGs). Targets: eval peaks at most at training's peak,
and grows by at most ``MAX_BYTES_PER_PIXEL`` per added pixel. Exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

#: Nerfacto with few samples and small grids: the pipeline around the model is what is measured
CHEAP = {
    "num_proposal_samples_per_ray": [2, 2],
    "num_nerf_samples_per_ray": 2,
    "num_levels": 2,
    "max_res": 64,
    "log2_hashmap_size": 12,
    "proposal_net_args_list": [
        {"hidden_dim": 8, "log2_hashmap_size": 10, "num_levels": 1, "max_res": 16},
        {"hidden_dim": 8, "log2_hashmap_size": 10, "num_levels": 1, "max_res": 16},
    ],
    "hidden_dim": 16,
    "hidden_dim_color": 16,
    "appearance_embed_dim": 4,
    "camera_optimizer": "off",
    "train_num_rays_per_batch": 16384,
}
#: the render (float32, 12 B), ground truth as decoded (3) and float32 (12), mask (1): 28, plus
#: what the heap keeps of the bands (measured: 29.4 from 3.1 to 50 MP and from 0.7 to 2.8 MP)
MAX_BYTES_PER_PIXEL = 40

_PEAK = """
import json, sys, time
def peak_bytes():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
tic = time.perf_counter()
"""
_TRAIN = """
from trainer_adapter.trainer import train
result = train(sys.argv[1], preset="nerfacto", max_steps=2, output_dir=sys.argv[2], device="cpu",
               timestamp="t", overrides=json.loads(sys.argv[3]))
print(json.dumps({"peak": peak_bytes(), "run": str(result.run_dir),
                  "seconds": time.perf_counter() - tic}))
"""
_EVAL = """
from trainer_adapter.evaluate import evaluate
result = evaluate(sys.argv[1], device="cpu")
print(json.dumps({"peak": peak_bytes(), "seconds": time.perf_counter() - tic,
                  "psnr": result.results["psnr"], "ssim": result.results["ssim"]}))
"""


def make_dataset(root: Path, width: int, height: int, count: int) -> Path:
    """``count`` JPEGs on a ring looking inwards; the last one is the test image."""
    import cv2

    from eyeful_tools.cameras import Camera, CameraModel, Frame, Scene, WorldUp
    from eyeful_tools.imageio import write_image
    from eyeful_tools.transforms import scene_to_transforms, write_transforms
    from trainer_adapter.render import look_at

    camera = Camera(
        model=CameraModel.PINHOLE,
        width_px=width,
        height_px=height,
        fx=0.8 * height,
        fy=0.8 * height,
        cx=width / 2,
        cy=height / 2,
    )
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (max(1, height // 64), max(1, width // 64), 3), dtype=np.uint8)
    frames = []
    for i in range(count):
        name = f"images/img_{i:02d}.jpg"
        if not (root / name).is_file():
            image = cv2.resize(np.roll(base, i, axis=1), (width, height))
            write_image(root / name, image, jpeg_quality=90)
        angle = 2 * np.pi * i / count
        eye = np.array([2 * np.cos(angle), 2 * np.sin(angle), 0.3])
        pose = look_at(eye, np.zeros(3), np.array([0.0, 0.0, 1.0]))
        frames.append(Frame(image_path=name, camera=camera, world_from_cam=pose))
    names = [f.image_path for f in frames]
    scene = Scene(
        frames=tuple(frames),
        world_up=WorldUp.Z_UP,
        splits={"train": names[:-1], "val": names[-1:], "test": names[-1:]},
    )
    write_transforms(root / "transforms.json", scene_to_transforms(scene))
    return root


def _run(script: str, *args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    done = subprocess.run(
        [sys.executable, "-c", _PEAK + script, *args], capture_output=True, text=True, env=env
    )
    if done.returncode:
        raise SystemExit(f"error: subprocess failed\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(workdir: Path, width: int, height: int, images: int) -> dict:
    """Train and evaluate at one size; peaks in bytes, times in seconds."""
    data = make_dataset(workdir / f"data_{width}x{height}", width, height, images)
    trained = _run(_TRAIN, str(data), str(workdir / f"runs_{width}x{height}"), json.dumps(CHEAP))
    evaluated = _run(_EVAL, trained["run"])
    return {"pixels": width * height, "train": trained, "eval": evaluated}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1368x2048", help="WIDTHxHEIGHT (8K: 5784x8660)")
    parser.add_argument(
        "--images", type=int, default=16, help="enough that training's pool fills its cache"
    )
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        small = measure(workdir, width // 2, height // 2, args.images)
        large = measure(workdir, width, height, args.images)
    mib = 2**20
    for name, result in (("small", small), ("large", large)):
        print(
            f"{name} {result['pixels'] / 1e6:.1f} MP: train peak "
            f"{result['train']['peak'] / mib:.0f} MiB, eval peak "
            f"{result['eval']['peak'] / mib:.0f} MiB "
            f"(eval/train {result['eval']['peak'] / result['train']['peak']:.2f}), "
            f"eval {result['eval']['seconds']:.0f} s"
        )
    growth = (large["eval"]["peak"] - small["eval"]["peak"]) / (large["pixels"] - small["pixels"])
    print(f"eval peak growth: {growth:.1f} bytes per added pixel (target <= {MAX_BYTES_PER_PIXEL})")
    ok = growth <= MAX_BYTES_PER_PIXEL and all(
        r["eval"]["peak"] <= r["train"]["peak"] for r in (small, large)
    )
    print("targets met" if ok else "target missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
