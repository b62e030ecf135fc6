"""Confusion matrices whose cells are the control: an Altair heatmap with a point selection on its cells;
clicking one sets the Evaluation gallery's pickers (matrix, true class, predicted class)."""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

SELECTION = "cell"  # the chart's selection parameter
PICKERS = ("cell_model", "cell_true", "cell_pred")  # the gallery's selectboxes, kept in step with a click


def matrix_frame(cm: Sequence[Sequence[int]], classes: Sequence[str], norm: str) -> pd.DataFrame:
    """One row per cell: true and predicted class, count, the value the colour shows (log counts,
    or the row/column share) and the label written in the cell."""
    cm = np.asarray(cm, dtype=float)
    if norm.startswith("row"):
        z = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    elif norm.startswith("column"):
        z = cm / np.maximum(cm.sum(0, keepdims=True), 1)
    else:
        z = np.log1p(cm)
    rows = []
    for i, t in enumerate(classes):
        for j, p in enumerate(classes):
            text = f"{int(cm[i, j])}" if norm == "counts" else f"{z[i, j]:.2f}"
            rows.append({"true": t, "predicted": p, "count": int(cm[i, j]), "shade": float(z[i, j]), "label": text})
    return pd.DataFrame(rows)


def matrix_chart(
    cm: Sequence[Sequence[int]], classes: Sequence[str], title: str, norm: str, chosen: tuple[str, str] | None = None
) -> alt.LayerChart:
    """The annotated heatmap, each cell clickable (selection ``cell`` on true × predicted); ``chosen``, the
    gallery's cell, is outlined."""
    df = matrix_frame(cm, classes, norm)
    df["chosen"] = [chosen == (t, p) for t, p in zip(df["true"], df["predicted"])]
    pick = alt.selection_point(name=SELECTION, fields=["true", "predicted"], on="click", clear=False, empty=False)
    order = list(classes)
    base = alt.Chart(df).encode(
        x=alt.X("predicted:N", sort=order, title="predicted", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("true:N", sort=order, title="true"),
    )
    top = float(df["shade"].max()) or 1.0
    cells = base.mark_rect(cursor="pointer").encode(
        color=alt.Color("shade:Q", scale=alt.Scale(scheme="blues", domain=[0, top]), legend=None),
        stroke=alt.condition(alt.datum.chosen, alt.value("#e8590c"), alt.value("white")),
        strokeWidth=alt.condition(alt.datum.chosen, alt.value(3), alt.value(1)),
        tooltip=[
            alt.Tooltip("true:N"),
            alt.Tooltip("predicted:N"),
            alt.Tooltip("count:Q", title="images"),
        ],
    )
    cells = cells.add_params(pick)
    text = base.mark_text(fontSize=13).encode(
        text="label:N",
        color=alt.condition(alt.datum.shade > top * 0.6, alt.value("white"), alt.value("#1a1a1a")),
    )
    return (cells + text).properties(title=title, height=260)


def select_cell(chart_key: str, model: str, state: MutableMapping | None = None) -> None:
    """The chart's callback: a clicked cell becomes the gallery's matrix, true and predicted class
    (``state``: the session state, or a stand-in)."""
    state = st.session_state if state is None else state
    chart = state.get(chart_key) or {}
    picked = (chart.get("selection") or {}).get(SELECTION) or []
    if picked and picked[0].get("true") is not None and picked[0].get("predicted") is not None:
        for key, value in zip(PICKERS, (model, picked[0]["true"], picked[0]["predicted"])):
            state[key] = value
        state.pop("cell_page", None)  # a new cell starts on its first page
