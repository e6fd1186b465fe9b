"""``eyeful convert``: capture folder -> transforms.json per resolution folder."""

from __future__ import annotations

from pathlib import Path

import typer

from eyeful_tools.cli._app import app, stage_progress, summary
from eyeful_tools.convert import convert_capture


@app.command("convert")
def convert(
    capture_dir: Path = typer.Argument(..., help="Capture folder (cameras.json / cameras.xml)."),
    resolution: list[str] = typer.Option(
        None, "--resolution", help="Resolution name or folder (repeat); default: all present."
    ),
    source: str = typer.Option(
        "auto", "--from", help="Calibration to read: krt (cameras.json), metashape, or auto."
    ),
    rig: bool = typer.Option(
        True, "--rig/--no-rig", help="Pose Metashape rig slaves from their master camera."
    ),
    images: Path = typer.Option(
        None, "--images", help="Use this image folder (output goes there) instead."
    ),
    check: bool = typer.Option(
        False, "--check", help="Also report KRT vs Metashape pose differences per camera."
    ),
) -> None:
    """Write transforms.json, transforms_300.json and transforms_half.json in each resolution
    folder (OpenGL camera, z-up world, metres; intrinsics rescaled to the image headers).

    Example: eyeful convert data/eyefultower/riverview --resolution jpeg_2k
    """
    with stage_progress() as progress:
        report = convert_capture(
            capture_dir,
            resolutions=resolution or None,
            source=source,
            rig=rig,
            images_dir=images,
            check=check,
            on_progress=lambda name, done, total: progress(f"matching {name}", done, total),
        )
    summary(report.summary())
