"""``eyeful demo``: the whole pipeline on the synthetic capture, offline (what ``make demo`` runs)."""

from __future__ import annotations

from pathlib import Path

import typer

from eyeful_tools.cli._app import app, console, need_torch, summary


@app.command("demo")
def demo_command(
    workdir: Path = typer.Option(
        Path("demo_run"), "--workdir", help="Folder for everything the demo writes."
    ),
    positions: int = typer.Option(8, help="Rig positions of the synthetic capture."),
    steps: int = typer.Option(1500, "--max-steps", help="Training steps of the tiny preset."),
    device: str = typer.Option("cpu", help="auto | cpu | cuda | xpu | mps"),
) -> None:
    """Synthesize a capture, serve it from a local S3 endpoint, download, convert, split,
    downscale, train the tiny Nerfacto and evaluate the held-out camera.

    Example: eyeful demo --workdir demo_run
    """
    need_torch()
    from trainer_adapter.demo import DemoOptions, run_demo

    result = run_demo(
        DemoOptions(workdir=workdir, positions=positions, steps=steps, device=device),
        say=lambda line: console.print(line, soft_wrap=True, markup=False),
    )
    console.print(
        f"\ndataset:       {result.dataset_dir}\nrun:           {result.run_dir}\n"
        f"checkpoint:    {result.checkpoint}\nmetrics:       {result.metrics_path}\n"
        f"side by side:  {result.side_by_side}  (ground truth | render)",
        soft_wrap=True,
        markup=False,
    )
    summary(f"demo: held-out PSNR {result.psnr:.2f} dB after {steps} steps, {result.seconds:.0f} s")
