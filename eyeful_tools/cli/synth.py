"""``eyeful synth``: write the synthetic EyefulTower capture (the project's ground truth)."""

from __future__ import annotations

from pathlib import Path

import typer

from eyeful_tools.cli._app import app, stage_progress, summary
from eyeful_tools.errors import UsageError
from eyeful_tools.synth import parse_size


@app.command("synth")
def synth(
    out_dir: Path = typer.Argument(..., help="Folder to write the capture into."),
    rig: str = typer.Option("v2", "--rig", help="v2 (pinhole tower) or v1 (fisheye tower)."),
    positions: int = typer.Option(8, "--positions", help="Number of rig positions."),
    seed: int = typer.Option(0, "--seed", help="Seed for textures and the rig path."),
    size: str | None = typer.Option(
        None, "--size", help="WIDTHxHEIGHT of images-jpeg-2k / images-2k (default 192x288)."
    ),
    supersample: int = typer.Option(
        1, "--supersample", help="Anti-aliasing samples per axis (2 is ~5x slower)."
    ),
    jobs: int | None = typer.Option(
        None, "--jobs", help="Render threads (default: CPU count, at most 4)."
    ),
) -> None:
    """Render a deterministic synthetic EyefulTower capture with ground-truth poses.

    Writes cameras.json (KRT), cameras.xml (Metashape rig), splits.json, images-jpeg-2k,
    images-jpeg-1k, images-2k (EXR) and ground_truth.json into OUT_DIR.

    Example: eyeful synth data/synth-v2 --rig v2 --positions 8
    """
    from eyeful_tools.synth import synthesize

    if rig not in ("v1", "v2"):
        raise UsageError(None, f"--rig must be v1 or v2, got {rig!r}")
    if positions < 1:
        raise UsageError(None, f"--positions must be at least 1, got {positions}")
    dims = parse_size(size)
    with stage_progress() as progress:
        result = synthesize(
            out_dir,
            rig=rig,
            positions=positions,
            seed=seed,
            size=dims,
            supersample=supersample,
            jobs=jobs,
            progress=lambda done, total: progress("synth", done, total),
        )
    summary(
        f"synth: {result.image_count} images x {len(result.folder_sizes)} folders "
        f"(rig {result.rig}, {len(result.camera_ids)} cameras, {result.positions} positions) "
        f"-> {result.out_dir}"
    )
