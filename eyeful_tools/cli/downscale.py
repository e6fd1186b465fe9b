"""``eyeful downscale``: images_N/ folders and transforms_N.json beside a transforms.json."""

from __future__ import annotations

from pathlib import Path

import typer

from eyeful_tools import downscale as downscale_lib
from eyeful_tools.cli._app import app, stage_progress, summary


@app.command("downscale")
def downscale_command(
    data_dir: Path = typer.Argument(
        ..., help="Folder holding transforms.json, or a transforms*.json file."
    ),
    factor: list[int] | None = typer.Option(
        None, "--factor", help="Downscale factor (repeat for several; default 2, 4, 8)."
    ),
    max_dim: int | None = typer.Option(
        None,
        "--max-dim",
        help="Also write the smallest power-of-two factor bringing max(w, h) to at most PX.",
        metavar="PX",
    ),
    jobs: int | None = typer.Option(
        None, "--jobs", "-j", help="Worker processes (default: the CPU count)."
    ),
    quality: int = typer.Option(
        downscale_lib.DEFAULT_JPEG_QUALITY, "--quality", help="JPEG quality of the copies."
    ),
) -> None:
    """Write images_N/ (masks_N/, depths_N/) and transforms_N.json for nerfstudio and our loader.

    Sizes are floor(w/N) x floor(h/N) like nerfstudio; intrinsics are rescaled per axis.
    Up-to-date copies are skipped, so re-running only fills in what is missing.

    Example: eyeful downscale data/eyefultower/riverview/images-jpeg-2k --factor 2 --factor 4
    """
    with stage_progress() as progress:
        result = downscale_lib.downscale(
            data_dir,
            factor or (),
            max_dim_px=max_dim,
            jobs=jobs,
            jpeg_quality=quality,
            progress=lambda done, total: progress("downscaling", done, total),
        )
    folder = result.transforms_path.parent
    if not result.factors:
        summary(f"{result.sources} files already fit in {max_dim} px; nothing to write in {folder}")
        return
    factors = ", ".join(f"x{f}" for f in result.factors)
    names = ", ".join(p.name for p in result.transforms_written) or "none (unchanged)"
    summary(
        f"downscaled {result.sources} files ({factors}): {result.written} written, "
        f"{result.up_to_date} up to date; transforms written: {names} in {folder}"
    )
