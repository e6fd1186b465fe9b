"""Every image and mask of a dataset checked before training's first step.

A truncated or corrupt JPEG would otherwise train: OpenCV fills what it cannot decode with grey
and only prints libjpeg's warning. The decode workers decode strictly too (see
:mod:`eyeful_tools.imageio`), but a failure there comes after steps have run and checkpoints
may have been written; this pass refuses the dataset before the run folder exists.

Cost: JPEGs are entropy-decoded at 1/8 scale in grey (:func:`eyeful_tools.imageio.verify_image`),
which reads every byte of the compressed data but skips most of the inverse DCT and all colour
conversion: about 7 ms for a 1368x2048 EyefulTower JPEG on one core, so ~4 s for a 1000-image
2K scene on two cores (threads: libjpeg-turbo runs without the GIL). PNG and EXR are decoded in
full (a 1368x2048 half-float ZIP EXR: ~40 ms of CPU). See docs/validation.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from eyeful_tools.errors import InputFormatError
from eyeful_tools.imageio import verify_image
from trainer_adapter.data.parser import ParsedDataset

Progress = Callable[[int, int], None]


def verify_dataset(
    dataset: ParsedDataset, *, workers: int | None = None, progress: Progress | None = None
) -> None:
    """Raise :class:`InputFormatError` naming the first image or mask (in dataset order) that
    does not decode cleanly, is over the pixel limit, or is not the size its camera says."""
    checks: list[tuple[Path, int, int, str]] = []
    for index, path in enumerate(dataset.image_paths):
        camera = dataset.cameras[index]
        checks.append((path, camera.width_px, camera.height_px, "image"))
        mask = dataset.mask_paths[index] if dataset.mask_paths else None
        if mask is not None:
            checks.append((mask, camera.width_px, camera.height_px, "mask"))
    if not checks:
        return
    count = workers or min(8, os.cpu_count() or 1)
    pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="verify")
    try:
        sizes = pool.map(verify_image, [path for path, *_ in checks])
        for done, ((path, width, height, what), size) in enumerate(zip(checks, sizes), 1):
            if size != (width, height):
                raise InputFormatError(
                    path,
                    f"{what} is {size[0]}x{size[1]}, {dataset.transforms_path.name} says "
                    f"{width}x{height}",
                )
            if progress is not None:
                progress(done, len(checks))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
