"""Build (once) and print the path of the cached synthetic capture used by the demo and tests.

Nothing large is committed: the capture is rendered on first use (a few seconds) into
``$EYEFUL_SYNTH_CACHE`` (default ``~/.cache/eyeful/synth``) and reused afterwards.

Example: python examples/synth_capture.py --rig v1
"""

from __future__ import annotations

import argparse

from eyeful_tools.synth import example_capture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rig", choices=("v1", "v2"), default="v2")
    parser.add_argument("--positions", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(example_capture(args.rig, positions=args.positions, seed=args.seed))


if __name__ == "__main__":
    main()
