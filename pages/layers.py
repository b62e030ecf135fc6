"""Layers: what each registered layer of both models looks at, early edges to whole garment."""

from __future__ import annotations

from pages._entry import through_entry

through_entry()  # first, before the heavy imports below: a page run alone after a start goes back at once

import numpy as np
import streamlit as st

from core.explanation.overlay import COLORMAPS
from core.models.registry import get_spec
from pages.ui import drawing, pickers, resources, settings, wording

st.title("What does each layer see?")
st.caption(
    "Grad-CAM of every registered layer, from early edges to the whole garment. The whole strip "
    "comes from one forward and one backward pass per model."
)

names = settings.chosen_models()
models, classes = resources.chosen_loaded(names)

photo = pickers.photo_picker("layers", 0, from_classify=True)

c1, c2 = st.columns(2)  # two a row: at 800 px three cut the toggle's label short
with c1:
    target, contrast = pickers.class_and_contrast("layers_target", classes)
cmap = c2.selectbox("Colour map", COLORMAPS, key="layers_cmap", persist_state="session")
opacity = c2.slider("Heatmap opacity", 0.0, 1.0, 0.5, 0.05, key="layers_opacity", persist_state="session")

if photo is None:
    st.stop()
if photo.error:
    st.warning(f"{wording.plain(photo.filename)}: {photo.error}", icon=":material/block:")
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
    exp = resources.explain(name, photo.digest, photo.native, paths, target, contrast)
    st.caption(
        f"Predicted **{classes[exp.predicted]}** ({exp.probs[exp.predicted]:.1%}); maps explain "
        f"**{wording.explained_as(exp, classes, False)}**. Each map is scaled to its own maximum."
        + (f" {said}" if (said := wording.nothing_to_contrast(exp, classes, contrast, "It")) else "")
    )
    cols = st.columns(n_cols)
    for col, layer in zip(cols, spec.cam_layers):
        img = drawing.overlay_image(exp, layer.path, opacity, cmap, True)
        h, w = exp.maps[layer.path].shape
        col.image(img, caption=f"{layer.label} — map {w}×{h}", width="stretch")
        if note := wording.flat_map_note(exp, layer.path, classes):
            col.caption(note)
