"""What a visitor's session keeps across pages: the photos dropped on Classify.

Streamlit forgets a widget's value when its page is not drawn, and a file uploader's value cannot be
put back through ``st.session_state``. So the photos live here, as (file name, bytes) under keys no
widget owns: the ones the drop zone holds now, and the ones kept from earlier (a drop zone that
came back after a visit to another page starts empty; a sample photo never was in it). Settings
widgets keep their own values with ``persist_state="session"``. Streamlit only, no torch: Layers
reads the photos too.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

Photo = tuple[str, bytes]  # (file name, bytes), as the upload came

KEPT = "photos_kept"  # photos kept from earlier in the session: not in the drop zone now
DROPPED = "photos_dropped"  # what the drop zone held at its last run
KEPT_PICKER = "photos_kept_picker"  # the multiselect that lists the kept photos


def _kept() -> list[Photo]:
    return st.session_state.setdefault(KEPT, [])


def session_photos() -> list[Photo]:
    """Every photo in play this session, in order: the kept ones, then the drop zone's (each once)."""
    kept = _kept()
    return kept + [p for p in st.session_state.get(DROPPED, []) if p not in kept]


def keep_photo(name: str, data: bytes) -> None:
    """Add a photo that did not come through the drop zone (a sample), unless it is already in play."""
    if (name, data) not in session_photos():
        _kept().append((name, data))


def clear_kept() -> None:
    """Forget the kept photos (the drop zone's own have their × buttons)."""
    st.session_state[KEPT] = []


def _label(i: int, photo: Photo) -> str:
    return f"{i + 1}. {photo[0]}"  # the kept photos come first, so this is their number in the results table


def _drop_unpicked() -> None:
    picked = set(st.session_state[KEPT_PICKER])
    st.session_state[KEPT] = [p for i, p in enumerate(_kept()) if _label(i, p) in picked]


def drop_zone(label: str, key: str, types: Sequence[str], help: str) -> list[Photo]:
    """A multi-file uploader whose photos stay for the session, with the kept ones listed under it
    (× removes one, *Clear kept photos* all of them). Returns :func:`session_photos`."""
    if key not in st.session_state:  # a new drop zone (the page came back): what the last one held is kept
        for photo in st.session_state.pop(DROPPED, []):
            keep_photo(*photo)
    files = st.file_uploader(label, type=list(types), accept_multiple_files=True, key=key, help=help)
    st.session_state[DROPPED] = [(f.name, f.getvalue()) for f in files or []]
    kept = _kept()
    if kept:
        labels = [_label(i, p) for i, p in enumerate(kept)]
        st.session_state[KEPT_PICKER] = labels  # the list always shows every kept photo
        left, right = st.columns([5, 1], vertical_alignment="bottom")
        left.multiselect(
            "Kept from earlier in this session",
            labels,
            key=KEPT_PICKER,
            on_change=_drop_unpicked,
            help="Photos dropped before a visit to another page, and sample photos. They stay for the session "
            "(the drop zone itself starts empty again); × removes one.",
        )
        right.button("Clear kept photos", key="photos_clear_kept", on_click=clear_kept)
    return session_photos()
