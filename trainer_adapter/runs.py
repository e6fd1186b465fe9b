"""Run folders: where a run goes, its ``config.json``, and the options of a new or resumed run.

Layout (as nerfstudio): ``<output_dir>/<capture>/<preset>/<timestamp>/`` with ``config.json``,
``dataparser_transforms.json`` and ``nerfstudio_models/step-%09d.ckpt``. ``config.json`` is
``{"method_name", "options": TrainOptions.to_dict(), "facts": {...}}``: the resolved options
(the one source for eval, render and resume) and what the run found (HDR, number of training
images, world size, the hash grid that ran, the checkpoint it resumed).

No torch here: the CLI resolves options (and refuses bad ones) before torch is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eyeful_tools.errors import InputFormatError, MissingFileError, UsageError
from eyeful_tools.fsio import atomic_write_json, read_json
from eyeful_tools.transforms import transforms_file
from trainer_adapter.options import GROUP_OF, TrainOptions, options_from_legacy
from trainer_adapter.presets import make_options

CHECKPOINT_DIR = "nerfstudio_models"
#: groups a resumed run may change: how it runs and how rays are served, not what it learns
RESUME_MAY_CHANGE = ("loader", "runtime")
#: options of other groups a resumed run may change: more steps, and how the same maths runs
RESUME_MAY_CHANGE_OPTIONS = ("max_steps", "compile_encodings")


def capture_name(transforms_path: Path) -> str:
    """``<dest>/riverview/images-jpeg-2k/transforms.json`` -> ``riverview``."""
    folder = transforms_path.parent
    if folder.name.startswith("images") and folder.parent.name:
        return folder.parent.name
    return folder.name or "capture"


def run_dir_for(options: TrainOptions, stamp: str) -> Path:
    data = Path(options.data.data)
    return Path(options.runtime.output_dir) / capture_name(data) / options.preset / stamp


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a run (``run_dir`` may also be its ``nerfstudio_models``)."""
    run_dir = Path(run_dir)
    if run_dir.name == CHECKPOINT_DIR:
        run_dir = run_dir.parent
    path = run_dir / "config.json"
    if not path.is_file():
        raise MissingFileError(path, "not a training run (config.json missing)")
    data = read_json(path, "config.json")
    nested = isinstance(data, dict) and isinstance(data.get("options"), dict)
    legacy = isinstance(data, dict) and "config" in data and "data" in data
    if not (nested or legacy):
        raise InputFormatError(path, "config.json lacks 'options'")
    return data


def run_options(meta: dict[str, Any]) -> TrainOptions:
    """The resolved options of a run's ``config.json`` (either layout)."""
    if isinstance(meta.get("options"), dict):
        return TrainOptions.from_dict(meta["options"])
    return options_from_legacy(meta)


def run_facts(meta: dict[str, Any]) -> dict[str, Any]:
    """What the run found: ``is_hdr``, ``hdr``, ``num_train_images``, ``world_size``, ..."""
    return dict(meta["facts"]) if isinstance(meta.get("facts"), dict) else dict(meta)


def write_run_config(run_dir: Path, options: TrainOptions, facts: dict[str, Any]) -> None:
    document = {"method_name": "nerfacto", "options": options.to_dict(), "facts": facts}
    atomic_write_json(run_dir / "config.json", document)


def checkpoint_step(path: Path) -> int:
    """The step in a ``step-%09d.ckpt`` name."""
    return int(path.stem.removeprefix("step-"))


def resolve_options(
    data: str | Path,
    *,
    preset: str | None = None,
    load_dir: str | Path | None = None,
    settings: dict[str, Any] | None = None,
) -> tuple[TrainOptions, Path | None]:
    """The options of a new run (preset + settings) or of a resumed one, and the checkpoint to
    resume from. ``settings`` are flat option names; ``None`` values mean "not given".

    Resuming keeps everything the run learned with: a different preset, dataset, or any model,
    data or optimisation option raises :class:`UsageError` naming both values. Loader and runtime
    options may change, and a larger ``max_steps`` extends the run."""
    from trainer_adapter.checkpoints import latest_checkpoint
    from trainer_adapter.data.parser import check_options

    given = {k: v for k, v in (settings or {}).items() if v is not None}
    if load_dir is None:
        options = make_options(preset or "nerfacto", **given)
        options.data.data = str(transforms_file(data))
        checkpoint = None
    else:
        checkpoint = latest_checkpoint(load_dir)
        options = _resumed_options(data, checkpoint, preset, given)
    check_options(**options.data.parser_kwargs())
    if options.optim.max_steps < 1:
        raise UsageError("--max-steps", f"must be at least 1, got {options.optim.max_steps}")
    runtime = options.runtime
    if runtime.steps_per_eval_image < 0:
        raise UsageError(
            "--steps-per-eval-image", f"must be 0 (off) or more, got {runtime.steps_per_eval_image}"
        )
    if runtime.eval_image_max_px < 1:
        raise UsageError(
            "eval_image_max_px", f"must be at least 1, got {runtime.eval_image_max_px}"
        )
    return options, checkpoint


def _resumed_options(
    data: str | Path, checkpoint: Path, preset: str | None, given: dict[str, Any]
) -> TrainOptions:
    from trainer_adapter.options import with_settings

    unknown = sorted(set(given) - set(GROUP_OF))
    if unknown:
        raise UsageError(None, f"unknown training options {unknown}")
    run_dir = checkpoint.parent.parent
    previous = run_options(read_run_config(run_dir))
    if preset is not None and preset != previous.preset:
        raise UsageError(
            "--preset",
            f"{run_dir} was trained with preset {previous.preset!r}, not {preset!r} "
            "(resume without --preset, or start a new run)",
        )
    wanted, trained = transforms_file(data).resolve(), Path(previous.data.data).resolve()
    if wanted != trained:
        raise UsageError(data, f"{run_dir} was trained on {trained}, not {wanted}")
    old = previous.flat()
    for name, value in given.items():
        fixed = (
            GROUP_OF.get(name) not in RESUME_MAY_CHANGE and name not in RESUME_MAY_CHANGE_OPTIONS
        )
        if fixed and value != old.get(name) and not (name == "downscale" and value == "auto"):
            raise UsageError(
                f"--{name.replace('_', '-')}",
                f"{run_dir} was trained with {name} {old.get(name)!r}, not {value!r} "
                "(a resumed run keeps what it learned with)",
            )
    done = checkpoint_step(checkpoint) + 1
    max_steps = given.get("max_steps", previous.optim.max_steps)
    if max_steps <= done:
        raise UsageError(
            "--max-steps",
            f"{checkpoint} has already trained {done} steps; give more than {done} to extend it",
        )
    loose = {
        k: v
        for k, v in given.items()
        if GROUP_OF.get(k) in RESUME_MAY_CHANGE or k in RESUME_MAY_CHANGE_OPTIONS
    }
    options = with_settings(previous, {**loose, "max_steps": max_steps})
    options.runtime.timestamp = given.get("timestamp")  # a new folder, never the old run's
    return options
