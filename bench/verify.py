"""``python -m bench.verify``: what strict JPEG decoding and the pre-training image check cost.

On generated 1368x2048 JPEGs (the EyefulTower jpeg_2k size; :func:`bench.downscale.make_set`,
quality 92 and 100), CPU time per image, one thread, best of ``--repeat``:

- baseline: ``cv2.imread`` + ``cvtColor`` into a slot (what the loader did before: lenient,
  a truncated file comes back grey-filled);
- strict: :func:`eyeful_tools.imageio.read_image_into` (simplejpeg, libjpeg warnings raise);
- verify: :func:`eyeful_tools.imageio.verify_image`, the check ``eyeful train`` runs on every
  image before its first step (1/8-scale grey entropy decode).

Targets: strict <= 1.1x the baseline (the loader's throughput is not paid for safety); verify
<= 0.8x the baseline (the up-front pass costs less than one more decode of the dataset).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from bench.downscale import HEIGHT_PX, QUALITIES, WIDTH_PX, make_set
from eyeful_tools import imageio

STRICT_TARGET = 1.1
VERIFY_TARGET = 0.8


def _cpu_ms_per_image(work: Callable[[Path], object], files: list[Path], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for path in files:
            work(path)
        best = min(best, time.process_time() - start)
    return 1e3 * best / len(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=24, help="images per quality")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    slot = np.empty((HEIGHT_PX, WIDTH_PX, 3), np.uint8)

    def baseline(path: Path) -> None:
        decoded = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert decoded is not None
        cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB, dst=slot)

    def strict(path: Path) -> None:
        assert imageio.read_image_into(path, slot) is None

    missed = []
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        for quality in QUALITIES:
            root = Path(tmp) / f"q{quality}"
            root.mkdir()
            make_set(root, args.count, quality)
            files = sorted(root.rglob("*.jpg"))
            times = {
                name: _cpu_ms_per_image(work, files, args.repeat)
                for name, work in (
                    ("baseline", baseline),
                    ("strict", strict),
                    ("verify", imageio.verify_image),
                )
            }
            ratios = {name: times[name] / times["baseline"] for name in ("strict", "verify")}
            print(
                f"quality {quality}: baseline {times['baseline']:.1f} ms/image; strict "
                f"{times['strict']:.1f} ms ({ratios['strict']:.2f}x, target <= {STRICT_TARGET}); "
                f"verify {times['verify']:.1f} ms ({ratios['verify']:.2f}x, target <= "
                f"{VERIFY_TARGET}); 1000 images verified in {times['verify']:.1f} s of CPU"
            )
            if ratios["strict"] > STRICT_TARGET:
                missed.append(f"strict decode at quality {quality}")
            if ratios["verify"] > VERIFY_TARGET:
                missed.append(f"verify at quality {quality}")
    if missed:
        print(f"missed: {', '.join(missed)}")
        return 1
    print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
