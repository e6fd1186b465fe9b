"""``eyeful view``: a dataset's cameras, splits, world frames and points in the browser."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import typer

from eyeful_tools.cli._app import app, out
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
) -> None:
    """Serve a 3D view of the cameras (frustums with thumbnails, coloured by split), the capture's
    and the trainer's world axes, the scene box and any point cloud; runs until Ctrl-C.

    Example: eyeful view data/synth-v2/images-jpeg-2k
    """
    import_viser()  # the missing-extra error before any reading
    transforms_path = find_transforms(path)
    content = load_content(
        transforms_path, _normalisation(path, transforms_path, orientation, center)
    )
    viewer = start_viewer(content, host=host, port=port)
    try:
        out.print(
            f"eyeful view: {len(content.cameras)} cameras of {transforms_path}", soft_wrap=True
        )
        out.print(f"open {viewer.url} (Ctrl-C to stop)", soft_wrap=True)
        threading.Event().wait()
    finally:
        viewer.stop()


def _normalisation(path: Path, transforms_path: Path, orientation: str, center: str) -> np.ndarray:
    """transforms world -> trainer's normalised world: the run's own, or the trainer's rule
    applied to the dataset (numpy only for every orientation but pca)."""
    if (path / "dataparser_transforms.json").is_file():
        return run_normalisation(path)
    from trainer_adapter.data.parser import parse_dataset

    dataset = parse_dataset(transforms_path, orientation=orientation, center=center)
    return dataset.normalised_from_transforms_world()
