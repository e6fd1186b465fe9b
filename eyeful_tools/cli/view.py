"""``eyeful view``: a dataset's cameras, splits, world frames and points in the browser."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import typer

from eyeful_tools.cli._app import app, need_torch, out
from eyeful_tools.view.content import find_transforms, load_content, run_normalisation
from eyeful_tools.view.server import DEFAULT_PORT, import_viser, start_viewer


@app.command("view")
def view_command(
    path: Path = typer.Argument(
        ..., help="A dataset folder, a transforms*.json, a converted capture or a run folder."
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to serve on; 0.0.0.0 exposes it to the network."
    ),
    port: int = typer.Option(DEFAULT_PORT, "--port", help="Port (the next free one if taken)."),
    orientation: str = typer.Option(
        "up", help="For a dataset: the trainer's orientation rule for the normalised world."
    ),
    center: str = typer.Option(
        "poses", help="For a dataset: the trainer's centring rule for the normalised world."
    ),
    device: str = typer.Option(
        "auto", help="For a run: where its model renders (auto | cpu | cuda | xpu | mps)."
    ),
) -> None:
    """Serve a 3D view of the cameras (frustums with thumbnails, coloured by split), the capture's
    and the trainer's world axes, the scene box and any point cloud; for a run folder, its model
    rendered from the browser's camera, following the run's newer checkpoints. Runs until
    Ctrl-C.

    Example: eyeful view data/synth-v2/images-jpeg-2k
    """
    import_viser()  # the missing-extra error before any reading
    transforms_path = find_transforms(path)
    normalised = _normalisation(path, transforms_path, orientation, center)
    follower = _run_follower(path, device)
    content = load_content(transforms_path, normalised)
    viewer = start_viewer(content, host=host, port=port)
    try:
        out.print(
            f"eyeful view: {len(content.cameras)} cameras of {transforms_path}"
            f"{_run_summary(follower)}",
            soft_wrap=True,
        )
        out.print(f"open {viewer.url} (Ctrl-C to stop)", soft_wrap=True)
        if follower is not None:  # after the two lines: its own lines come later
            follower.start(viewer.server, normalised)
        threading.Event().wait()
    finally:
        if follower is not None:
            follower.stop()
        viewer.stop()


def _run_follower(path: Path, device: str) -> Any:
    """For a run folder: its :class:`~trainer_adapter.live_render.RunFollower`, holding the
    latest checkpoint's model if there is one yet; None for anything else. torch is imported
    only here."""
    if not (path / "dataparser_transforms.json").is_file():
        return None
    need_torch()
    from trainer_adapter.live_render import RunFollower

    follower = RunFollower(path, device, say=lambda line: out.print(line, soft_wrap=True))
    follower.load()
    return follower


def _run_summary(follower: Any) -> str:
    """What the first line says of a run: the step and device it renders, or that it has no
    checkpoint yet."""
    if follower is None:
        return ""
    if follower.renderer is None:
        return (
            "; the run has no checkpoint yet: its model is shown once the first"
            f" {follower.folder}/step-*.ckpt is written"
        )
    return f", {follower.shown()} (newer checkpoints are shown as they are written)"


def _normalisation(path: Path, transforms_path: Path, orientation: str, center: str) -> np.ndarray:
    """transforms world -> trainer's normalised world: the run's own, or the trainer's rule
    applied to the dataset (numpy only for every orientation but pca)."""
    if (path / "dataparser_transforms.json").is_file():
        return run_normalisation(path)
    from trainer_adapter.data.parser import parse_dataset

    dataset = parse_dataset(transforms_path, orientation=orientation, center=center)
    return dataset.normalised_from_transforms_world()
