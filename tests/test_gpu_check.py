"""Issue 16, item 10: ``make gpu-check`` stays ready to run. No CUDA machine is at hand in CI, so
its dry run (``GPU_CHECK_DEVICE=cpu``) goes through the same script and steps on the CPU: the
gpu tests, data, training, eval, resume and DDP (two gloo processes), then the summary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("env", "tests", "data", "train", "eval", "resume", "ddp")


@pytest.mark.slow
def test_the_gpu_check_dry_runs_every_step_on_the_cpu(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        GPU_CHECK_DEVICE="cpu",
        GPU_CHECK_WHEELS="0",
        PYTHON=sys.executable,
        TMPDIR=str(tmp_path),
    )
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "FAIL" not in out and "Traceback" not in out, out
    for step in STEPS:
        assert f"[{step}]" in out, (step, out)
    assert out.count("  ok in ") == len(STEPS), out
    summary = done.stdout.strip().splitlines()[-1]  # stderr may carry a warning after it
    assert summary.startswith("gpu-check cpu (tiny,"), summary
    assert "rays/s" in summary and "peak memory" in summary and "held-out psnr" in summary
