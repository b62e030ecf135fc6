"""Trust: can this heatmap be trusted? The randomisation cascade, deletion and insertion curves and the
nearest training products of one photo, for one model and layer."""

from __future__ import annotations

from pages._entry import through_entry

through_entry()  # first, before the heavy imports below: a page run alone after a start goes back at once

import numpy as np
import streamlit as st

from core.explanation.overlay import cam_overlay
from core.models.registry import REGISTRY, get_spec
from pages.ui import pickers, resources, settings, trust, wording

st.title("Can this heatmap be trusted?")
st.caption(
    "Three checks of one photo's map. **Randomisation**: destroy the model's weights from the head down; a map "
    "that explains the model must stop looking like the trained model's. **Deletion and insertion**: remove the "
    "pixels the map ranks first; the class should go faster than with random pixels. **Similar training "
    "products**: what the model thinks the photo resembles. Where each model is weak: Evaluation."
)

names = list(REGISTRY)
c1, c2 = st.columns(2)
name = c1.selectbox(
    "Model",
    names,
    index=names.index(settings.chosen_models()[0]),
    format_func=lambda n: get_spec(n).title,
    key="trust_model",
)
spec = get_spec(name)
paths = [c.path for c in spec.cam_layers]
layer = c2.selectbox(
    "Layer",
    paths,
    index=paths.index(spec.default_cam_layer.path),
    format_func=lambda p: spec.cam_layer(p).short,
    key=f"trust_layer_{name}",
)
loaded = resources.get_model(name)
if not loaded.ok:
    st.error(f"This model is unavailable: {loaded.error}")
    st.stop()
classes = list(loaded.card.classes)

photo = pickers.photo_picker("trust", 1, from_classify=True)
if photo is None:
    st.stop()
if photo.error:
    st.warning(f"{wording.plain(photo.filename)}: {photo.error}", icon=":material/block:")
    st.stop()

exp = resources.explain(name, photo.digest, photo.native, tuple(paths), None)
cam = exp.maps[layer]
st.markdown(
    f"{spec.title} predicts **{classes[exp.predicted]}** ({exp.probs[exp.predicted]:.1%}); the maps explain "
    f"{classes[exp.predicted]} at {spec.cam_layer(layer).label}."
)
if note := wording.flat_map_note(exp, layer, classes):
    st.caption(f"{note} The checks below have nothing to rank.")

st.subheader("1. Randomisation check")
cascade = trust.photo_cascade(name, photo.digest, photo.native)
rows = cascade.mean(layer)
st.plotly_chart(trust.cascade_figure(cascade, layer), key="trust_cascade", config={"displayModeBar": False})
final = rows[-1]
verdict = (
    "it changed with the weights, as a map of the model should"
    if final["spearman"] < 0.5
    else "it still looks like the trained model's map: it shows the photo more than what the model learnt"
)
st.caption(
    f"On a copy of the model, the weights are re-initialised block by block from the head down ({len(rows) - 1} "
    f"steps: {rows[1]['step']} first, {rows[-1]['step']} last), and the map is recomputed for "
    f"{classes[exp.predicted]} after each step. Fully randomised, its Spearman correlation with the trained map is "
    f"{final['spearman']:.2f} and its SSIM {final['ssim']:.2f}: {verdict}."
)
picks = sorted({0, 1, len(rows) // 2, len(rows) - 1})
cols = st.columns(len(picks))
for col, k in zip(cols, picks):
    m = cascade.maps[k][0][layer]
    img = cam_overlay(m, exp.model_input, 0.5, "jet", True, None, 160)
    label = "trained" if k == 0 else f"up to {rows[k]['step']}"
    col.image(img, caption=f"{label} · ρ={rows[k]['spearman']:.2f}", width="stretch")

st.subheader("2. Deletion and insertion")
result = trust.full_curves(name, photo.digest, photo.native, layer, exp.target, cam)
st.plotly_chart(trust.curves_figure(result, classes[exp.target]), key="trust_curves", config={"displayModeBar": False})
s = result.summary()
st.caption(
    f"Deletion removes the pixels in the map's order, at random, and least important first; removed pixels are "
    f"{trust.FILL_WORDS[result.deletion_fill]}"
    + (", so a random order is not a salt-noise pattern of its own. " if result.deletion_fill == "road" else ". ")
    + f"Insertion starts from a blurred copy and puts the sharp pixels back in the same orders. Deletion AUC "
    f"{s['deletion_auc']:.2f} (random {s['deletion_auc_random']:.2f}, flipped {s['deletion_auc_flipped']:.2f}; "
    f"lower is better), insertion AUC {s['insertion_auc']:.2f} (random {s['insertion_auc_random']:.2f}, flipped "
    f"{s['insertion_auc_flipped']:.2f}; higher is better). In one line: "
    f"{trust.faithfulness.deletion_line(result, classes[exp.target])}."
)

st.subheader("3. Similar training products")
trust.similar_products(photo, [name], "trust", classes)
st.image(np.asarray(photo.native), caption="the 60×80 canvas the model saw", width=90)
