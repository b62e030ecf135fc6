"""Photos in (uploads and dataset images) and the dataset index: the catalog, the saved split and the
products that training shares with validation and test, cached."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import streamlit as st

from core.config import DEFAULT_SPLIT_FILE
from core.data.catalog import DEFAULT_CLASSES, DEFAULT_LABEL_COLUMN, load_styles
from core.data.products import products_in_train, twins_in_train
from core.data.split import get_or_make_split, load_split
from core.images.upload import UploadedPhoto, read_upload

UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "heic", "heif", "avif"]
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}  # split key → words for people

log = logging.getLogger(__name__)


@st.cache_data(show_spinner=False, max_entries=128)
def read_photo(filename: str, data: bytes):  # noqa: ANN201
    """Decode an upload (cached by content)."""
    return read_upload(filename, data)


def dataset_photo(catalog, pid: int):  # noqa: ANN001, ANN201 - UploadedPhoto
    """A dataset image as an upload; a file that vanished becomes a message, not a crash."""
    try:
        data = catalog.image_path(pid).read_bytes()
    except OSError:
        return UploadedPhoto(f"{pid}.jpg", "", error="listed in styles.csv but missing from the dataset folder")
    return read_photo(f"{pid}.jpg", data)


@st.cache_resource(show_spinner="Reading the dataset index …", max_entries=4)
def _catalog(root: str, classes: tuple[str, ...], label_column: str):  # noqa: ANN202
    return load_styles(root, classes, label_column)  # a failure is not cached: a fixed folder is read again


def get_catalog(  # noqa: ANN201
    root: str, classes: Sequence[str] = DEFAULT_CLASSES, label_column: str = DEFAULT_LABEL_COLUMN
):
    """The dataset index for the configured folder (class indices in ``classes`` order), or None
    (logged) when it cannot be read."""
    try:
        return _catalog(root, tuple(classes), label_column)
    except (OSError, KeyError, ValueError, StopIteration) as exc:
        log.warning("dataset index of %s could not be read: %r", root, exc)
        return None


@st.cache_data(show_spinner=False)
def saved_split_of() -> dict[int, str]:
    """id → split name from the saved split (empty when there is none)."""
    if not DEFAULT_SPLIT_FILE.is_file():
        return {}
    return {int(i): s for s, ids in load_split(DEFAULT_SPLIT_FILE).items() for i in ids}


def _saved_split(catalog, left_out: tuple[int, ...] = ()) -> dict[str, list[int]] | None:  # noqa: ANN001
    """The saved split of this catalog (None without a split file), training ids ``left_out`` removed."""
    if catalog is None or not DEFAULT_SPLIT_FILE.is_file():
        return None
    split = dict(get_or_make_split(catalog, DEFAULT_SPLIT_FILE))
    gone = set(left_out)
    split["train"] = [i for i in split["train"] if i not in gone]
    return split


def _readable_catalog(root: str):  # noqa: ANN202
    """The catalog, for the cached helpers below: an unreadable folder raises, so that their
    caches never keep an answer computed without it (a fixed folder is then read again)."""
    catalog = get_catalog(root)
    if catalog is None:
        raise OSError(f"the dataset index of {root} cannot be read")
    return catalog


@st.cache_data(show_spinner=False)
def trained_product_twins(root: str) -> frozenset[int]:
    """Ids outside the training split whose product (same class, name without colours) training has."""
    catalog = _readable_catalog(root)
    split = _saved_split(catalog)
    if split is None:
        return frozenset()
    train = set(split["train"])
    return frozenset(products_in_train(catalog, split["train"], [i for i in catalog.ids if i not in train]))


@st.cache_data(show_spinner=False)
def products_seen_without(root: str, left_out: tuple[int, ...] = ()) -> dict | None:
    """:func:`twins_in_train` on the saved split, for a model trained without the ``left_out`` training ids."""
    catalog = _readable_catalog(root)
    split = _saved_split(catalog, left_out)
    return None if split is None else twins_in_train(catalog, split)
