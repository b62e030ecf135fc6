"""Pickers shared by the pages: the one-photo picker of Layers and Data (upload, dataset sample or a
photo from Classify) and the "Explain which class" picker of Classify and Layers."""

from __future__ import annotations

import streamlit as st

from core.images.upload import UploadedPhoto
from pages import _session
from pages.ui.dataset import (
    UPLOAD_TYPES,
    dataset_photo,
    get_catalog,
    read_photo,
    saved_split_of,
    trained_product_twins,
)
from pages.ui.settings import data_dir, no_dataset_note

FROM_CLASSIFY = "photos from Classify"
SAMPLE_SOURCES = {  # label → split names; held-out images first, so a demo does not show memorised ones
    "test (held out)": ("test",),
    "validation": ("val",),
    "training (seen by the models)": ("train",),
    "all images": ("train", "val", "test", None),
}
CONTRAST_HELP = (
    "Off: what speaks for the chosen class. On: what speaks for it *more than* for the class each model "
    "predicted ('why not Formal?'): Grad-CAM of the chosen class's logit minus the predicted one's."
)


def photo_picker(key: str, default_class: int = 0, from_classify: bool = False) -> UploadedPhoto | None:
    """One photo to look at: an upload, a dataset sample (of class ``default_class`` at first; a negative
    one counts from the end) or, with ``from_classify``, one of the photos on Classify (the choice at
    first when there are some). Its widgets' keys start with ``key``; None until there is a photo."""
    on_classify = _session.session_photos() if from_classify else []  # (name, bytes), or Classify's samples
    options = ["upload", "dataset sample", *([FROM_CLASSIFY] if from_classify else [])]
    source = st.radio(
        "Photo",
        options,
        index=2 if on_classify else 0,  # the photos already on Classify, when there are some
        horizontal=True,
        key=f"{key}_source",
    )
    if source == FROM_CLASSIFY:
        if not on_classify:
            st.info("No photos on Classify yet: drop some there, or upload one here.")
            return None
        pick = st.selectbox(  # no key: a changed list of photos starts again at the first
            "Which photo", range(len(on_classify)), format_func=lambda i: f"{i + 1}. {on_classify[i][0]}"
        )
        return read_photo(*on_classify[pick])
    if source == "upload":
        f = st.file_uploader("One product photo", type=UPLOAD_TYPES, key=f"{key}_upload")
        return None if f is None else read_photo(f.name, f.getvalue())
    root = data_dir()
    catalog = get_catalog(str(root)) if root else None
    if catalog is None:
        st.info(no_dataset_note("dataset samples are unavailable; upload a photo instead."))
        return None
    return dataset_sample(catalog, key, default_class % len(catalog.classes))


def dataset_sample(catalog, key: str, default_class: int = 0):  # noqa: ANN001, ANN201 - UploadedPhoto | None
    """Class, split and sample pickers for a dataset image; says the image's id and split."""
    split_of = saved_split_of()
    c1, c2, c3 = st.columns([2, 2, 1])
    cls = c1.selectbox("Class", catalog.classes, index=default_class, key=f"{key}_class")
    sources = SAMPLE_SOURCES if split_of else {"all images": (None,)}
    source = c2.selectbox("Images from", list(sources), key=f"{key}_from")
    wanted = sources[source]
    ids = [i for i, k in zip(catalog.ids, catalog.labels) if catalog.classes[k] == cls and split_of.get(i) in wanted]
    if not ids:
        st.info(f"No {cls} images in {source}.")
        return None
    pick = c3.number_input(f"Sample (1–{len(ids)})", 1, len(ids), 1, key=f"{key}_pick")
    pid = ids[int(pick) - 1]
    where = split_of.get(pid)
    seen = {
        "train": "training split — the models learnt from this image",
        "val": "validation split — chose the checkpoint and the decision rule, never trained on",
        "test": "test split — never used for training or choices",
    }
    twin = " · a training image shows the same product (or a colour variant of it)"
    known = twin if where != "train" and pid in trained_product_twins(str(catalog.root)) else ""
    st.caption(f"id {pid} · {seen.get(where, 'not in the saved split')}{known}")
    return dataset_photo(catalog, pid)


def class_and_contrast(key: str, classes: list[str]) -> tuple[int | None, bool]:
    """The "Explain which class" picker with its "…over the prediction" toggle under it, drawn in
    the current container; returns (target class or None for the prediction, contrast). The toggle
    switches off when the picker goes back to the prediction, so it never comes back on unasked."""
    toggle_key = f"{key}_contrast"

    def back_to_prediction() -> None:
        if st.session_state[key] == "predicted class":
            st.session_state[toggle_key] = False

    label = st.selectbox(
        "Explain which class",
        ["predicted class", *classes],
        key=key,
        on_change=back_to_prediction,
        help="Pick a class to see what speaks for it in each model's eyes.",
        persist_state="session",  # kept through visits to other pages
    )
    target = None if label == "predicted class" else classes.index(label)
    contrast = st.toggle(
        "…over the prediction", key=toggle_key, disabled=target is None, help=CONTRAST_HELP, persist_state="session"
    )
    return target, contrast and target is not None
