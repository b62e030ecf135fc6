"""Data & augmentation: class counts before/after balancing, and the augmentation explorer."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core.augment import FILL_MODES, AugmentParams, augment_variants
from core.data import DEFAULT_SPLIT_FILE, SPLITS, load_split
from core.models import REGISTRY
from pages import _ui

st.title("Data & augmentation")

# ---------------------------------------------------------------- counts
card = next((c for c in (_ui.get_card(n)[0] for n in REGISTRY) if c is not None), None)
counts = card.data.get("split_counts") if card else None
if counts:
    classes = card.classes
    st.subheader("Class counts per split")
    fig = go.Figure()
    for s in SPLITS:
        fig.add_bar(name=s, x=classes, y=[counts[s][c] for c in classes], text=[counts[s][c] for c in classes])
    fig.update_layout(
        barmode="group",
        height=320,
        yaxis_type="log",
        yaxis_title="images (log scale)",
        margin=dict(l=0, r=0, t=10, b=0),
    )
    st.plotly_chart(fig, key="split_counts")
    sizes = {s: sum(counts[s].values()) for s in SPLITS}
    st.caption(
        " · ".join(f"{s}: {n:,} images" for s, n in sizes.items())
        + f" · split file {DEFAULT_SPLIT_FILE.name} (identical images never cross splits)"
    )
    st.subheader("Training set before and after balancing")
    train = counts["train"]
    top = max(train.values())
    fig = go.Figure()
    fig.add_bar(name="original", x=classes, y=[train[c] for c in classes], text=[train[c] for c in classes])
    fig.add_bar(
        name="augmented copies added",
        x=classes,
        y=[top - train[c] for c in classes],
        text=[top - train[c] for c in classes],
    )
    fig.update_layout(barmode="stack", height=320, margin=dict(l=0, r=0, t=10, b=0))
    st.plotly_chart(fig, key="balance_counts")
    st.caption(
        "Strategy (a) adds augmented copies of minority images until every class matches the largest; "
        "strategy (b) draws classes with equal probability and augments every draw afresh. Each model "
        "card records which one trained it."
    )
elif DEFAULT_SPLIT_FILE.is_file():
    split = load_split(DEFAULT_SPLIT_FILE)
    st.write({s: len(v) for s, v in split.items()})
else:
    st.info("No model card or split file yet: train a model first (see README).")

# ---------------------------------------------------------------- explorer
st.subheader("Augmentation explorer")
st.caption("The same function training uses, with your parameters.")
source = st.radio("Photo", ["upload", "dataset sample"], horizontal=True, key="aug_source")
photo = None
if source == "upload":
    f = st.file_uploader("One product photo", type=_ui.UPLOAD_TYPES, key="aug_upload")
    if f is not None:
        photo = _ui.read_photo(f.name, f.getvalue())
else:
    root = _ui.data_dir()
    catalog = _ui.get_catalog(str(root)) if root else None
    if catalog is None:
        st.info("No dataset folder is configured (sidebar); upload a photo instead.")
    else:
        cls = st.selectbox("Class", catalog.classes, index=len(catalog.classes) - 1, key="aug_class")
        ids = [i for i, k in zip(catalog.ids, catalog.labels) if catalog.classes[k] == cls]
        pick = st.number_input("Sample number", 0, len(ids) - 1, 0, key="aug_pick")
        pid = ids[int(pick)]
        photo = _ui.dataset_photo(catalog, pid)

d = AugmentParams()
c1, c2, c3 = st.columns(3)
rotation = c1.slider("Rotation (± degrees)", 0.0, 45.0, d.rotation, 1.0, key="aug_rotation")
shear = c2.slider("Shear (± degrees)", 0.0, 30.0, d.shear, 1.0, key="aug_shear")
shift = c3.slider("Shift (± fraction)", 0.0, 0.3, d.shift, 0.01, key="aug_shift")
c4, c5, c6, c7 = st.columns(4)
hflip = c4.checkbox("Horizontal flip", d.hflip, key="aug_flip")
fill = c5.selectbox("Fill mode", list(FILL_MODES), key="aug_fill")
n = c6.slider("Variants", 4, 24, 12, 4, key="aug_n")
seed = c7.number_input("Seed", 0, 10_000, 0, key="aug_seed")

if photo is not None:
    if photo.error:
        st.warning(f"{_ui.plain(photo.filename)}: {photo.error}", icon=":material/block:")
    else:
        params = AugmentParams(rotation=rotation, shear=shear, shift=shift, hflip=hflip, fill_mode=fill)
        variants = augment_variants(photo.native, n, params, seed=int(seed))
        st.image(np.asarray(photo.native), caption="original (60×80 canvas)", width=120)
        cols = st.columns(6)
        for k, v in enumerate(variants):
            cols[k % 6].image(v.permute(1, 2, 0).numpy(), caption=f"variant {k + 1}", width=120)
