"""Data & augmentation: class counts before/after balancing, and the augmentation explorer."""

from __future__ import annotations

from pages._entry import through_entry

through_entry()  # first, before the heavy imports below: a page run alone after a start goes back at once

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.config import DEFAULT_SPLIT_FILE
from core.data.split import SPLITS, load_split
from core.explanation.overlay import enlarge
from core.images.augment import FILL_MODES, AugmentParams, FramingAugmentParams, augment_variants
from core.models.registry import REGISTRY
from pages.ui import dataset, pickers, resources, settings, wording

st.title("Data & augmentation")


SPLIT_COLOURS = {"train": "#4C78A8", "val": "#72B7B2", "test": "#9D755D"}  # calm hues: no split is an alarm


LABEL_HEADROOM = 0.3  # in decades above the tallest bar (×2): room for its count label under the plot's top


def show_log_bars(fig: go.Figure, key: str, height: int, legend_y: float, label: str = "%{y:,.0f}") -> None:
    """Grouped bars on a log axis (decades only), each with its count (``label``) above it and room for
    the tallest one's label, legend in a row."""
    fig.update_traces(
        texttemplate=label, textposition="outside", textangle=0, cliponaxis=False, hovertemplate="%{y:,.0f}"
    )
    heights = [float(y) for trace in fig.data for y in trace.y if y and y > 0] or [1.0]
    fig.update_layout(
        barmode="group",
        height=height,
        yaxis_type="log",
        yaxis_title="images (log scale)",
        yaxis_dtick=1,
        yaxis_range=[math.floor(math.log10(min(heights))), math.log10(max(heights)) + LABEL_HEADROOM],
        legend=dict(orientation="h", y=legend_y),
        margin=dict(l=0, r=0, t=30, b=0),
    )
    st.plotly_chart(fig, key=key, config={"displayModeBar": False})


@st.cache_data(show_spinner=False)
def products_seen_in_training(root: str) -> pd.DataFrame | None:
    """Per class: validation and test images whose product training has ("k of n (p%)")."""
    twins = dataset.products_seen_without(root)
    if twins is None:
        return None
    cells = {
        dataset.SPLIT_NAMES[s]: [f"{k:,} of {n:,} ({k / n:.0%})" if n else "—" for k, n in per.values()]
        for s, per in twins.items()
    }
    return pd.DataFrame(cells, index=pd.Index(dataset.get_catalog(root).classes, name="class"))


# ---------------------------------------------------------------- counts
card = next((c for c in (resources.get_card(n)[0] for n in REGISTRY) if c is not None), None)
counts = card.data.get("split_counts") if card else None
if counts:
    classes = card.classes
    st.subheader("Class counts per split")
    fig = go.Figure()
    for s in SPLITS:
        fig.add_bar(
            name=dataset.SPLIT_NAMES[s], x=classes, y=[counts[s][c] for c in classes], marker_color=SPLIT_COLOURS[s]
        )
    show_log_bars(fig, "split_counts", height=320, legend_y=1.12)
    sizes = {s: sum(counts[s].values()) for s in SPLITS}
    st.caption(
        " · ".join(f"{dataset.SPLIT_NAMES[s]}: {n:,} images" for s, n in sizes.items())
        + f" · split file {DEFAULT_SPLIT_FILE.name} (identical images never cross splits)"
    )
    cards = {n: c for n in REGISTRY if (c := resources.get_card(n)[0]) is not None}
    root = settings.data_dir()
    readable = root is not None and dataset.get_catalog(str(root)) is not None
    seen = products_seen_in_training(str(root)) if readable else None
    st.subheader("Validation and test products that training has")
    if seen is None:
        st.info(
            f"There is no saved split ({DEFAULT_SPLIT_FILE.name}) to count them in."
            if readable
            else settings.no_dataset_note(
                "the products that training shares with validation and test cannot be counted."
            )
        )
    else:
        st.dataframe(seen, key="products_seen")
        st.caption(
            "An image counts when a training image of the same class shows the same product: the same "
            "display name once colour words are removed, i.e. the same item or a colour variant. Such images "
            "test recognising a product seen in training more than recognising the class on a new product. "
            "Where the two columns differ a lot for a class, its validation and test scores measure different "
            "things; uploads are usually new products."
        )
        for n, c in cards.items():
            left = c.data.get("left_out_of_training")
            if left:
                own = dataset.products_seen_without(str(root), tuple(left["ids"])) or {}
                own_counts = "; ".join(
                    f"{cls}: validation {own['val'][cls][0]} of {own['val'][cls][1]}, "
                    f"test {own['test'][cls][0]} of {own['test'][cls][1]}"
                    for cls in left["classes"]
                    if own
                )
                st.caption(
                    f"{settings.model_label(n)} was trained without the {len(left['ids'])} "
                    f"{', '.join(left['classes'])} training images whose product is in validation, so for it "
                    f"every validation image of {'that class' if len(left['classes']) == 1 else 'those classes'} "
                    "is a new product"
                    + (f" (images whose product it trained on — {own_counts})." if own_counts else ".")
                )
    st.subheader("Training set before and after balancing")
    train = counts["train"]
    top = max(train.values())
    fig = go.Figure()
    # the training split's colour, then calm shades: nothing here is an alarm
    fig.add_bar(
        name="original training images", x=classes, y=[train[c] for c in classes], marker_color=SPLIT_COLOURS["train"]
    )
    fig.add_bar(
        name=f"(a) after augmented copies: {top:,} per class", x=classes, y=[top] * len(classes), marker_color="#9ECAE9"
    )
    draws = sorted({int(c.training.get("args", {}).get("epoch_size") or 0) for c in cards.values()} - {0})
    palette = ("#72B7B2", "#B7A99A", "#9D755D", "#BAB0AC")
    for k, size in enumerate(draws):
        users = [
            settings.model_label(n) for n, c in cards.items() if c.training.get("args", {}).get("epoch_size") == size
        ]
        fig.add_bar(
            name=f"(b) sampler: {size / len(classes):,.0f} draws per class per epoch ({', '.join(users)})",
            x=classes,
            y=[size / len(classes)] * len(classes),
            marker_color=palette[k % len(palette)],
        )
    # four bars a class: short labels (21.7k) so that neighbours do not run into each other at 800 px
    show_log_bars(fig, "balance_counts", height=360, legend_y=-0.15, label="%{y:.3~s}")
    used = {n: c.training.get("balancing", "?") for n, c in cards.items()}
    names = {"sampler": "(b) the class-balanced sampler", "copies": "(a) augmented copies"}
    lines = []
    for strategy in dict.fromkeys(used.values()):
        who = [f"**{settings.model_label(n)}**" for n, b in used.items() if b == strategy]
        listed = who[0] if len(who) == 1 else ", ".join(who[:-1]) + " and " + who[-1]
        lines.append(f"{listed} {'was' if len(who) == 1 else 'were'} trained with {names.get(strategy, strategy)}.")
    for n, c in cards.items():
        comparison = c.training.get("balancing_comparison")
        if comparison:
            scores = ", ".join(
                f"{names[k]} {comparison[k]['val_macro_f1']:.3f}" for k in ("sampler", "copies") if k in comparison
            )
            how = comparison.get("criterion", "validation macro-F1")
            lines.append(f"{settings.model_label(n)} trained both ways on one schedule: {scores} ({how}).")
    st.markdown(" ".join(lines))
    st.caption(
        "Strategy (a) adds augmented copies of minority images until every class matches the largest, once, "
        "before training; strategy (b) draws the three classes with equal probability and augments every "
        "draw afresh, so an epoch sees each class equally often without a fixed set of copies."
    )
elif DEFAULT_SPLIT_FILE.is_file():
    split = load_split(DEFAULT_SPLIT_FILE)
    st.write({s: len(v) for s, v in split.items()})
else:
    st.info("No model card or split file yet: train a model first (see README).")

# ---------------------------------------------------------------- explorer
st.subheader("Augmentation explorer")
st.caption("The same function training uses, with your parameters.")
photo = pickers.photo_picker("aug", -1)  # the last class at first

d = AugmentParams()
c1, c2, c3 = st.columns(3)
rotation = c1.slider("Rotation (± degrees)", 0.0, 45.0, d.rotation, 1.0, key="aug_rotation")
shear = c2.slider("Shear (± degrees)", 0.0, 30.0, d.shear, 1.0, key="aug_shear")
shift = c3.slider("Shift (± fraction)", 0.0, 0.3, d.shift, 0.01, key="aug_shift")
c4, c5, c6 = st.columns(3)  # three a row: at 800 px four cut "Horizontal flip" short
fill = c4.selectbox("Fill mode", list(FILL_MODES), key="aug_fill")
n = c5.slider("Variants", 4, 24, 12, 4, key="aug_n")
seed = c6.number_input("Seed", 0, 10_000, 0, key="aug_seed")
hflip = st.checkbox("Horizontal flip", d.hflip, key="aug_flip")
reframe = st.slider(
    "Re-framed as users frame photos (share of variants)",
    0.0,
    1.0,
    0.5,
    0.1,
    key="aug_reframe",
    help="Training for framing: a share of the draws is zoomed out or in on white, given another aspect, "
    "stretched, placed anywhere, put on a coloured or textured surface, lit warm or cool or given a shadow, "
    "and then goes through the same framing step as every photo. The shipped models were fine-tuned with 0.5.",
)
fd = FramingAugmentParams()
c7, c8 = st.columns(2)
tilt = c7.slider(
    "… of those, shot tilted (share)",
    0.0,
    1.0,
    fd.tilt,
    0.1,
    key="aug_tilt",
    help=f"Rotated by up to ±{fd.max_tilt:g}° on white, the canvas grown to hold it, as a hand-held shot "
    "(core.train --framing-tilt; none of the shipped models was trained with it yet).",
)
shadow = c8.slider(
    "… of those left on white, with a drop shadow (share)",
    0.0,
    1.0,
    fd.shadow,
    0.05,
    key="aug_shadow",
    help="A soft shadow cast beside the product, as under a lamp; the framing step then tries to leave it out.",
)

if photo is not None:
    if photo.error:
        st.warning(f"{wording.plain(photo.filename)}: {photo.error}", icon=":material/block:")
    else:
        params = AugmentParams(rotation=rotation, shear=shear, shift=shift, hflip=hflip, fill_mode=fill)
        framing = FramingAugmentParams(probability=reframe, tilt=tilt, shadow=shadow)
        variants = augment_variants(photo.native, n, params, seed=int(seed), framing=framing)
        st.image(np.asarray(photo.native), caption="original (60×80 canvas)", width=120)
        cols = st.columns(6)
        for k, v in enumerate(variants):
            # 120 px wide, or the column's width when that is less
            cols[k % 6].image(enlarge(v.permute(1, 2, 0).numpy(), 2), caption=f"variant {k + 1}")
