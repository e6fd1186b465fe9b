"""Run nerfstudio 1.1.5's own ``ns-train`` (through the peer harness ``ns.py``) with a stage profile.

Runs with the *peer* interpreter (nerfstudio's environment), never the project's:

    NS_PEER_DIR=../shared/tools/nerfstudio-peer/train NS_STEP_LOG=steps.json \\
    NS_PROFILE_STEPS=20:23 NS_PROFILE_OUT=profile.json \\
        $PEER_PY bench/ns_peer.py train nerfacto --machine.device-type cpu ...

Everything of ``ns.py`` applies (``NS_STEP_LOG``, ``NS_BUDGET_S``); ``NS_CPU_LOG=FILE`` writes each
iteration's process CPU seconds and the peak RSS; and steps ``a`` to ``b - 1``
of ``NS_PROFILE_STEPS=a:b`` run under ``torch.profiler`` with nerfstudio's stages labelled as in
:mod:`bench.step_profile`, and the seconds per step by stage go to ``NS_PROFILE_OUT`` (JSON).
nerfstudio itself is not modified: its functions are wrapped, the maths is untouched.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.step_profile
sys.path.insert(0, os.environ["NS_PEER_DIR"])  # the harness: ns.py and its shim

import ns  # after the sys.path set-up above (it imports the CPU shim first)

from bench import step_profile


def _label_stages() -> None:
    """Mark nerfstudio's stages (same names as ours in bench.vs_nerfstudio)."""
    from nerfstudio.cameras import rays
    from nerfstudio.cameras.camera_optimizers import CameraOptimizer
    from nerfstudio.data.datamanagers import base_datamanager, parallel_datamanager
    from nerfstudio.engine.optimizers import Optimizers
    from nerfstudio.field_components import encodings, mlp
    from nerfstudio.model_components import ray_generators, ray_samplers, renderers
    from nerfstudio.models.nerfacto import NerfactoModel

    marks = [
        (parallel_datamanager.ParallelDataManager, "next_train", "loader"),
        (base_datamanager.VanillaDataManager, "next_train", "loader"),
        (ray_generators.RayGenerator, "forward", "rays"),
        (CameraOptimizer, "apply_to_raybundle", "rays"),
        (ray_samplers.ProposalNetworkSampler, "generate_ray_samples", "sampling"),
        (encodings.HashEncoding, "forward", "encoding"),
        (mlp.MLP, "forward", "mlp"),
        (rays.RaySamples, "get_weights", "render"),
        (renderers.RGBRenderer, "forward", "render"),
        (renderers.AccumulationRenderer, "forward", "render"),
        (renderers.DepthRenderer, "forward", "render"),
        (NerfactoModel, "get_metrics_dict", "loss"),
        (NerfactoModel, "get_loss_dict", "loss"),
        (Optimizers, "optimizer_scaler_step_some", "optimiser"),
        (Optimizers, "zero_grad_some", "optimiser"),
        (Optimizers, "scheduler_step_all", "optimiser"),
    ]
    for owner, attribute, stage in marks:
        step_profile.label(owner, attribute, stage)


def _profile_steps(first: int, stop: int, out: str) -> None:
    """Profile iterations ``first .. stop - 1`` and write seconds per step by stage to ``out``."""
    import torch
    from nerfstudio.engine import trainer

    iteration = trainer.Trainer.train_iteration
    state: dict[str, Any] = {}

    def profiled(self, step):  # noqa: ANN001, ANN202
        if step == first:
            prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            prof.start()
            state["prof"] = prof
        result = iteration(self, step)
        if step == stop - 1 and "prof" in state:
            prof = state.pop("prof")
            prof.stop()
            totals = step_profile.stage_seconds(prof.events())
            rows = step_profile.per_step(totals, stop - first)
            Path(out).write_text(json.dumps({"steps": [first, stop], "stages": rows}))
        return result

    trainer.Trainer.train_iteration = profiled


def _cpu_times(out: str) -> None:
    """Process CPU seconds at each iteration's start and end, and the peak RSS, to ``out``."""
    import resource
    import time

    from nerfstudio.engine import trainer

    iteration = trainer.Trainer.train_iteration
    starts: list[float] = []
    ends: list[float] = []

    def timed(self, step):  # noqa: ANN001, ANN202
        starts.append(time.process_time())
        result = iteration(self, step)
        ends.append(time.process_time())
        return result

    trainer.Trainer.train_iteration = timed

    def dump() -> None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        Path(out).write_text(json.dumps({"cpu_start": starts, "cpu_end": ends, "peak_rss": peak}))

    atexit.register(dump)


def main() -> None:
    verb, sys.argv = sys.argv[1], [f"ns-{sys.argv[1]}"] + sys.argv[2:]
    if verb != "train":
        sys.exit("usage: ns_peer.py train ARGS")
    ns._time_training()
    if os.environ.get("NS_CPU_LOG"):
        _cpu_times(os.environ["NS_CPU_LOG"])
    spec = os.environ.get("NS_PROFILE_STEPS")
    if spec:
        first, stop = (int(v) for v in spec.split(":"))
        _label_stages()
        _profile_steps(first, stop, os.environ["NS_PROFILE_OUT"])
    from nerfstudio.scripts.train import entrypoint

    atexit.register(sys.stdout.flush)
    sys.exit(entrypoint())


if __name__ == "__main__":  # nerfstudio's data workers re-import this file: keep work under here
    main()
