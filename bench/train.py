"""Trainer speed and quality on CPU: before vs after the CPU speed work, same run, same machine.

Variants (identical maths, different kernels):

* ``before``: nerfstudio's torch layout: one dense-gradient gather per hash corner, foreach Adam.
* ``fused``: all 8 corners in one gather + fused (single-kernel) Adam: the default.
* ``sparse``: fused gather + sparse row-wise table gradients + lazy Adam (SparseAdam) on tables.
* ``bf16``: ``fused`` under bf16 autocast (MLPs in bf16; hash gathers stay fp32).
* ``compiled``: ``fused`` with ``--compile``'s fused hash-grid kernels (C++ on CPU; not in the
  default list: building them takes about 40 s once; ``--variants before,fused,compiled``).

Part 1 times model steps (random rays, no data loading) for ``tiny`` and ``nerfacto`` and prints
steps/s, rays/s and the ratio to ``before``. Part 2 trains ``tiny`` on the synthetic v2 capture
for a fixed wall-clock budget per variant and prints the held-out PSNR. Part 3 is the cost of
``eyeful train --viewer``: steps/s of the same ``tiny`` run with and without the viewer (runs
alternate off/on/on/off), printed as a ratio; the target is >= 0.9 (exit 1 when missed).

    python -m bench.train [--steps 6] [--budget 60] [--nerfacto-rays 256] [--skip-quality]
                          [--viewer-steps 300] [--skip-viewer | --viewer-only]
"""

from __future__ import annotations

import argparse
import functools
import math
import operator
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer_adapter import device as devices
from trainer_adapter.model.nerfacto import NerfactoModel
from trainer_adapter.optim import make_optimizers
from trainer_adapter.presets import make_options

VARIANTS: dict[str, dict[str, object]] = {
    "before": {"fused_gather": False, "fused_adam": False, "sparse_grad": False},
    "fused": {"fused_gather": True, "fused_adam": True, "sparse_grad": False},
    "sparse": {"fused_gather": True, "fused_adam": True, "sparse_grad": True},
    "bf16": {
        "fused_gather": True,
        "fused_adam": True,
        "sparse_grad": False,
        "cpu_autocast_bf16": True,
    },
    "compiled": {"fused_gather": True, "fused_adam": True, "compile_encodings": True},
}


class _Stepper:
    """One variant's model, optimizers and scaler; ``step()`` times one training step."""

    def __init__(self, preset: str, variant: str, rays: int) -> None:
        torch.manual_seed(0)
        self.cpu = torch.device("cpu")
        options = make_options(preset, implementation="torch", **VARIANTS[variant])
        self.model = NerfactoModel(options.model, num_train_images=16).train()
        self.optimizers = make_optimizers(self.model, options.optim, self.cpu)
        cpu_bf16 = options.optim.cpu_autocast_bf16
        self.amp = devices.autocast_dtype(self.cpu, False, cpu_bf16=cpu_bf16)
        self.scaler = devices.grad_scaler(self.cpu, self.amp)
        self.rays = rays
        self.count = 0

    def step(self) -> float:
        rays = self.rays
        origins = torch.randn(rays, 3) * 0.3
        directions = torch.nn.functional.normalize(torch.randn(rays, 3), dim=-1)
        index = torch.randint(0, 16, (rays,))
        gt = torch.rand(rays, 3)
        tic = time.perf_counter()
        with devices.autocast(self.cpu, self.amp):
            out = self.model(origins, directions, index, step=self.count)
            loss = functools.reduce(operator.add, self.model.loss_dict(out, gt).values())
        self.scaler.scale(loss).backward()
        self.optimizers.step(self.scaler)
        self.optimizers.zero_grad()
        self.count += 1
        return time.perf_counter() - tic


def time_variants(
    preset: str, variants: list[str], rays: int, steps: int, warmup: int = 2
) -> dict[str, float]:
    """Median seconds per training step (forward, losses, backward, optimizer) per variant.

    Variants take turns step by step, so load from other processes hits all of them alike.
    """
    steppers = {v: _Stepper(preset, v, rays) for v in variants}
    times: dict[str, list[float]] = {v: [] for v in variants}
    for i in range(warmup + steps):
        for variant, stepper in steppers.items():
            seconds = stepper.step()
            if i >= warmup:
                times[variant].append(seconds)
    return {v: sorted(t)[len(t) // 2] for v, t in times.items()}


def _synthetic_dataset(work: Path) -> Path:
    """The synthetic v2 capture (4 positions, 96x144) converted under ``work``: the same small
    dataset for the quality and viewer parts, so their numbers describe the same training."""
    from eyeful_tools.convert import convert_capture
    from eyeful_tools.synth import synthesize

    synthesize(work / "cap", rig="v2", positions=4, size=(96, 144), supersample=1)
    convert_capture(work / "cap", resolutions=["jpeg_2k"])
    return work / "cap" / "images-jpeg-2k"


def quality(budget_s: float, variants: list[str]) -> None:
    from trainer_adapter.evaluate import evaluate
    from trainer_adapter.trainer import train

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    try:
        data = _synthetic_dataset(work)
        print(f"\nheld-out PSNR after {budget_s:.0f} s of training (tiny, synthetic v2, 96x144)")
        for variant in variants:
            overrides = dict(VARIANTS[variant])
            result = train(
                data,
                preset="tiny",
                output_dir=work / "out",
                device="cpu",
                overrides=overrides,
                timestamp=variant,
                time_budget_s=budget_s,
            )
            metrics = evaluate(result.run_dir, device="cpu").results
            print(
                f"  {variant:7s} steps {result.last_step + 1:5d}  psnr {metrics['psnr']:.2f} dB"
                f"  ssim {metrics['ssim']:.3f}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


VIEWER_TARGET = 0.9


class _OrbitingBrowser:
    """What the viewer sees of a browser whose user keeps looking around: the camera orbits the
    scene in steps of 0.25 s for 2 s, then stays still for 2 s (so preview and full frames both
    happen), and frames go to the server's scene (JPEG-encoded as for a real browser). No
    browser process runs: on a real set-up it runs on the user's machine."""

    fov = math.radians(50.0)
    aspect = 4 / 3
    update_timestamp = 1.0

    def __init__(self, server: Any, centre: np.ndarray, radius: float) -> None:
        self.scene = server.scene
        self.camera = self
        self.centre, self.radius = centre, radius
        self.started = time.perf_counter()

    def _pose(self) -> np.ndarray:
        from trainer_adapter.render import look_at

        elapsed = time.perf_counter() - self.started
        moves = math.floor(elapsed / 4) * 8 + min(8, math.floor((elapsed % 4) / 0.25))
        angle = moves * math.pi / 16
        eye = self.centre + self.radius * np.array([math.cos(angle), math.sin(angle), 0.5])
        return look_at(eye, self.centre, np.array([0.0, 0.0, 1.0]))

    @property
    def wxyz(self) -> np.ndarray:
        import viser.transforms as vtf

        return np.asarray(vtf.SO3.from_matrix(self._pose()[:3, :3]).wxyz)

    @property
    def position(self) -> np.ndarray:
        return self._pose()[:3, 3]

    def on_update(self, _callback: Any) -> None:
        pass


class _Clock:
    """Wall-clock steps/s between the log call at ``from_step`` and the last one: everything
    training waits for counts, the viewer's weight copies included (the trainer's own rays/s
    leaves observer time out)."""

    def __init__(self, from_step: int) -> None:
        self.from_step = from_step
        self.first: tuple[int, float] | None = None
        self.last: tuple[int, float] | None = None

    def on_step(self, trainer: Any, step: int, stats: Any) -> None:
        if step >= self.from_step:
            self.last = (step, time.perf_counter())
            self.first = self.first or self.last

    def on_end(self, trainer: Any) -> None:
        pass

    def steps_per_sec(self) -> float:
        assert self.first is not None and self.last is not None and self.last > self.first
        return (self.last[0] - self.first[0]) / (self.last[1] - self.first[1])


def _viewer_run(data: Path, out: Path, name: str, steps: int, viewer: bool) -> float:
    """Wall-clock steps/s of a tiny run, with or without it shown in a viewer that one
    (emulated) browser is looking at (the first tenth of the steps left out)."""
    from eyeful_tools.view.content import load_content
    from eyeful_tools.view.server import start_viewer
    from trainer_adapter.live_render import TrainingView
    from trainer_adapter.trainer import train

    observers: list[Any] = []
    server = None
    if viewer:
        content = load_content(data / "transforms.json")
        server = start_viewer(content, port=8090).server
        centres = np.stack([v.world_from_cam[:3, 3] for v in content.cameras])
        browser = _OrbitingBrowser(server, centres.mean(axis=0), 2.0 * float(np.ptp(centres)))
        observers.append(TrainingView(server, clients=lambda: {0: browser}))
    clock = _Clock(steps // 10)
    observers.append(clock)  # last: the viewer's time in its on_step is counted
    try:
        train(
            data,
            preset="tiny",
            max_steps=steps,
            output_dir=out,
            device="cpu",
            timestamp=name,
            observers=observers,
            steps_per_save=10 * steps,
            curves=False,
        )
    finally:
        if server is not None:
            server.stop()
    if viewer:
        live = observers[0].live
        print(f"    (viewer: {live.renders if live else 0} frames rendered)")
    return clock.steps_per_sec()


def viewer_cost(steps: int) -> bool:
    """Steps/s with ``--viewer`` over steps/s without; True when it meets the target."""
    work = Path(tempfile.mkdtemp(prefix="bench-viewer-"))
    try:
        data = _synthetic_dataset(work)
        print(f"\ntrain --viewer cost (tiny, {steps} steps, synthetic v2 96x144, CPU)")
        rates: dict[bool, list[float]] = {False: [], True: []}
        for round_, viewer in enumerate((False, True, True, False)):  # ABBA: drift cancels
            rate = _viewer_run(data, work / "out", f"r{round_}", steps, viewer)
            rates[viewer].append(rate)
            print(f"  {'with' if viewer else 'without':7s} viewer  {rate:6.2f} steps/s")
        ratio = sum(rates[True]) / sum(rates[False])
        ok = ratio >= VIEWER_TARGET
        verdict = "ok" if ok else "MISSED"
        print(f"  steps/s with / without viewer: {ratio:.3f} (target >= {VIEWER_TARGET}) {verdict}")
        return ok
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--tiny-rays", type=int, default=512)
    parser.add_argument("--nerfacto-rays", type=int, default=256)
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--variants", default="before,fused,sparse,bf16")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--viewer-steps", type=int, default=300)
    parser.add_argument("--skip-viewer", action="store_true")
    parser.add_argument("--viewer-only", action="store_true", help="only part 3")
    args = parser.parse_args()
    if args.viewer_only:
        sys.exit(0 if viewer_cost(args.viewer_steps) else 1)
    variants = args.variants.split(",")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    for preset, rays in (("tiny", args.tiny_rays), ("nerfacto", args.nerfacto_rays)):
        medians = time_variants(preset, variants, rays, args.steps)
        base = medians[variants[0]]
        for variant, seconds in medians.items():
            print(
                f"{preset:9s} {variant:7s} rays {rays:5d}  {1 / seconds:6.2f} steps/s "
                f"{rays / seconds:8.0f} rays/s  speed-up x{base / seconds:.2f}"
            )
    if not args.skip_quality:
        quality(args.budget, variants)
    if not args.skip_viewer and not viewer_cost(args.viewer_steps):
        sys.exit(1)


if __name__ == "__main__":
    main()
