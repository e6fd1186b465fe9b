"""nerfstudio 1.1.5 itself (the "peer" venv) and the shared fixtures, found from the checkout.

``../shared`` beside the checkout holds the peer harness and the fixtures; the peer venv is
built by ``bash ../shared/tools/nerfstudio-peer/setup.sh`` (``.ci/run`` does it). Tests that
compare with nerfstudio are marked ``parity``: they skip where the venv is missing, except
in CI (``CI=true``, which CI services set, or ``EYEFUL_REQUIRE_PEER=1``, which ``.ci/run``
sets), where such a skip fails the run.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures"
PEER_RUN = SHARED / "tools" / "nerfstudio-peer" / "run_ns.py"
PEER_VENV = Path(os.environ.get("PEER_VENV") or Path.home() / ".cache/eyeful-peer/venv")
PEER_PY = PEER_VENV / "bin" / "python"
#: set (to anything but "" or "0") where a skipped parity test must fail the run; so is CI
REQUIRE_PEER_ENV = "EYEFUL_REQUIRE_PEER"
CI_ENV = "CI"

F = TypeVar("F", bound=Callable[..., object])


def peer_required() -> bool:
    return any(
        os.environ.get(name, "") not in ("", "0", "false") for name in (REQUIRE_PEER_ENV, CI_ENV)
    )


def needs_peer(test: F) -> F:
    """Mark a test ``parity`` and skip it where the peer venv or harness is missing."""
    missing = not (PEER_PY.is_file() and PEER_RUN.is_file())
    reason = f"nerfstudio peer venv not built (bash {SHARED}/tools/nerfstudio-peer/setup.sh)"
    return pytest.mark.parity(pytest.mark.skipif(missing, reason=reason)(test))


def peer_command(*args: str) -> list[str]:
    return [str(PEER_PY), str(PEER_RUN), *args]


def run_peer(*args: str) -> None:
    """Run a ``run_ns.py`` subcommand; our PYTHONPATH must not leak into the peer's Python."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    subprocess.run(peer_command(*args), check=True, capture_output=True, env=env)
