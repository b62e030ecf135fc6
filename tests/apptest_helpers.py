"""What the AppTest files share: the app started from its entry script, the skip when the shipped
weights are absent, and (with :func:`conftest.fresh_streamlit_caches`) empty Streamlit caches per test."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.models.registry import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 300

needs_shipped_weights = pytest.mark.skipif(
    not all(spec.weights_file.is_file() for spec in REGISTRY.values()), reason="shipped weights are not present"
)
# module-level marks of an AppTest file: the weights' skip and fresh caches for each test
APPTEST_MARKS = [needs_shipped_weights, pytest.mark.usefixtures("fresh_streamlit_caches")]


def app() -> AppTest:
    """The app from ``streamlit_app.py``, run once, with no exception on its first page."""
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    return at
