"""``python -m bench`` / ``make bench``: every benchmark, each printing ratios against a baseline
measured in the same run. Pass names to run a subset: ``python -m bench convert downscale``.

Each benchmark is also runnable alone with its own options (``python -m bench.download --help``).
"""

from __future__ import annotations

import subprocess
import sys

#: name -> arguments for a run that finishes in minutes on 2 cores
BENCHMARKS: dict[str, list[str]] = {
    "convert": [],
    "download": ["--quick"],
    "downscale": ["--count", "100"],
    "eval_memory": [],
    "loader": [],
    "lazy_quality": [],  # the slowest: 16 training runs, about 30 minutes on 2 cores
    "verify": [],
    "train": ["--budget", "30"],
    # needs nerfstudio's own environment (../shared/tools/nerfstudio-peer/train/setup.sh)
    "vs_nerfstudio": ["--rays", "1024", "--steps", "31", "--from", "10"],
}


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"error: unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
        return 2
    failed = []
    for name in names or list(BENCHMARKS):
        print(f"\n=== bench.{name} {' '.join(BENCHMARKS[name])}", flush=True)
        code = subprocess.run([sys.executable, "-m", f"bench.{name}", *BENCHMARKS[name]]).returncode
        if code:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
