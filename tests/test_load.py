"""A quick version of ``python -m bench.load``: 5 concurrent real sessions, 2 rounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.models.registry import REGISTRY

pytest.importorskip("playwright.async_api")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path("/usr/lib/chromium/chromium").exists(), reason="Debian chromium not installed"),
    pytest.mark.skipif(
        not all(s.weights_file.is_file() for s in REGISTRY.values()), reason="shipped weights are not present"
    ),
]


def test_five_concurrent_sessions_each_see_their_own_results() -> None:
    from bench.load import run_load

    res = run_load(sessions=5, rounds=2, timeout_s=240)
    assert res["requests"] == 10
    assert res["errors"] == 0, res["failures"]
    assert res["cross_talk"] == 0, res["failures"]
    assert res["tracebacks_in_server_log"] == 0
    assert res["median_s"] is not None
