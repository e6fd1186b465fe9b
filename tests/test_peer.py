"""The parity guard: where CI sets EYEFUL_REQUIRE_PEER, a parity test that skips fails."""

from __future__ import annotations

from pathlib import Path

import pytest
from peer import CI_ENV, FIXTURES, PEER_RUN, REQUIRE_PEER_ENV, ROOT

SKIPPING = """
import pytest
from peer import needs_peer

@pytest.mark.parity
@pytest.mark.skipif(True, reason="no peer here")
def test_marked():
    pass

@pytest.mark.parity
def test_skips_inside():
    pytest.skip("peer run unavailable")

@pytest.mark.skipif(True, reason="not a parity test")
def test_other():
    pass
"""


def _run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, required: str | None
) -> pytest.RunResult:
    here = Path(__file__).parent
    pytester.makeconftest((here / "conftest.py").read_text())
    pytester.makepyfile(peer=(here / "peer.py").read_text(), test_skipping=SKIPPING)
    pytester.makeini("[pytest]\nmarkers =\n    parity: nerfstudio parity\n")
    monkeypatch.delenv(CI_ENV, raising=False)
    if required is None:
        monkeypatch.delenv(REQUIRE_PEER_ENV, raising=False)
    else:
        monkeypatch.setenv(REQUIRE_PEER_ENV, required)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider")


def test_parity_skips_fail_when_required(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(pytester, monkeypatch, "1")
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped") == 1  # the test that is not about parity
    assert outcomes.get("errors", 0) + outcomes.get("failed", 0) == 2
    result.stdout.fnmatch_lines(["*parity test skipped in CI*"])
    assert result.ret != 0


def test_ci_requires_the_peer(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(pytester, monkeypatch, None)
    assert result.parseoutcomes() == {"skipped": 3}
    monkeypatch.setenv(CI_ENV, "true")
    assert pytester.runpytest_inprocess("-p", "no:cacheprovider").ret != 0


def test_parity_skips_are_skips_elsewhere(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for value in (None, "0"):
        assert _run(pytester, monkeypatch, value).parseoutcomes() == {"skipped": 3}


def test_shared_files_are_found_beside_the_checkout() -> None:
    assert FIXTURES.parent == PEER_RUN.parents[2] == ROOT.parent / "shared"
    assert (FIXTURES / "metashape-rig-2.3" / "cameras.xml").is_file()
    assert PEER_RUN.is_file()
