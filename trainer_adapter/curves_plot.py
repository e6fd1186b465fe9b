"""``curves.png``: loss and PSNR against step, drawn with matplotlib's Agg canvas (no display,
no pyplot state) and written atomically. The picture depends only on the logged values, so a
run redone from scratch draws the same bytes."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eyeful_tools.fsio import atomic_write_bytes

log = logging.getLogger(__name__)

#: (stats key, label) of the loss terms drawn, the total first
_LOSSES = (
    ("loss", "total"),
    ("rgb_loss", "rgb"),
    ("interlevel_loss", "interlevel"),
    ("distortion_loss", "distortion"),
)


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Steps and values of ``key`` where it was logged with a positive finite value."""
    pairs = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) is not None]
    kept = [(s, v) for s, v in pairs if v > 0]
    return [s for s, _ in kept], [v for _, v in kept]


def write_curves_png(path: Path, rows: Sequence[dict[str, Any]]) -> bool:
    """Plot the rows of ``metrics.jsonl`` into ``path``; False (one warning) without
    matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        log.warning("matplotlib is not installed: no %s (pip install 'eyeful[train]')", path.name)
        return False
    figure = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    loss_axes, psnr_axes = figure.subplots(1, 2)
    for key, label in _LOSSES:
        steps, values = _series(rows, key)
        if steps:
            loss_axes.plot(steps, values, label=label, marker="." if len(steps) < 20 else None)
    loss_axes.set(xlabel="step", ylabel="loss", yscale="log", title="training loss")
    _legend(loss_axes, "upper right")
    for key, label in (("psnr", "train batch"), ("eval_image_psnr", "held-out view")):
        steps, values = _series(rows, key)
        if steps:
            psnr_axes.plot(steps, values, label=label, marker="." if len(steps) < 20 else None)
    psnr_axes.set(xlabel="step", ylabel="PSNR (dB)", title="PSNR")
    _legend(psnr_axes, "lower right")
    for axes in (loss_axes, psnr_axes):
        axes.grid(True, alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())
    return True


def _legend(axes: Any, where: str) -> None:
    """A legend where a line was drawn (matplotlib warns on stderr for an empty one: a run
    whose losses were all non-finite draws none)."""
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc=where)
