"""One timed run of our trainer, for ``bench.vs_nerfstudio`` (a fresh process per run).

Writes ``OUT/result.json``: per-step wall and process-CPU start/end times, peak RSS, and with
``--eval`` the held-out PSNR; with ``--profile a:b`` the seconds per step by stage of steps
``a .. b - 1`` (:mod:`bench.step_profile`; the profiled steps run slower and are left out of the
timing only if outside the timed window).

    python -m bench.ours_run DATA OUT [--rays 4096] [--steps 61] [--overrides JSON] [--eval]
                                 [--eval-images N]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

import torch

from bench import step_profile


def label_stages(model: torch.nn.Module | None = None) -> None:
    """Mark our stages with the names ``bench/ns_peer.py`` gives nerfstudio's."""
    from trainer_adapter.data import loader
    from trainer_adapter.model import encodings, nerfacto
    from trainer_adapter.optim import Optimizers

    marks: list[tuple[Any, str, str]] = [
        (loader.RayLoader, "next_batch", "loader"),
        (loader, "camera_rays", "rays"),
        (nerfacto.CameraOptimizer, "apply_to_rays", "rays"),
        (nerfacto, "uniform_spacing_bins", "sampling"),
        (nerfacto, "pdf_spacing_bins", "sampling"),
        (nerfacto, "spacing_to_euclidean", "sampling"),
        (nerfacto.RaySamples, "positions", "sampling"),
        (encodings.HashEncoding, "forward", "encoding"),
        (nerfacto, "render_weights", "render"),
        (nerfacto, "render_rgb", "render"),
        (nerfacto, "render_depth", "render"),
        (nerfacto.NerfactoModel, "loss_dict", "loss"),
        (Optimizers, "step", "optimiser"),
        (Optimizers, "zero_grad", "optimiser"),
    ]
    for owner, attribute, stage in marks:
        step_profile.label(owner, attribute, stage)
    original_init = nerfacto.NerfactoModel.__init__

    def init(self: nerfacto.NerfactoModel, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        for module in self.modules():  # the MLPs are nn.Sequential
            if isinstance(module, torch.nn.Sequential):
                step_profile.label(module, "forward", "mlp")

    nerfacto.NerfactoModel.__init__ = init  # type: ignore[method-assign]


def main() -> None:
    from trainer_adapter.evaluate import evaluate
    from trainer_adapter.trainer import train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--rays", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=61)
    parser.add_argument("--overrides", default="{}")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--eval", action="store_true")
    parser.add_argument("--eval-images", type=int, default=0, help="held-out images (0: all)")
    args = parser.parse_args()
    first, stop = (int(v) for v in args.profile.split(":")) if args.profile else (-1, -1)
    if args.profile:
        label_stages()
    marks: dict[str, list[float]] = {"start": [], "end": [], "cpu_start": [], "cpu_end": []}
    profiler: dict[str, Any] = {}

    def report(step: int, _total: int, _stats: dict[str, float]) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        marks["end"].append(now)
        marks["cpu_end"].append(cpu)
        if step + 1 == first:
            profiler["p"] = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            profiler["p"].start()
        if step + 1 == stop and "p" in profiler:
            profiler["p"].stop()
            totals = step_profile.stage_seconds(profiler["p"].events())
            profiler["stages"] = step_profile.per_step(totals, stop - first)
        marks["start"].append(time.perf_counter())
        marks["cpu_start"].append(time.process_time())

    marks["start"].append(time.perf_counter())  # step 0 also pays the set-up: not timed
    marks["cpu_start"].append(time.process_time())
    overrides = {"train_num_rays_per_batch": args.rays, **json.loads(args.overrides)}
    result = train(
        args.data,
        preset="nerfacto",
        max_steps=args.steps,
        output_dir=args.out,
        device="cpu",
        overrides=overrides,
        timestamp="t0",
        report=report,
    )
    summary: dict[str, Any] = {k: v[: len(marks["end"])] for k, v in marks.items()}
    summary["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    summary["stages"] = profiler.get("stages")
    if args.eval:
        images = args.eval_images or None
        psnr = evaluate(result.run_dir, device="cpu", max_images=images).results["psnr"]
        summary["psnr"] = None if psnr is None else float(psnr)
    (args.out / "result.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
