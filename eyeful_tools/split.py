"""Train/val/test splits and subsets of a ``transforms.json``, as pure data.

Everything here takes and returns :class:`~eyeful_tools.transforms.TransformsFile`, so keys we do
not touch (``applied_transform``, ``eyeful`` extras, per-frame intrinsics) survive unchanged.
Results are shallow copies: frame objects are shared with the input (copying 20,000 frames deeply
costs more than the whole conversion), so copy before mutating a frame in place.

Rules (``shared/reference/eyeful.md`` §6, §8.3-8.4, §9):

* Official split: ``splits.json`` lists ``cameraId`` strings (image path without extension);
  ``train_filenames`` = its train list, ``val_filenames`` = ``test_filenames`` = its test list
  (the held-out camera), so both training-time eval and ``ns-eval`` see it. nerfstudio writes an
  empty ``test_filenames``, which makes ``ns-eval`` evaluate nothing.
* Without a splits file: the cameras named, else, for an EyefulTower capture only (one
  :mod:`eyeful_tools.convert` recognised by its ``cameras.json`` and catalog entry, recorded as
  ``eyeful.catalog``), the catalog's held-out camera of its rig ("17" on v2, "5" on v1), else
  nerfstudio's ``eval_interval`` rule (:func:`eyeful_tools.cameras.held_out_every`: every 8th
  image by file name, from the first). No rig is ever guessed from camera ids: generic data
  (phone, COLMAP, SfM imports) named like a rig's cameras gets the every-8th rule. The rule
  used is returned so commands can state it.
* Subsets: nerfstudio's ``round(linspace(0, N-1, n))`` over the sorted frames (``by="image"``), or
  whole rig positions (``by="position"``) so every subset keeps every camera height. Split lists
  are intersected with the kept frames and the held-out set is never emptied.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
from pydantic import ValidationError

from eyeful_tools import catalog
from eyeful_tools.cameras import EVAL_INTERVAL, held_out_every, natural_key
from eyeful_tools.errors import InputFormatError, SplitError, UsageError, field_error
from eyeful_tools.eyeful_formats import SplitsFile
from eyeful_tools.fsio import read_json
from eyeful_tools.transforms import (
    SPLIT_KEYS,
    TransformsFile,
    TransformsFrame,
    missing_files,
    read_transforms,
    transforms_file,
    write_transforms,
)

ALLOW_EMPTY_HINT = "; pass --allow-empty-eval to train on every frame"
#: nerfstudio's subset files: name -> number of frames ("half" = N // 2)
SUBSETS: dict[str, int | Literal["half"]] = {
    "transforms_300.json": 300,
    "transforms_half.json": "half",
}


# ---------------------------------------------------------------------------------------------
# Identities of frames.


def camera_of(frame: TransformsFrame) -> str | None:
    """The physical camera of a frame: ``eyeful.camera_id``, else the first folder of its path,
    else the ``<cam>_`` prefix of an EyefulTower file name (``10_DSC0001.jpg``)."""
    if frame.eyeful is not None and frame.eyeful.camera_id:
        return frame.eyeful.camera_id
    parts = PurePosixPath(frame.file_path).parts
    if len(parts) > 1:
        return parts[0]
    stem = PurePosixPath(frame.file_path).stem
    return stem.split("_", 1)[0] if "_" in stem else None


def position_of(frame: TransformsFrame) -> str:
    """The rig position of a frame: ``eyeful.rig_position_id``, else the shared file-name suffix
    of EyefulTower images (``DSC0001`` in ``10_DSC0001``), else the file itself."""
    if frame.eyeful is not None and frame.eyeful.rig_position_id is not None:
        return str(frame.eyeful.rig_position_id)
    stem = PurePosixPath(frame.file_path).stem
    return stem.split("_", 1)[1] if "_" in stem else frame.file_path


def split_key(name: str) -> str:
    """A split entry or file path without its image extension (``splits.json`` has none)."""
    path = PurePosixPath(name.replace("\\", "/"))
    return str(path.with_suffix("")) if path.suffix else str(path)


def read_splits(path: str | Path) -> dict[str, list[str]]:
    """``splits.json``: ``{"train": [...], "test": [...]}`` (``"val"`` accepted for test)."""
    path = Path(path)
    data = read_json(path, "splits file")
    if not isinstance(data, dict) or not any(k in data for k in ("train", "test", "val")):
        raise InputFormatError(path, 'expected {"train": [...], "test": [...]}')
    try:
        splits = SplitsFile.model_validate(data)  # the model the schema is generated from
    except ValidationError as error:
        raise field_error(error, path) from error
    return {"train": splits.train, "test": splits.test, "val": splits.val}


# ---------------------------------------------------------------------------------------------
# Splits.


def official_split(
    tf: TransformsFile,
    splits: Mapping[str, Sequence[str]] | None,
    holdout_cameras: Iterable[str] = (),
    rig: catalog.Rig | None = None,
    allow_empty_eval: bool = False,
) -> tuple[TransformsFile, str]:
    """Fill ``train/val/test_filenames``; returns the new file and the rule used, in words.

    Precedence: ``splits`` (a parsed ``splits.json``), else ``holdout_cameras``, else the
    catalog hold-out camera of ``rig`` (given only for a recognised EyefulTower capture: see
    :func:`catalog_rig`), else every 8th image. Giving both ``splits`` and ``holdout_cameras``
    is a usage error. An empty held-out set is refused unless ``allow_empty_eval``.
    """
    holdout_cameras = [str(c) for c in holdout_cameras]
    if not tf.frames:
        raise SplitError(None, "no frames to split")
    if splits is not None and holdout_cameras:
        raise UsageError(None, "give either a splits file or --holdout-camera, not both")
    cameras = [camera_of(frame) for frame in tf.frames]
    known = sorted({c for c in cameras if c is not None}, key=natural_key)
    if splits is not None:
        held, rule = _held_from_splits(tf, splits)
    elif holdout_cameras:
        unknown = [c for c in holdout_cameras if c not in known]
        if unknown:
            raise SplitError(
                None,
                f"unknown camera id(s) {', '.join(unknown)}; cameras are {', '.join(known)}",
            )
        held = [c in holdout_cameras for c in cameras]
        rule = f"held-out camera(s) {', '.join(holdout_cameras)} (as requested)"
    elif rig is not None and rig.holdout_camera in known:
        held = [c == rig.holdout_camera for c in cameras]
        rule = f"catalog held-out camera {rig.holdout_camera} (rig {rig.name})"
    else:
        order = sorted(range(len(tf.frames)), key=lambda i: tf.frames[i].file_path)
        held = [False] * len(tf.frames)
        for index, is_held in zip(order, held_out_every(len(order)), strict=True):
            held[index] = bool(is_held)
        rule = (
            f"every {EVAL_INTERVAL}th image (nerfstudio's eval-interval rule; "
            "not a catalog capture)"
        )
    if not any(held) and not allow_empty_eval:
        raise SplitError(None, f"the held-out set is empty ({rule})")
    if all(held):
        raise SplitError(None, f"every frame is held out, nothing left to train on ({rule})")
    return _with_lists(tf, held), rule


def catalog_rig(tf: TransformsFile) -> catalog.Rig | None:
    """The rig of the EyefulTower capture ``tf`` was converted from, when the converter
    recognised one (``eyeful.catalog``); None for everything else."""
    name = (tf.eyeful or {}).get("catalog")
    capture = catalog.CAPTURES.get(name) if isinstance(name, str) else None
    return None if capture is None else capture.rig


def _held_from_splits(
    tf: TransformsFile, splits: Mapping[str, Sequence[str]]
) -> tuple[list[bool], str]:
    test = {split_key(n) for n in [*splits.get("test", []), *splits.get("val", [])]}
    train = {split_key(n) for n in splits.get("train", [])}
    keys = [split_key(frame.file_path) for frame in tf.frames]
    held = [key in test for key in keys]
    unlisted = sum(1 for key in keys if key not in test and key not in train)
    held_cameras = sorted(
        {c for c, h in zip((camera_of(f) for f in tf.frames), held, strict=True) if h and c},
        key=natural_key,
    )
    rule = f"official splits.json (held-out camera {', '.join(held_cameras) or 'none'})"
    if unlisted:
        rule += f"; {unlisted} frames in neither list go to train"
    return held, rule


def _with_lists(tf: TransformsFile, held: Sequence[bool]) -> TransformsFile:
    train = [f.file_path for f, h in zip(tf.frames, held, strict=True) if not h]
    evaluation = [f.file_path for f, h in zip(tf.frames, held, strict=True) if h]
    return tf.model_copy(
        update={
            "train_filenames": train,
            "val_filenames": evaluation,
            "test_filenames": list(evaluation),
        }
    )


# ---------------------------------------------------------------------------------------------
# Subsets.


def subsample(
    tf: TransformsFile,
    n: int | Literal["half"],
    by: str = "image",  # "image" or "position", checked here
    seed: int | None = None,
) -> TransformsFile:
    """A subset of about ``n`` images (``"half"``: half of them).

    ``by="image"``: nerfstudio's evenly spaced ``round(linspace(0, N-1, n))`` over the frames as
    ordered in the file. ``by="position"``: whole rig positions, evenly spaced, as many as give
    about ``n`` images. ``seed`` picks at random (reproducibly) instead of evenly. Split lists are
    intersected with the kept frames; if that empties the held-out list, held-out frames are
    added back (evenly, about the same fraction), so evaluation never silently vanishes.
    """
    if by not in ("image", "position"):
        raise UsageError(None, f"--by must be image or position, not {by!r}")
    total = len(tf.frames)
    if total == 0:
        raise SplitError(None, "no frames to subsample")
    if n != "half" and (not isinstance(n, int) or n < 1):
        raise UsageError(None, f"subsample size must be a positive integer or 'half', not {n!r}")
    if by == "image":
        count = total // 2 if n == "half" else min(total, n)
        keep = _pick(total, max(count, 1), seed)
    else:
        positions: dict[str, list[int]] = {}
        for index, frame in enumerate(tf.frames):
            positions.setdefault(position_of(frame), []).append(index)
        names = sorted(positions, key=natural_key)
        if n == "half":
            count = len(names) // 2
        else:
            count = round(n * len(names) / total)
        chosen = _pick(len(names), max(1, min(len(names), count)), seed)
        keep = sorted(i for p in chosen for i in positions[names[p]])
    kept = set(keep)
    held = set(tf.val_filenames or []) | set(tf.test_filenames or [])
    if held and not any(tf.frames[i].file_path in held for i in kept):
        held_indices = [i for i, f in enumerate(tf.frames) if f.file_path in held]
        extra = max(1, round(len(held_indices) * len(kept) / total))
        kept |= {held_indices[j] for j in _pick(len(held_indices), extra, seed)}
    frames = [tf.frames[i] for i in sorted(kept)]
    names_kept = {f.file_path for f in frames}

    def intersect(files: list[str] | None) -> list[str] | None:
        return None if files is None else [f for f in files if f in names_kept]

    return tf.model_copy(
        update={
            "frames": frames,
            "train_filenames": intersect(tf.train_filenames),
            "val_filenames": intersect(tf.val_filenames),
            "test_filenames": intersect(tf.test_filenames),
        }
    )


def _pick(total: int, count: int, seed: int | None) -> list[int]:
    """``count`` of ``range(total)``: evenly spaced like nerfstudio, or random with a seed."""
    count = min(total, count)
    if seed is not None:
        return sorted(random.Random(seed).sample(range(total), count))
    # numpy rounds halves to even, exactly as nerfstudio's subsample does
    return sorted({int(i) for i in np.round(np.linspace(0, total - 1, count)).astype(int)})


def subsets(tf: TransformsFile) -> dict[str, TransformsFile]:
    """nerfstudio's ``transforms_300.json`` and ``transforms_half.json`` of a converted file."""
    return {name: subsample(tf, n, by="image") for name, n in SUBSETS.items()}


def check_files(transforms_path: str | Path, tf: TransformsFile) -> None:
    """Every frame and every listed split file must exist; the error lists the missing ones."""
    names = [f.file_path for f in tf.frames]
    for key in SPLIT_KEYS:
        names.extend(getattr(tf, key) or [])
    unique = list(dict.fromkeys(names))
    missing = missing_files(transforms_path, unique)
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise SplitError(transforms_path, f"{len(missing)} listed files are missing: {shown}")
    frame_names = {f.file_path for f in tf.frames}
    orphans = [n for n in unique if n not in frame_names]
    if orphans:
        raise SplitError(
            transforms_path, f"split lists name files that are not frames: {', '.join(orphans[:5])}"
        )


def _refuse_empty_lists(
    transforms_path: Path, tf: TransformsFile, rule: str, allow_empty_eval: bool
) -> None:
    """Nothing to train on is always an error; nothing to evaluate on is one unless asked for
    (lists kept from the file may name no frame at all: that used to be written, exit 0)."""
    if not tf.train_filenames:
        raise SplitError(transforms_path, f"the train list would be empty ({rule})")
    empty = [key for key in ("val_filenames", "test_filenames") if not getattr(tf, key)]
    if empty and not allow_empty_eval:
        raise SplitError(
            transforms_path,
            f"{' and '.join(empty)} would be empty ({rule}){ALLOW_EMPTY_HINT}",
        )


# ---------------------------------------------------------------------------------------------
# The command, as a library function.


def find_splits_file(transforms_path: Path) -> Path | None:
    """``splits.json`` beside the transforms file or in the capture folder above it."""
    for folder in (transforms_path.parent, transforms_path.parent.parent):
        if (folder / "splits.json").is_file():
            return folder / "splits.json"
    return None


def parse_subsample(value: str | int | None) -> int | Literal["half"] | None:
    if value is None:
        return None
    if value == "half":
        return "half"
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise UsageError(None, f"--subsample must be a positive integer or 'half', not {value!r}")
    return number


def split_transforms_file(
    transforms_path: str | Path,
    splits_path: str | Path | None = None,
    holdout_cameras: Sequence[str] = (),
    subsample_n: str | int | None = None,
    by: str = "image",
    seed: int | None = None,
    out: str | Path | None = None,
    allow_empty_eval: bool = False,
) -> str:
    """Split (and optionally subsample) a transforms file; returns the one-line summary.

    The split comes from ``splits_path``, else ``holdout_cameras``, else a ``splits.json`` found
    beside the file or one folder up, else the lists already in the file, else the catalog rule.

    Nothing is written unless every listed file exists, some frame is left to train on and,
    unless ``allow_empty_eval``, the val and test lists are not empty.
    """
    transforms_path = transforms_file(transforms_path)
    tf = read_transforms(transforms_path)
    count = parse_subsample(subsample_n)
    if by not in ("image", "position"):
        raise UsageError(None, f"--by must be image or position, not {by!r}")
    if splits_path is None and not holdout_cameras:
        splits_path = find_splits_file(transforms_path)
    if splits_path is not None:
        # with --holdout-camera too, official_split refuses the pair
        # empty held-out sets are refused below, with the flag that allows them
        result, rule = official_split(
            tf, read_splits(splits_path), holdout_cameras, allow_empty_eval=True
        )
    elif not holdout_cameras and (tf.val_filenames or tf.test_filenames):
        held = set(tf.val_filenames or []) | set(tf.test_filenames or [])
        result = _with_lists(tf, [f.file_path in held for f in tf.frames])
        rule = "existing val/test lists kept (no splits.json found)"
    else:
        result, rule = official_split(
            tf, None, holdout_cameras, rig=catalog_rig(tf), allow_empty_eval=True
        )
    result.eyeful = {**(result.eyeful or {}), "split": rule}
    if count is not None:
        result = subsample(result, count, by=by, seed=seed)
    if out is None:
        if count is None:
            out = transforms_path
        else:
            suffix = "" if by == "image" else "_by_position"
            out = transforms_path.parent / f"transforms_{count}{suffix}.json"
    out = Path(out)
    if out.resolve().parent != transforms_path.resolve().parent:
        raise UsageError(
            out, "--out must be in the same folder as the input (image paths are relative to it)"
        )
    check_files(transforms_path, result)
    _refuse_empty_lists(transforms_path, result, rule, allow_empty_eval)
    write_transforms(out, result)
    return (
        f"wrote {out}: {len(result.frames)} frames, train {len(result.train_filenames or [])}, "
        f"val/test {len(result.val_filenames or [])}; split: {rule}"
        + (f"; subset of {count} by {by}" if count is not None else "")
    )
