"""Where a training step's time goes, by stage, for any torch trainer (ours or nerfstudio's).

Pure torch + stdlib: ``bench/ns_peer.py`` imports it inside nerfstudio's own environment too.

Stages are marked by wrapping functions in ``torch.profiler.record_function("stage:<name>")``
(:func:`label`). Forward work belongs to the innermost stage around it. Backward work belongs to
the stage whose forward op created the autograd node (matched by the autograd sequence number,
which the profiler records for both), so "encoding backward" is the backward of exactly the ops
that ran inside the encoding's forward. Gradient accumulation into ``.grad`` counts as backward
of "optimiser" (it is parameter bookkeeping, not model maths).
"""

from __future__ import annotations

import functools
import inspect
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from torch.autograd.profiler import record_function

PREFIX = "stage:"
_BACKWARD = "autograd::engine::evaluate_function: "

#: table rows, in print order
STAGES = (
    "loader",
    "rays",
    "sampling",
    "encoding",
    "mlp",
    "render",
    "loss",
    "optimiser",
    "other",
)


def label(owner: Any, attribute: str, stage: str) -> None:
    """Replace ``owner.attribute`` (a function or method) by one that runs inside the stage."""
    static = inspect.getattr_static(owner, attribute)
    kind = type(static) if isinstance(static, (classmethod, staticmethod)) else None
    original = static.__func__ if kind is not None else getattr(owner, attribute)

    @functools.wraps(original)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with record_function(PREFIX + stage):
            return original(*args, **kwargs)

    setattr(owner, attribute, kind(wrapped) if kind is not None else wrapped)


def _ancestors(event: Any) -> Iterable[Any]:
    parent = event.cpu_parent
    while parent is not None:
        yield parent
        parent = parent.cpu_parent


def _stage_of(event: Any, stage_of_seq: dict[tuple[int, int], str]) -> tuple[str, str]:
    """(stage, "fwd"|"bwd") of an event from its innermost marker."""
    for node in (event, *_ancestors(event)):
        name = node.name
        if name.startswith(PREFIX):
            return name[len(PREFIX) :], "fwd"
        if name.startswith(_BACKWARD):
            if "AccumulateGrad" in name:
                return "optimiser", "bwd"
            key = (node.fwd_thread, node.sequence_nr)
            return stage_of_seq.get(key, "other"), "bwd"
    return "other", "fwd"


def stage_seconds(events: Iterable[Any]) -> dict[tuple[str, str], float]:
    """Self CPU seconds per (stage, fwd|bwd) over the profiled events (``prof.events()``)."""
    events = list(events)
    stage_of_seq: dict[tuple[int, int], str] = {}
    for event in events:
        if event.sequence_nr >= 0 and not event.name.startswith(_BACKWARD):
            for node in _ancestors(event):
                if node.name.startswith(_BACKWARD):
                    break
                if node.name.startswith(PREFIX):
                    stage = node.name[len(PREFIX) :]
                    stage_of_seq.setdefault((event.thread, event.sequence_nr), stage)
                    break
    totals: dict[tuple[str, str], float] = defaultdict(float)
    for event in events:
        totals[_stage_of(event, stage_of_seq)] += event.self_cpu_time_total / 1e6
    return dict(totals)


def per_step(totals: dict[tuple[str, str], float], steps: int) -> dict[str, float]:
    """``{"encoding fwd": s, ...}`` per step, every stage of :data:`STAGES` present."""
    rows: dict[str, float] = {}
    for stage in STAGES:
        for part in ("fwd", "bwd"):
            rows[f"{stage} {part}"] = totals.get((stage, part), 0.0) / max(steps, 1)
    for (stage, part), seconds in totals.items():
        key = f"{stage} {part}"
        if key not in rows:
            rows[key] = seconds / max(steps, 1)
    return rows


def table(columns: dict[str, dict[str, float]]) -> str:
    """A markdown table: one row per stage part, one column (seconds per step) per tool."""
    names = list(columns)
    keys: list[str] = []
    for column in columns.values():
        keys += [k for k in column if k not in keys]
    keys = [k for k in keys if any(columns[n].get(k, 0.0) >= 0.0005 for n in names)]
    lines = [
        "| stage | " + " | ".join(f"{n} (s/step)" for n in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for key in keys:
        lines.append(
            f"| {key} | " + " | ".join(f"{columns[n].get(key, 0.0):.3f}" for n in names) + " |"
        )
    lines.append(
        "| **total (profiled CPU)** | "
        + " | ".join(f"**{sum(columns[n].values()):.3f}**" for n in names)
        + " |"
    )
    return "\n".join(lines)


def profiled(step: Callable[[], object], steps: int) -> dict[str, float]:
    """Run ``step`` ``steps`` times under the profiler -> seconds per step by stage part."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    return per_step(stage_seconds(prof.events()), steps)
