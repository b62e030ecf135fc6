"""Evaluation's calibration section: per model (and the ensemble) the temperature fitted on validation, the
expected calibration error before and after, and reliability diagrams (from ``weights/calibration.json``
and ``weights/ensemble.json``, written by ``python -m core.calibrate``)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.config import weights_dir
from core.models.registry import REGISTRY, get_spec
from core.scoring.calibration import ENSEMBLE_NAME, ENSEMBLE_TITLE, load_calibration
from pages.ui import verdicts

BEFORE, AFTER = "#adb5bd", "#3b5bdb"


@st.cache_data(show_spinner=False, max_entries=4)
def get_calibration(folder: str) -> dict:
    """``calibration.json`` of the weights folder (``{}`` without one)."""
    return load_calibration(folder)


def entries() -> dict[str, tuple[str, dict]]:
    """Per model with a calibration (and the ensemble): its title and its calibration entry."""
    cal = get_calibration(str(weights_dir())).get("models", {})
    out = {n: (get_spec(n).title, cal[n]) for n in REGISTRY if isinstance(cal.get(n), dict) and "ece" in cal[n]}
    ens = verdicts.get_ensemble(str(weights_dir()))
    if ens is not None and "ece" in ens.doc:
        out[ENSEMBLE_NAME] = (ENSEMBLE_TITLE, ens.doc)
    return out


def ece_table(split: str) -> pd.DataFrame:
    """Model, temperature, ECE and NLL before and after temperature scaling, on ``split``."""
    rows = []
    for title, e in entries().values():
        ece, nll = e["ece"].get(split, {}), e.get("nll", {}).get(split, {})
        rows.append(
            {
                "model": title,
                "temperature": e.get("temperature"),
                "ECE before": ece.get("before"),
                "ECE after": ece.get("after"),
                "NLL before": nll.get("before"),
                "NLL after": nll.get("after"),
            }
        )
    return pd.DataFrame(rows)


def reliability_figure(title: str, curves: dict) -> go.Figure:
    """Accuracy against confidence per bin, before (grey) and after (blue) temperature scaling; the
    diagonal is perfect calibration; a point's size follows its bin's count."""
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="#868e96", dash="dot"), name="perfect")
    for label, colour in (("before", BEFORE), ("after", AFTER)):
        c = curves.get(label) or {}
        total = max(sum(c.get("count", [])), 1)
        fig.add_scatter(
            x=c.get("confidence", []),
            y=c.get("accuracy", []),
            mode="lines+markers",
            line=dict(color=colour),
            marker=dict(size=[6 + 18 * (n / total) ** 0.5 for n in c.get("count", [])]),
            customdata=c.get("count", []),
            hovertemplate="confidence %{x:.2f} → right %{y:.2f} (%{customdata} images)<extra></extra>",
            name=f"{label} (ECE {c.get('ece', 0):.3f})",
        )
    fig.update_layout(
        title=title,
        height=300,
        margin=dict(l=0, r=0, t=40, b=0),
        xaxis=dict(title="confidence of the predicted class", range=[0, 1.02]),
        yaxis=dict(title="share right", range=[0, 1.02]),
        legend=dict(orientation="h", yanchor="top", y=-0.25),
    )
    return fig


def show(split: str, split_name: str) -> None:
    """The calibration section on ``split``."""
    shown = entries()
    if not shown:
        st.info("No calibration yet: `python -m core.calibrate --data DIR` fits it on the validation split.")
        return
    st.caption(
        "Each model's percentages are temperature-scaled: its scores (logits plus its decision rule's offsets) are "
        "divided by one number T, fitted on validation to minimise the log-loss. The predicted class never "
        "changes; the confidence does. ECE (expected calibration error) is the gap between confidence and the "
        "share right, averaged over 10 confidence bins weighted by their images: lower is better. Test shows "
        "whether the validation fit carries over."
    )
    table = ece_table(split)
    fmt = {c: "{:.3f}" for c in table.columns if c != "model"}
    st.dataframe(
        table.style.format(fmt, na_rep="–"),
        hide_index=True,
        column_config={"model": st.column_config.TextColumn("model", pinned=True)},
        key="eval_calibration",
    )
    cols = st.columns(2)
    for k, (name, (title, e)) in enumerate(shown.items()):
        curves = e.get("reliability", {}).get(split)
        if curves:
            cols[k % 2].plotly_chart(
                reliability_figure(f"{title.split(' (')[0]} — {split_name}", curves), key=f"rel_{name}_{split}"
            )
