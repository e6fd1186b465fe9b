"""``eyeful split``: official train/val/test lists and subsets of a transforms.json."""

from __future__ import annotations

from pathlib import Path

import typer

from eyeful_tools.cli._app import app, summary
from eyeful_tools.split import split_transforms_file


@app.command("split")
def split_command(
    transforms_json: Path = typer.Argument(..., help="transforms.json (or its folder)."),
    splits: Path = typer.Option(
        None, "--splits", help="splits.json; default: next to the file or in the capture folder."
    ),
    holdout_camera: list[str] = typer.Option(
        None, "--holdout-camera", help="Camera id to hold out (repeat); replaces splits.json."
    ),
    subsample: str = typer.Option(
        None, "--subsample", help="Keep about N images, or 'half' (nerfstudio's even pick)."
    ),
    by: str = typer.Option("image", "--by", help="Subsample by image or by rig position."),
    seed: int = typer.Option(None, "--seed", help="Pick the subset at random with this seed."),
    out: Path = typer.Option(
        None, "--out", help="Output file; default: transforms_<N>.json, or the input in place."
    ),
    allow_empty_eval: bool = typer.Option(
        False,
        "--allow-empty-eval",
        help="Write empty val/test lists when nothing is held out (refused otherwise).",
    ),
) -> None:
    """Fill train/val/test_filenames (held-out camera in val and test) and optionally write a
    subset that keeps whole rig positions or nerfstudio's evenly spaced images.

    Example: eyeful split data/eyefultower/riverview/images-jpeg-2k/transforms.json --subsample 300 --by position
    """
    result = split_transforms_file(
        transforms_json,
        splits_path=splits,
        holdout_cameras=holdout_camera or (),
        subsample_n=subsample,
        by=by,
        seed=seed,
        out=out,
        allow_empty_eval=allow_empty_eval,
    )
    summary(result)
