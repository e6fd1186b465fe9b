"""``eyeful list``: the EyefulTower catalog as a table."""

from __future__ import annotations

from rich.table import Table

from eyeful_tools import catalog
from eyeful_tools.cli._app import app, out, summary


@app.command("list")
def list_captures() -> None:
    """List the EyefulTower captures, their rigs, image counts and sizes per resolution.

    Example: eyeful list
    """
    table = Table(title="EyefulTower captures (sizes in GB)")
    for column in ("capture", "rig", "cams", "pos", "images", "held out", *catalog.RESOLUTIONS):
        table.add_column(column, justify="right" if column not in ("capture", "rig") else "left")
    for capture in catalog.CAPTURES.values():
        sizes = dict(capture.sizes_gb)
        table.add_row(
            capture.name,
            capture.rig.name,
            str(len(capture.rig.camera_ids)),
            str(capture.positions),
            str(capture.images),
            capture.rig.holdout_camera,
            *(f"{sizes.get(r, 0):g}" for r in catalog.RESOLUTIONS),
        )
    out.print(table)
    resolutions = ", ".join(
        f"{r.name}={r.folder} ({r.width_px}x{r.height_px} {r.extension})"
        for r in catalog.RESOLUTIONS.values()
    )
    summary(f"{len(catalog.CAPTURES)} captures; resolutions: {resolutions}")
