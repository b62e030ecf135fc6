"""Can this heatmap be trusted? The checks' glue for Classify and the Trust page: the deletion line under
each map, the similar training products (nearest neighbours in each model's embedding) and the charts
of the randomisation cascade and of the deletion/insertion curves (computed by ``core.explanation``)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core.config import DEFAULT_SPLIT_FILE
from core.data.split import get_or_make_split
from core.explanation import faithfulness, neighbours, randomisation
from core.explanation.gradcam import Explanation
from core.models.registry import get_spec
from pages.ui import dataset, settings, wording
from pages.ui.resources import get_model

SPLIT_FILE = DEFAULT_SPLIT_FILE  # the saved split whose training images the neighbours come from
ORDER_NAMES = {"map": "the map's order", "random": "random order", "flipped": "flipped map (least important first)"}
ORDER_COLOURS = {"map": "#3b5bdb", "random": "#868e96", "flipped": "#e8590c"}
FILL_WORDS = {
    "road": "filled in from their neighbours (ROAD's imputation)",
    "white": "white (the catalogue background)",
    "blur": "a blurred copy of the photo",
}


# ---------------------------------------------------------------- deletion / insertion
@st.cache_data(show_spinner=False, max_entries=256)
def quick_deletion(
    name: str, digest: str, _native: np.ndarray, layer: str, target: int, versus: int | None, _cam: np.ndarray
) -> faithfulness.Faithfulness:
    """Deletion curves (pixels filled in from their neighbours) of one map in the map's order and at random:
    one batched forward of 1 + 2 × 7 images; cached by model, photo, layer, class and contrast."""
    served = get_model(name).served
    assert served is not None
    return faithfulness.curves(
        served, _native, _cam, target, faithfulness.QUICK_FRACTIONS, orders=("map", "random"), insertion=False
    )


def deletion_note(container, name: str, photo, exp: Explanation, layer: str, classes: list[str]) -> None:  # noqa: ANN001
    """Classify's one line under a model's map: what deleting the map's top 10 % does to the
    class the map explains, against 10 % deleted at random."""
    result = quick_deletion(name, photo.digest, photo.native, layer, exp.target, exp.versus, exp.maps[layer])
    line = faithfulness.deletion_line(result, classes[exp.target])
    container.caption(
        f"Deletion check: {line}. Deleted pixels are {FILL_WORDS[result.deletion_fill]}; the Trust page plots "
        "the whole curve.",
        help="A map the model really relies on loses the class faster than random pixels do.",
    )


@st.cache_data(show_spinner="Deleting and inserting pixels …", max_entries=64)
def full_curves(name: str, digest: str, _native: np.ndarray, layer: str, target: int, _cam: np.ndarray):  # noqa: ANN201
    """Deletion (imputed) and insertion (from a blurred copy) curves for the map, random order and flipped map."""
    served = get_model(name).served
    assert served is not None
    return faithfulness.curves(served, _native, _cam, target)


def curves_figure(result: faithfulness.Faithfulness, class_name: str) -> go.Figure:
    """Deletion and insertion curves side by side, one line per pixel order, AUCs in the legend."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("Deletion (pixels → filled in)", "Insertion (blurred → photo)"))
    for col, curves in ((1, result.deletion), (2, result.insertion)):
        for order, curve in curves.items():
            fig.add_trace(
                go.Scatter(
                    x=curve.fractions,
                    y=curve.probs,
                    mode="lines+markers",
                    name=f"{ORDER_NAMES[order]} (AUC {curve.auc:.2f})",
                    line=dict(color=ORDER_COLOURS[order], dash="solid" if col == 1 else "dot"),
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="share of pixels", tickformat=".0%", range=[0, 1])
    fig.update_yaxes(title_text=f"P({class_name})", range=[0, 1.02])
    fig.update_layout(height=320, margin=dict(l=0, r=0, t=30, b=0), legend=dict(orientation="h", y=-0.3))
    return fig


# ---------------------------------------------------------------- randomisation cascade
@st.cache_data(show_spinner="Randomising the model, block by block …", max_entries=32)
def photo_cascade(name: str, digest: str, _native: np.ndarray) -> randomisation.Cascade:
    """The cascade of every registered layer for one photo (the class the trained model predicts)."""
    served = get_model(name).served
    assert served is not None
    return randomisation.cascade(served, _native[None], keep_maps=True)


def cascade_figure(result: randomisation.Cascade, layer: str) -> go.Figure:
    """Spearman and SSIM of the map against the trained model's, step by step down the cascade."""
    rows = result.mean(layer)
    steps = [r["step"] if k < 2 else f"+ {r['step']}" for k, r in enumerate(rows)]
    fig = go.Figure()
    for key, title, colour in (("spearman", "Spearman rank correlation", "#3b5bdb"), ("ssim", "SSIM", "#e8590c")):
        fig.add_trace(
            go.Scatter(x=steps, y=[r[key] for r in rows], mode="lines+markers", name=title, marker_color=colour)
        )
    fig.update_layout(
        height=340,
        margin=dict(l=0, r=0, t=10, b=0),
        yaxis=dict(range=[-0.5, 1.05], title="similarity to the trained model's map"),
        xaxis=dict(title="weights re-initialised, head first (cumulative)", tickangle=-45),
        legend=dict(orientation="h", y=1.1),
    )
    return fig


# ---------------------------------------------------------------- similar training products
def training_ids(catalog) -> list[int] | None:  # noqa: ANN001
    """The saved split's training ids in this catalog (None without a saved split)."""
    if not SPLIT_FILE.is_file():
        return None
    return list(get_or_make_split(catalog, SPLIT_FILE)["train"])


@st.cache_resource(show_spinner=False, max_entries=6)
def neighbour_index(name: str, root: str, split_file: str, split_mtime: int) -> neighbours.NeighbourIndex | None:
    """One model's index over the training split (from the disk cache when built before); None without one."""
    catalog = dataset.get_catalog(root)
    served = get_model(name).served
    ids = training_ids(catalog) if catalog is not None else None
    if served is None or not ids:
        return None
    return neighbours.build_index(served, catalog, ids)[0]


@st.cache_data(show_spinner=False, max_entries=256)
def nearest(name: str, digest: str, _native: np.ndarray, root: str) -> neighbours.Neighbours | None:
    """The photo's nearest training images for one model (the index built first if needed)."""
    index = neighbour_index(name, root, str(SPLIT_FILE), SPLIT_FILE.stat().st_mtime_ns if SPLIT_FILE.is_file() else 0)
    served = get_model(name).served
    if index is None or served is None or not len(index):
        return None
    return index.nearest(served, _native[None], neighbours.K)[0]


def no_neighbours_note() -> str | None:
    """Why similar training products cannot be shown (no dataset, no saved split), or None when they can."""
    if settings.data_dir() is None:
        return settings.no_dataset_note(
            "similar training products cannot be shown (they come from its training images)."
        )
    if not SPLIT_FILE.is_file():
        return "There is no saved split (weights/split.json), so the training images are not known."
    return None


def similar_products(photo, names: list[str], key: str, classes: list[str]) -> None:  # noqa: ANN001
    """The k training products nearest to ``photo`` in each model's embedding, with their labels, behind a
    toggle (a toggle, not an expander: Classify's batch rows are expanders already) that computes when
    switched on (the first time builds a model's index: minutes on the full training split, then cached on
    disk); a sentence instead when there is no dataset."""
    if note := no_neighbours_note():
        st.caption(f"Similar training products: {note}")
        return
    shown = st.toggle(
        "Similar training products",
        key=f"similar_{key}_{photo.digest}",
        help="The training images nearest to this photo in each model's embedding. The first time builds each "
        "model's index over the training split (1–4 minutes on 2 cores), kept on disk after; "
        "`python -m core.explanation.neighbours` builds them beforehand.",
    )
    if not shown:
        return
    with st.container(border=True):
        root = str(settings.data_dir())
        catalog = dataset.get_catalog(root)
        for name in dict.fromkeys(names):
            title = get_spec(name).title
            if not get_model(name).ok:
                st.caption(f"{title} is unavailable.")
                continue
            with st.spinner(f"Finding {title}'s nearest training products (the first time builds its index) …"):
                found = nearest(name, photo.digest, photo.native, root)
            if found is None or catalog is None:
                st.caption(f"{title}: no training images to compare with.")
                continue
            if not found.ids:  # an all-zero embedding: no unit of the last layer fired, so no direction
                st.caption(
                    f"{title}: none — for this photo no unit feeding the model's last layer responds (its "
                    "embedding is all zero), so it resembles no training image more than another."
                )
                continue
            st.markdown(f"**{title}**: it looks like these {len(found.ids)} {summary(found.labels, classes)}")
            cols = st.columns(len(found.ids))
            for col, pid, label, dist in zip(cols, found.ids, found.labels, found.distances):
                kind = catalog.rows.get(pid, {}).get("articleType", "")  # "Formal Shoes", "Tshirts" …
                caption = f"{classes[label]} · {pid} · {kind + ' · ' if kind else ''}d={dist:.2f}"
                col.image(str(catalog.image_path(pid)), caption=caption, width=80)
    st.caption(
        "Nearest by cosine distance in each model's own embedding (the input of its last layer), among the "
        "training images: what the model thinks this photo resembles, with their catalogue labels."
    )


def summary(labels: list[int], classes: list[str]) -> str:
    """ "Formal products" or "training products: 4 Formal, 2 Casual"."""
    counts = {classes[c]: labels.count(c) for c in dict.fromkeys(labels)}
    if len(counts) == 1:
        return f"{wording.plain(next(iter(counts)))} training products"
    return "training products: " + ", ".join(f"{n} {c}" for c, n in sorted(counts.items(), key=lambda kv: -kv[1]))
