"""Going through ``streamlit_app.py``: light on purpose (Streamlit only), so that a page can call
:func:`through_entry` before it imports torch and Captum."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

log = logging.getLogger(__name__)

_ENTRY = threading.local()  # a session's script runs in its own thread


@contextmanager
def entry_run() -> Iterator[None]:
    """Marks a run that went through ``streamlit_app.py`` (see :func:`through_entry`); a later
    run that skips it again gets its rerun again (Streamlit's test harness resets the pages mode
    before every run, so there each run after the second would otherwise skip the entry)."""
    _ENTRY.active = True
    st.session_state.pop("_entry_rerun", None)
    try:
        yield
    finally:
        _ENTRY.active = False


def through_entry() -> None:
    """Send a page run that skipped ``streamlit_app.py`` back through it.

    Until ``st.navigation`` has run once in a server process, Streamlit treats ``pages/`` as an
    old-style pages folder: the first visit straight to ``/layers`` (a bookmark, a browser refresh
    after a restart) would run ``pages/layers.py`` alone, without the page config, the model
    pickers or the sidebar. This leaves that mode the way ``st.navigation`` does and reruns, which
    goes through the entry script to the same page (same URL path, same page hash). Pages call it
    before their heavy imports, so the detour costs no torch import.
    """
    if getattr(_ENTRY, "active", False):
        return
    if st.session_state.get("_entry_rerun"):  # never loop: a second miss renders the page as it is
        log.warning("page run without streamlit_app.py even after a rerun")
        return
    st.session_state["_entry_rerun"] = True
    from streamlit.runtime.pages_manager import PagesManager  # streamlit is pinned (requirements.txt)

    PagesManager.uses_pages_directory = False
    st.rerun()
