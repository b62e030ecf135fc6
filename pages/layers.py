"""Layers: what each registered layer of both models looks at, early edges to whole garment."""

from __future__ import annotations

from pages._entry import through_entry

through_entry()  # first, before the heavy imports below: a page run alone after a start goes back at once

import numpy as np
import streamlit as st

from core.models import get_spec
from core.overlay import COLORMAPS
from pages import _session, _ui

st.title("What does each layer see?")
st.caption(
    "Grad-CAM of every registered layer, from early edges to the whole garment. The whole strip "
    "comes from one forward and one backward pass per model."
)

names = _ui.chosen_models()
models, classes = _ui.chosen_loaded(names)

FROM_CLASSIFY = "photos from Classify"
on_classify = _session.session_photos()  # (name, bytes) of the photos dropped on Classify, or its samples
source = st.radio(
    "Photo",
    ["upload", "dataset sample", FROM_CLASSIFY],
    index=2 if on_classify else 0,  # the photos already on Classify, when there are some
    horizontal=True,
    key="layers_source",
)
photo = None
if source == FROM_CLASSIFY:
    if not on_classify:
        st.info("No photos on Classify yet: drop some there, or upload one here.")
    else:
        pick = st.selectbox(  # no key: a changed list of photos starts again at the first
            "Which photo", range(len(on_classify)), format_func=lambda i: f"{i + 1}. {on_classify[i][0]}"
        )
        photo = _ui.read_photo(*on_classify[pick])
elif source == "upload":
    f = st.file_uploader("One product photo", type=_ui.UPLOAD_TYPES, key="layers_upload")
    if f is not None:
        photo = _ui.read_photo(f.name, f.getvalue())
else:
    root = _ui.data_dir()
    catalog = _ui.get_catalog(str(root)) if root else None
    if catalog is None:
        st.info(_ui.no_dataset_note("dataset samples are unavailable; upload a photo instead."))
    else:
        photo = _ui.dataset_sample(catalog, "layers", 0)

c1, c2 = st.columns(2)  # two a row: at 800 px three cut the toggle's label short
with c1:
    target, contrast = _ui.class_and_contrast("layers_target", classes)
cmap = c2.selectbox("Colour map", COLORMAPS, key="layers_cmap", persist_state="session")
opacity = c2.slider("Heatmap opacity", 0.0, 1.0, 0.5, 0.05, key="layers_opacity", persist_state="session")

if photo is None:
    st.stop()
if photo.error:
    st.warning(f"{_ui.plain(photo.filename)}: {photo.error}", icon=":material/block:")
    st.stop()

st.image(np.asarray(photo.native), caption="the 60×80 canvas every model starts from", width=120)
# one column grid for every model (as many columns as the model with the most layers), each overlay
# filling its column: overlays of all models show at one size, which their captions no longer stretch
n_cols = max(len(get_spec(n).cam_layers) for n in names)
for name in dict.fromkeys(names):
    spec = get_spec(name)
    st.subheader(spec.title)
    if not models[name].ok:
        st.error(f"This model is unavailable: {models[name].error}")
        continue
    paths = tuple(c.path for c in spec.cam_layers)
    exp = _ui.explain(name, photo.digest, photo.native, paths, target, contrast)
    st.caption(
        f"Predicted **{classes[exp.predicted]}** ({exp.probs[exp.predicted]:.1%}); maps explain "
        f"**{_ui.explained_as(exp, classes, False)}**. Each map is scaled to its own maximum."
        + (f" {said}" if (said := _ui.nothing_to_contrast(exp, classes, contrast, "It")) else "")
    )
    cols = st.columns(n_cols)
    for col, layer in zip(cols, spec.cam_layers):
        img = _ui.overlay_image(exp, layer.path, opacity, cmap, True)
        h, w = exp.maps[layer.path].shape
        col.image(img, caption=f"{layer.label} — map {w}×{h}", width="stretch")
        if note := _ui.flat_map_note(exp, layer.path, classes):
            col.caption(note)
