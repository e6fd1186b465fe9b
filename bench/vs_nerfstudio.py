"""Our trainer against nerfstudio 1.1.5 itself: same data, same threads, one after the other.

nerfstudio runs in its own environment (``../shared/tools/nerfstudio-peer/train``, built by its
``setup.sh``), never as a project dependency; it is driven by ``bench/ns_peer.py``. Each tool
trains in a fresh subprocess with ``OMP_NUM_THREADS`` set to ``--threads``; runs alternate
(ns, ours, ours-fast, ns, ...) for ``--rounds`` rounds, so a change of machine load hits both.

Printed per tool: mean wall s/step and mean process-CPU s/step over steps ``--from`` to
``--steps - 1``, profiled steps left out (nerfstudio skips its first steps the same way). A mean,
not a median: from step 10 both tools update the proposal networks every other step, and an
update step costs about twice the other, so the median of a window lands on either kind
depending on its phase. Also printed: the speed ratio to nerfstudio,
peak RSS of the training process (nerfstudio's ray-generation worker process not included), the
load average around each run, and the held-out PSNR at the same step count (``--eval``; the
held-out split of the dataset: ``val_filenames`` for nerfstudio, ``test_filenames`` for us, the
same images in data written by ``eyeful convert``; ``--eval-images N`` limits both lists to their
first N images, in a copy of the dataset's ``transforms.json`` beside links to its images).

Targets (nerfacto defaults on CPU): ``identical`` (our default, identical maths) >= 1.5x
nerfstudio's steps/s; ``fast`` (the CPU options of ``--fast``) >= 3x, with PSNR within 0.2 dB of
``identical``. Exits 1 when a target is missed. On a loaded machine the CPU-time ratio is the
more trustworthy one; both are printed and the wall ratio decides.

    python -m bench.vs_nerfstudio [--data DIR]... [--rays 4096] [--steps 61] [--rounds 1]
                                  [--threads 2] [--eval] [--eval-images N] [--profile 22:25]
                                  [--no-nerfstudio] [--size 322x480]

``--no-nerfstudio`` runs ours only (no peer environment needed): ratios are then to our
``identical`` run, the PSNR check of ``fast`` against ``identical`` at equal steps still applies,
and the speed targets are translated with :data:`LAST_IDENTICAL_RATIO` (identical / nerfstudio,
last measured side by side): ``fast`` must reach ``3 / LAST_IDENTICAL_RATIO`` x ``identical``.

Fewer rays (``--rays 1024``) make a quick check: every stage but the optimiser's table update
scales with the rays, so ratios at fewer rays understate our speed-up at 4096 slightly.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: ``../shared`` of the checkout (a worktree under ``wt/`` looks one level further up)
PEER_DIR = (
    next(
        (p for p in (ROOT.parent / "shared", ROOT.parent.parent / "shared") if p.is_dir()),
        ROOT.parent / "shared",
    )
    / "tools"
    / "nerfstudio-peer"
    / "train"
)
PEER_PYTHON = Path.home() / ".cache" / "eyeful-peer" / "train-venv" / "bin" / "python"
#: our variants: config overrides on top of the nerfacto preset
VARIANTS: dict[str, dict[str, object]] = {
    "identical": {},
    "fast": {"compile_encodings": True},
    # single CPU options, for measuring each (``--variants identical,sparse,bf16``)
    "sparse": {"sparse_grad": True},
    "bf16": {"cpu_autocast_bf16": True},
}
TARGETS = {"identical": 1.5, "fast": 3.0}
PSNR_TOLERANCE_DB = 0.2
#: our identical-maths steps/s over nerfstudio's, last measured side by side (docs/train.md)
LAST_IDENTICAL_RATIO = 1.77


@dataclass
class Run:
    """One training run's measurements."""

    wall: list[float] = field(default_factory=list)  # s/step, timed steps
    cpu: list[float] = field(default_factory=list)
    peak_rss: int = 0
    load: tuple[float, float] = (0.0, 0.0)
    psnr: float | None = None
    stages: dict[str, float] | None = None


def synthetic_dataset(work: Path, size: tuple[int, int] = (322, 480)) -> Path:
    """The synthetic v2 capture (48 images: 42 train, 6 held out), converted."""
    from eyeful_tools.convert import convert_capture
    from eyeful_tools.synth import synthesize

    synthesize(work / "synth", rig="v2", positions=6, size=size, supersample=1)
    convert_capture(work / "synth", resolutions=["jpeg_2k"])
    return work / "synth" / "images-jpeg-2k"


def held_out_subset(data: Path, images: int, work: Path) -> Path:
    """``data`` with only its first ``images`` held-out images (``val_filenames`` and
    ``test_filenames``; training images unchanged): ``ns-eval`` has no image limit, and at
    nerfacto's 32768-ray eval chunk it takes minutes an image on a CPU."""
    tag = hashlib.sha1(str(data.resolve()).encode()).hexdigest()[:8]  # same-named datasets
    subset = work / f"{data.name}-{tag}-held-out-{images}"
    subset.mkdir(parents=True)
    for entry in data.iterdir():
        if entry.name != "transforms.json":
            (subset / entry.name).symlink_to(entry.resolve())
    transforms = json.loads((data / "transforms.json").read_text())
    for key in ("val_filenames", "test_filenames"):
        if key not in transforms:
            raise SystemExit(f"error: {data / 'transforms.json'}: no {key} to limit")
        transforms[key] = transforms[key][:images]
    (subset / "transforms.json").write_text(json.dumps(transforms, indent=2))
    return subset


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = str(ROOT)
    return env


def _timed(starts: list[float], ends: list[float], args: argparse.Namespace) -> list[float]:
    """Seconds of steps ``--from`` on, leaving out the profiled ones (the profiler slows them)."""
    a, b = (int(v) for v in args.profile.split(":")) if args.profile else (0, 0)
    times = [e - s for s, e in zip(starts, ends, strict=True)]
    return [t for step, t in enumerate(times) if step >= args.first and not a <= step < b]


def run_nerfstudio(data: Path, out: Path, args: argparse.Namespace) -> Run:
    """nerfstudio's own ``ns-train nerfacto`` (and ``ns-eval`` with ``--eval``)."""
    out.mkdir(parents=True, exist_ok=True)
    env = _env(args.threads) | {
        "NS_PEER_DIR": str(args.peer_dir),
        "NS_STEP_LOG": str(out / "steps.json"),
        "NS_CPU_LOG": str(out / "cpu.json"),
    }
    if args.profile:
        env |= {"NS_PROFILE_STEPS": args.profile, "NS_PROFILE_OUT": str(out / "profile.json")}
    command = [
        str(args.peer_python), str(ROOT / "bench" / "ns_peer.py"), "train", "nerfacto",
        "--machine.device-type", "cpu", "--vis", "tensorboard", "--output-dir", str(out),
        "--experiment-name", "bench", "--timestamp", "t0", "--steps-per-eval-batch", "0",
        "--steps-per-eval-image", "0", "--steps-per-eval-all-images", "0",
        "--max-num-iterations", str(args.steps), "--steps-per-save", str(10 * args.steps),
        "--pipeline.datamanager.train-num-rays-per-batch", str(args.rays),
        # ns-eval's chunk (stored in config.yml; training never uses it): nerfacto's 32768 rays
        # grew ns-eval past 11 GB and 11 minutes without finishing 2 images at 322x480 here
        "--pipeline.model.eval-num-rays-per-chunk", str(args.rays),
        "nerfstudio-data", "--data", str(data),
    ]  # fmt: skip
    load_before = os.getloadavg()[0]
    _check(subprocess.run(command, env=env, cwd=out, capture_output=True, text=True), "ns-train")
    run = Run(load=(load_before, os.getloadavg()[0]))
    steps = json.loads((out / "steps.json").read_text())
    cpu = json.loads((out / "cpu.json").read_text())
    run.wall = _timed(steps["start"], steps["end"], args)
    run.cpu = _timed(cpu["cpu_start"], cpu["cpu_end"], args)
    run.peak_rss = int(cpu["peak_rss"])
    if args.profile:
        run.stages = json.loads((out / "profile.json").read_text())["stages"]
    if args.eval:
        config = out / "bench" / "nerfacto" / "t0" / "config.yml"
        metrics = out / "metrics.json"
        eval_command = [str(args.peer_python), str(args.peer_dir / "ns.py"), "eval"]
        eval_command += ["--load-config", str(config), "--output-path", str(metrics)]
        _check(
            subprocess.run(eval_command, env=env, cwd=out, capture_output=True, text=True),
            "ns-eval",
        )
        run.psnr = float(json.loads(metrics.read_text())["results"]["psnr"])
    return run


def run_ours(data: Path, out: Path, variant: str, args: argparse.Namespace) -> Run:
    """Our trainer in a fresh process (``bench.ours_run``), same data and threads."""
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "bench.ours_run", str(data), str(out)]
    command += ["--rays", str(args.rays), "--steps", str(args.steps)]
    command += ["--overrides", json.dumps(VARIANTS[variant])]
    if args.profile:
        command += ["--profile", args.profile]
    if args.eval:
        command += ["--eval", "--eval-images", str(args.eval_images)]
    load_before = os.getloadavg()[0]
    env = _env(args.threads)
    _check(subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True), "ours")
    result = json.loads((out / "result.json").read_text())
    run = Run(load=(load_before, os.getloadavg()[0]), peak_rss=int(result["peak_rss"]))
    run.wall = _timed(result["start"], result["end"], args)
    run.cpu = _timed(result["cpu_start"], result["cpu_end"], args)
    run.psnr = result.get("psnr")
    run.stages = result.get("stages")
    return run


def _check(done: subprocess.CompletedProcess[str], what: str) -> None:
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise SystemExit(f"error: {what} failed (exit {done.returncode}):\n{tail}")


def _mean(runs: list[Run], attr: str) -> float:
    return statistics.fmean(v for run in runs for v in getattr(run, attr))


def report(runs: dict[str, list[Run]], args: argparse.Namespace) -> list[str]:
    """Print the comparison; return the targets missed."""
    from bench import step_profile

    base = next(n for n in ("nerfstudio", "identical", *runs) if runs.get(n))
    base_wall, base_cpu = _mean(runs[base], "wall"), _mean(runs[base], "cpu")
    print(f"\n{args.rays} rays/step, {args.threads} threads, steps {args.first}-{args.steps - 1}")
    targets = {"nerfstudio": TARGETS, "identical": _translated_targets()}.get(base)
    if targets is None:
        print(f"  no baseline (nerfstudio or identical) ran: ratios are to {base}, no target")
        targets = {}
    print(f"  ratios to {base}; targets {targets}")
    missed = []
    psnr = {n: [r.psnr for r in rs if r.psnr is not None] for n, rs in runs.items()}
    for name, tool_runs in runs.items():
        wall, cpu = _mean(tool_runs, "wall"), _mean(tool_runs, "cpu")
        rss = max(r.peak_rss for r in tool_runs) / 2**30
        loads = ", ".join(f"{r.load[0]:.1f}->{r.load[1]:.1f}" for r in tool_runs)
        score = f"  psnr {statistics.median(psnr[name]):.2f} dB" if psnr[name] else ""
        print(
            f"  {name:10s} {wall:7.3f} s/step wall (x{base_wall / wall:4.2f})  {cpu:7.3f} s/step "
            f"cpu (x{base_cpu / cpu:4.2f})  peak RSS {rss:5.2f} GiB  load {loads}{score}"
        )
        if name in targets and base_wall / wall < targets[name]:
            missed.append(f"{name}: x{base_wall / wall:.2f} < x{targets[name]:.2f} ({base})")
    if psnr.get("fast") and psnr.get("identical"):
        gap = abs(statistics.median(psnr["fast"]) - statistics.median(psnr["identical"]))
        if gap > PSNR_TOLERANCE_DB:
            missed.append(f"fast: PSNR {gap:.2f} dB from identical (> {PSNR_TOLERANCE_DB})")
    stages = {n: rs[0].stages for n, rs in runs.items() if rs and rs[0].stages}
    if stages:
        print("\nwhere a step goes (torch.profiler, self CPU seconds per step)\n")
        print(step_profile.table(stages))
    return missed


def _translated_targets() -> dict[str, float]:
    """Targets against our identical run, from the last measured identical / nerfstudio ratio."""
    return {"fast": TARGETS["fast"] / LAST_IDENTICAL_RATIO}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, action="append", help="dataset folder(s)")
    parser.add_argument("--rays", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=61)
    parser.add_argument("--from", dest="first", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default="identical,fast")
    parser.add_argument("--eval", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--eval-images", type=int, default=0, help="held-out images (0: all)")
    parser.add_argument("--profile", default=None, help="steps a:b to profile, e.g. 22:25")
    parser.add_argument("--nerfstudio", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--size", default="322x480", help="synthetic capture size, HxW")
    parser.add_argument("--peer-python", type=Path, default=PEER_PYTHON)
    parser.add_argument("--peer-dir", type=Path, default=PEER_DIR)
    args = parser.parse_args()
    if args.nerfstudio and not args.peer_python.is_file():
        print(f"error: {args.peer_python}: no nerfstudio environment (run {PEER_DIR}/setup.sh)")
        return 1
    missed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-vs-ns-") as tmp:
        work = Path(tmp)
        size = tuple(int(v) for v in args.size.split("x"))
        for given in args.data or [synthetic_dataset(work, (size[0], size[1]))]:
            data = given  # what both trainers read: it, or its copy with fewer held-out images
            if args.eval and args.eval_images:
                data = held_out_subset(given, args.eval_images, work)
                print(f"\n=== {given} (its first {args.eval_images} held-out images)", flush=True)
            else:
                print(f"\n=== {given}", flush=True)
            runs: dict[str, list[Run]] = {"nerfstudio": []} if args.nerfstudio else {}
            runs |= {v: [] for v in args.variants.split(",")}
            for round_ in range(args.rounds):
                for name in runs:
                    out = work / "runs" / f"{data.name}-{name}-{round_}"
                    if name == "nerfstudio":
                        runs[name].append(run_nerfstudio(data, out, args))
                    else:
                        runs[name].append(run_ours(data, out, name, args))
                    print(f"  ran {name} round {round_ + 1}", flush=True)
            missed += report(runs, args)
    for line in missed:
        print(f"target missed: {line}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
