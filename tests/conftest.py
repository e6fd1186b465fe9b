"""Shared pytest fixtures. Each block below belongs to one feature; add yours as a new block."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from peer import CI_ENV, REQUIRE_PEER_ENV, peer_required

pytest_plugins = ("pytester",)  # tests/test_peer.py runs pytest on a small test file

# ---------------------------------------------------------------------------------------------
# Synthetic captures (eyeful_tools.synth). Small sizes so both together cost ~1-2 s; each is
# generated once per session. Treat the folders as read-only (copy before modifying).

SYNTH_TEST_SIZE = (96, 144)  # images-jpeg-2k / images-2k; images-jpeg-1k is 50x75
SYNTH_TEST_POSITIONS = 4


@pytest.fixture(scope="session")
def synth_v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A v2 (pinhole, cameras 10..17, master 13, held-out 17) capture dir, 4 positions."""
    from eyeful_tools.synth import synthesize

    out = tmp_path_factory.mktemp("synth") / "synth-v2"
    synthesize(out, rig="v2", positions=SYNTH_TEST_POSITIONS, size=SYNTH_TEST_SIZE, supersample=1)
    return out


@pytest.fixture(scope="session")
def synth_v1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A v1 (fisheye, cameras 0..6, master 6, held-out 5) capture dir, 4 positions."""
    from eyeful_tools.synth import synthesize

    out = tmp_path_factory.mktemp("synth") / "synth-v1"
    synthesize(out, rig="v1", positions=SYNTH_TEST_POSITIONS, size=SYNTH_TEST_SIZE, supersample=1)
    return out


# ---------------------------------------------------------------------------------------------
# Parity with nerfstudio itself (tests/peer.py): in CI a parity test that skips is a failure.


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.get_closest_marker("parity") and peer_required():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (
            f"parity test skipped in CI ({CI_ENV} or {REQUIRE_PEER_ENV} set): {reason}"
        )


# ---------------------------------------------------------------------------------------------
# torch tests: one intra-op thread (use with pytest.mark.usefixtures("one_torch_thread"))


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core runner, OpenMP threads spinning against other
    processes made the training tests 5x slower (measured); one thread loses little when idle."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# tests marked gpu need a CUDA device: skipped without one (``make gpu-check`` runs them)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu = [item for item in items if "gpu" in item.keywords]
    if not gpu:
        return
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    if not cuda:
        skip = pytest.mark.skip(reason="needs a CUDA device (make gpu-check on a CUDA machine)")
        for item in gpu:
            item.add_marker(skip)
