"""``eyeful export colmap``: a transforms.json dataset as a COLMAP model (``import colmap``,
``images`` and ``video`` are rows of :data:`eyeful_tools.importers.IMPORTERS`)."""

from __future__ import annotations

from pathlib import Path

import typer

from eyeful_tools.cli._app import export_app, summary
from eyeful_tools.importer import choice


@export_app.command("colmap")
def export_colmap(
    data_dir: Path = typer.Argument(..., help="Folder with a transforms.json (or the file)."),
    out: Path = typer.Option(..., "--out", help="Folder to write sparse/0/ into."),
    binary: bool = typer.Option(True, "--binary/--text", help="COLMAP binary or text model."),
    rig: str = typer.Option(
        "auto",
        "--rig",
        help="auto: a rig when the rig positions are rigid; on: always (offsets averaged); off.",
    ),
    reference_camera: str | None = typer.Option(
        None, "--reference-camera", help="The rig's reference camera (default: the master)."
    ),
    rig_tolerance: float | None = typer.Option(
        None,
        "--rig-tolerance",
        help="Max deviation from a rigid rig, radians and scene units (default 1e-6).",
    ),
    fisheye: str = typer.Option(
        "exact",
        "--fisheye",
        help="exact: THIN_PRISM_FISHEYE where p1/p2 are nonzero; opencv: always OPENCV_FISHEYE, "
        "p1/p2 dropped (what gsplat/3DGS loaders read), the largest pixel shift reported.",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace a COLMAP model already in OUT/sparse/0."
    ),
) -> None:
    """Export a transforms.json dataset to a COLMAP model (cameras, images, rigs, frames).

    The model is in the dataset's z-up world; image names are the file paths, so use the data
    folder as COLMAP's image path. An eyeful_colmap.json beside it keeps what COLMAP cannot.

    Example: eyeful export colmap data/eyefultower/riverview/images-jpeg-2k --out data/riverview-colmap
    """
    from eyeful_tools import colmap_io

    result = colmap_io.export_colmap(
        data_dir,
        out,
        binary=binary,
        rig=choice(colmap_io.RigMode, rig, "--rig"),
        rig_tolerance=colmap_io.RIG_TOLERANCE if rig_tolerance is None else rig_tolerance,
        reference_camera=reference_camera,
        fisheye=choice(colmap_io.FisheyeExport, fisheye, "--fisheye"),
        overwrite=overwrite,
    )
    report = result.report
    approximated = (
        f"; p1/p2 dropped from {report.fisheye_approximated} fisheye images (max shift "
        f"{report.fisheye_max_shift_px:.2f} px)"
        if report.fisheye_approximated
        else ""
    )
    summary(
        f"export colmap: {report.num_images} images, {report.num_cameras} cameras, "
        f"{report.num_frames} frames; {report.rig_note}{approximated} -> {result.model_dir}"
    )
