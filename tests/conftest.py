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

# The cores CI has (2) shared among the pytest-xdist workers (``-n 2`` in pyproject.toml: one thread
# each), or both for ``pytest -n 0``; ``DRESSCODE_TEST_THREADS=1 pytest -n 0`` leaves a core to a
# training run sharing the machine.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
TEST_THREADS = int(os.environ.get("DRESSCODE_TEST_THREADS", max(1, min(2, os.cpu_count() or 1) // WORKERS)))
torch.set_num_threads(TEST_THREADS)


# The default run's longest tests (minutes each on one worker, pytest --durations), in this order at the front:
# pytest-xdist hands the first tests out in turn (framing and occlusion to one worker, load and reliability to the
# other), so the rest runs beside them instead of one worker waiting on them at the end.
LONGEST_FIRST = (
    "test_shipped_models_keep_their_answer_on_framed_test_photos",
    "test_five_concurrent_sessions_each_see_their_own_results",
    "test_shipped_default_maps_point_where_occlusion_hurts[resnet50]",
    "test_reliability_script_runs_without_the_browser_part",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move the longest tests to the front, in ``LONGEST_FIRST`` order (the rest keep theirs)."""

    def rank(item: pytest.Item) -> int:
        return next((k for k, name in enumerate(LONGEST_FIRST) if name in item.nodeid), len(LONGEST_FIRST))

    items.sort(key=rank)


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
