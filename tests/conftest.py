"""Shared fixtures: the tiny generated dataset, an isolated image cache, the torch thread count."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # so ``import core`` works with a bare ``pytest`` too
    sys.path.insert(0, str(ROOT))

from fixtures import make_fixture_dataset  # noqa: E402

# The app's fast batch path compiles its backbone in the background (core.prediction.fastpath): the suite
# (and the app it starts) skip that; tests/test_fastpath.py compiles a small model on purpose.
os.environ.setdefault("DRESSCODE_COMPILE", "0")

# Two threads on the 2-core machines CI uses (the real-data reproduction of the shipped
# models' test metrics is most of the suite's time); DRESSCODE_TEST_THREADS=1 leaves a core
# to a training run sharing the machine.
TEST_THREADS = int(os.environ.get("DRESSCODE_TEST_THREADS", min(2, os.cpu_count() or 1)))
torch.set_num_threads(TEST_THREADS)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated Kaggle-layout dataset (see ``tests/fixtures.py``), made once per session."""
    return make_fixture_dataset(tmp_path_factory.mktemp("fashion-tiny"))


@pytest.fixture(autouse=True)
def _isolated_image_cache(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep decoded-image caches of generated data out of ``~/.cache`` (real-data tests may use it)."""
    if request.node.get_closest_marker("realdata") is None:
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    """CLI entry points set torch's thread count; put it back after each test."""
    yield
    if torch.get_num_threads() != TEST_THREADS:
        torch.set_num_threads(TEST_THREADS)


@pytest.fixture
def fresh_streamlit_caches() -> Iterator[None]:
    """Each AppTest starts with empty Streamlit caches (models are shared module-wide otherwise)."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()
