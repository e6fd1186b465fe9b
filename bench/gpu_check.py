"""``make gpu-check``: the CUDA path end to end, in under 6 minutes on one GPU.

Steps, each timed; the first failure prints ``FAIL <step>: <why>`` and exits 1:

1. ``env``: torch, CUDA devices, whether tiny-cuda-nn imports;
2. ``tests``: ``pytest -m gpu tests/test_gpu.py`` (on CUDA every test must pass, none skip);
3. ``data``: the synthetic v2 capture, converted;
4. ``train``: ``--preset nerfacto`` for 2,000 steps with fp16 autocast (the preset's
   mixed precision on CUDA);
5. ``eval``: held-out PSNR and SSIM of that run;
6. ``resume``: ``--load-dir`` of that run extended by 100 steps;
7. ``ddp``: ``torchrun`` over all visible GPUs (nccl), 100 steps.

Then one summary: steps/s, rays/s, peak memory, held-out PSNR, which hash grid ran.

``GPU_CHECK_DEVICE=cpu`` is a dry run of the same steps on the CPU (the ``tiny`` preset, a few
steps, DDP as two gloo processes) to prove the script where no GPU is at hand.

    python -m bench.gpu_check                  # (bench/gpu_check.sh installs .whl/ first)
    GPU_CHECK_DEVICE=cpu python -m bench.gpu_check
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 360.0


@dataclass(frozen=True)
class Plan:
    """What the check runs on one kind of device."""

    device: str
    preset: str
    train_steps: int
    resume_steps: int
    ddp_steps: int
    synth_size: tuple[int, int]  # images-jpeg-2k (width, height); the v2 rig is portrait
    positions: int


CUDA_PLAN = Plan("cuda", "nerfacto", 2000, 100, 100, (240, 360), 6)
DRY_PLAN = Plan("cpu", "tiny", 12, 4, 3, (96, 144), 4)


def _env(plan: Plan, facts: dict[str, Any]) -> None:
    import torch

    from trainer_adapter.model.encodings import tcnn_available

    facts["torch"] = torch.__version__
    facts["tcnn_importable"] = tcnn_available()
    if plan.device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("torch.cuda.is_available() is False (set GPU_CHECK_DEVICE=cpu?)")
        facts["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    print(f"  torch {facts['torch']}, devices {facts.get('gpus', ['cpu'])}, "
          f"tiny-cuda-nn importable: {facts['tcnn_importable']}")  # fmt: skip


def _tests(plan: Plan, facts: dict[str, Any]) -> None:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu",
               "-rs", str(ROOT / "tests" / "test_gpu.py")]  # fmt: skip
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    print(f"  {last}")
    if proc.returncode != 0:
        raise RuntimeError(f"pytest exit {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr}")
    if plan.device == "cuda" and "skipped" in last:
        raise RuntimeError(f"gpu tests skipped on a CUDA machine: {last}")


def _data(plan: Plan, facts: dict[str, Any]) -> None:
    from eyeful_tools.convert import convert_capture
    from eyeful_tools.synth import synthesize

    capture = Path(facts["work"]) / "synth-v2"
    synthesize(capture, rig="v2", positions=plan.positions, size=plan.synth_size)
    convert_capture(capture, resolutions=["jpeg_2k"])
    facts["data"] = str(capture / "images-jpeg-2k")


def _train(plan: Plan, facts: dict[str, Any]) -> None:
    from trainer_adapter import device as devices
    from trainer_adapter.trainer import train

    result = train(facts["data"], preset=plan.preset, max_steps=plan.train_steps,
                   device=plan.device, output_dir=Path(facts["work"]) / "out",
                   timestamp="train")  # fmt: skip
    config = json.loads((result.run_dir / "config.json").read_text())
    options = config["options"]
    amp = devices.autocast_dtype(
        __import__("torch").device(plan.device), options["optim"]["mixed_precision"]
    )
    if plan.device == "cuda" and str(amp) != "torch.float16":
        raise RuntimeError(f"expected fp16 autocast on CUDA, the run used {amp}")
    rays = result.stats.get("mean_rays_per_sec", result.stats.get("rays_per_sec", 0.0))
    facts.update(run_dir=str(result.run_dir), last_step=result.last_step,
                 rays_per_sec=rays, steps_per_sec=rays / options["loader"]["train_num_rays_per_batch"],
                 peak_memory_mb=result.stats["peak_memory_mb"], autocast=str(amp),
                 hash_grid=config["facts"]["hash_grid"], train_psnr=result.stats.get("psnr"))  # fmt: skip
    if result.last_step != plan.train_steps - 1:
        raise RuntimeError(f"stopped at step {result.last_step}")


def _eval(plan: Plan, facts: dict[str, Any]) -> None:
    import math

    from trainer_adapter.evaluate import evaluate

    results = evaluate(facts["run_dir"], device=plan.device).results
    facts.update(psnr=results["psnr"], ssim=results["ssim"])
    print(f"  held-out psnr {results['psnr']:.2f} dB, ssim {results['ssim']:.3f}")
    if not all(math.isfinite(results[k] or math.nan) for k in ("psnr", "ssim")):
        raise RuntimeError(f"non-finite metrics {results}")


def _resume(plan: Plan, facts: dict[str, Any]) -> None:
    from trainer_adapter.trainer import train

    target = plan.train_steps + plan.resume_steps
    result = train(facts["data"], load_dir=facts["run_dir"], max_steps=target, device=plan.device,
                   output_dir=Path(facts["work"]) / "out", timestamp="resume")  # fmt: skip
    if result.last_step != target - 1:
        raise RuntimeError(f"resumed run stopped at step {result.last_step}, not {target - 1}")


def _ddp(plan: Plan, facts: dict[str, Any]) -> None:
    import torch

    procs = torch.cuda.device_count() if plan.device == "cuda" else 2
    out = Path(facts["work"]) / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", str(procs), "-m", "bench.gpu_check", "--ddp-worker",
               "--data", facts["data"], "--out", str(out), "--steps", str(plan.ddp_steps),
               "--device", plan.device, "--preset", plan.preset]  # fmt: skip
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun exit {proc.returncode}:\n{proc.stderr[-3000:]}")
    config = json.loads(next(out.glob("*/*/*/config.json")).read_text())
    facts_ddp = config["facts"]
    if not facts_ddp["distributed"] or facts_ddp["world_size"] != procs:
        raise RuntimeError(f"expected DDP over {procs} process(es), the run found {facts_ddp}")
    print(f"  {procs} process(es), {plan.ddp_steps} steps")


STEPS: list[tuple[str, Callable[[Plan, dict[str, Any]], None]]] = [
    ("env", _env), ("tests", _tests), ("data", _data), ("train", _train), ("eval", _eval),
    ("resume", _resume), ("ddp", _ddp),
]  # fmt: skip


def _summary(plan: Plan, facts: dict[str, Any], seconds: float) -> str:
    grid = {"tcnn": "tiny-cuda-nn", "torch": "the torch one"}.get(facts.get("hash_grid", ""), "?")
    return (
        f"gpu-check {plan.device} ({plan.preset}, {plan.train_steps} steps, {facts['autocast']}):"
        f" {facts['steps_per_sec']:.1f} steps/s, {facts['rays_per_sec']:.0f} rays/s, peak memory"
        f" {facts['peak_memory_mb']:.0f} MiB, held-out psnr {facts['psnr']:.2f} dB; hash grid:"
        f" {grid}; {seconds:.0f} s"
    )


def run_check(plan: Plan) -> int:
    started = time.perf_counter()
    facts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="eyeful-gpu-check-") as work:
        facts["work"] = work
        for name, step in STEPS:
            tic = time.perf_counter()
            print(f"[{name}]", flush=True)
            try:
                step(plan, facts)
            except Exception as error:  # every failure is reported the same way
                print(f"FAIL {name}: {error.__class__.__name__}: {error}", flush=True)
                return 1
            print(f"  ok in {time.perf_counter() - tic:.1f} s", flush=True)
    seconds = time.perf_counter() - started
    print(_summary(plan, facts, seconds))
    if plan.device == "cuda" and seconds > BUDGET_S:
        print(f"FAIL budget: {seconds:.0f} s is over {BUDGET_S:.0f} s")
        return 1
    return 0


def _ddp_worker(args: argparse.Namespace) -> int:
    from trainer_adapter.trainer import train

    train(args.data, preset=args.preset, max_steps=args.steps, device=args.device,
          output_dir=args.out, timestamp="ddp")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--device", help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ddp_worker:
        return _ddp_worker(args)
    device = os.environ.get("GPU_CHECK_DEVICE", "cuda")
    if device not in ("cuda", "cpu"):
        print(f"FAIL env: GPU_CHECK_DEVICE must be cuda or cpu, got {device!r}")
        return 1
    return run_check(CUDA_PLAN if device == "cuda" else DRY_PLAN)


if __name__ == "__main__":
    sys.exit(main())
