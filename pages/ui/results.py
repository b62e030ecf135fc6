"""Classify's results for many photos and its exports: the table (a thumbnail and every model's
probabilities per photo), the CSV, the heatmap grid (paged) and the stand-alone HTML report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from core.explanation.gradcam import Explanation
from core.explanation.overlay import enlarge
from core.explanation.report_html import ReportPhoto, data_uri, metric_rows, rare_class_caveat, report_html
from core.models.registry import REGISTRY, get_spec
from core.scoring.calibration import ENSEMBLE_NAME, ENSEMBLE_TITLE
from pages.ui import drawing, resources, verdicts, wording

GRID_PAGE = 12  # photos whose heatmaps show without a click; more a page at a time
THUMB_HEIGHT = 64
GRID_WIDTH = 180  # px of a map in the grid
ROW_HEIGHT = THUMB_HEIGHT // 2 + 12  # rows tall enough to see a thumbnail


def thumbnail(photo) -> str:  # noqa: ANN001 - an UploadedPhoto
    """The photo as uploaded (what the models saw when there is no preview), small, as a data URI."""
    img = photo.preview if photo.preview is not None else photo.native
    pil = Image.fromarray(img)
    pil.thumbnail((THUMB_HEIGHT * 2, THUMB_HEIGHT))
    return data_uri(np.asarray(pil))


def model_names(probs: Mapping[str, np.ndarray | None]) -> list[str]:
    """The models of ``probs`` in the registry's order, the ensemble last."""
    return [n for n in [*REGISTRY, ENSEMBLE_NAME] if n in probs]


def tables(
    photos: Sequence,
    probs: Mapping[str, np.ndarray | None],
    slots: Sequence[tuple[str, str]],
    classes: list[str],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Three tables, one row per file in upload order (a refused file keeps its row):

    - the verdicts: number, thumbnail, file, the two chosen models' class and confidence ("Formal · 83%"),
      whether they agree, the ensemble's, and notes (framing, or why a file was refused);
    - every class's probability, one row per photo and model (every shipped model and the ensemble);
    - the CSV: file name, framing note, every class's probability for every model and the ensemble, notes.
    """
    word = verdicts.confidence_word()
    names = model_names(probs)
    shown, long, csv = [], [], []
    scored = iter(range(sum(p.error is None for p in photos)))
    same = slots[0][1] == slots[1][1]
    for pos, p in enumerate(photos, 1):
        row: dict = {"#": pos, "photo": None if p.error else thumbnail(p), "file": p.filename}
        out: dict = {"#": pos, "file": p.filename}
        if p.error is not None:
            row |= {f"{get_spec(n).title} class": "not scored" for _, n in slots}
            shown.append({**row, "notes": p.error})
            csv.append({**out, "status": "not scored", "framing": "", "notes": p.error})
            continue
        i = next(scored)
        top = {n: None if probs[n] is None else int(probs[n][i].argmax()) for n in names}
        said = {n: "unavailable" if top[n] is None else f"{classes[top[n]]} · {probs[n][i][top[n]]:.0%}" for n in names}
        for _, n in slots:
            row[f"{get_spec(n).title} class"] = said[n]
        if not same:
            row["agree"] = top[slots[0][1]] is not None and top[slots[0][1]] == top[slots[1][1]]
        if ENSEMBLE_NAME in probs:
            row["Ensemble class"] = said[ENSEMBLE_NAME]
        framed = [p.framing_note] if p.framing_note else []
        row["notes"] = "; ".join(framed + list(p.notes))
        out |= {"status": "scored", "framing": p.framing_note or "as it is"}
        for n in names:
            label = ENSEMBLE_TITLE if n == ENSEMBLE_NAME else get_spec(n).title
            out[f"{label} class"] = "unavailable" if top[n] is None else classes[top[n]]
            each = {"#": pos, "photo": row["photo"], "file": p.filename, "model": label}
            for k, c in enumerate(classes):
                value = None if top[n] is None else round(100 * float(probs[n][i][k]), 2)
                out[f"{label} {c} ({word}, %)"] = value
                each[f"{c} (%)"] = value
            long.append(each)
        out["notes"] = "; ".join(p.notes)
        shown.append(row)
        csv.append(out)
    return pd.DataFrame(shown), pd.DataFrame(long), pd.DataFrame(csv)


def show_tables(table: pd.DataFrame, long: pd.DataFrame, classes: list[str]) -> None:
    """The verdicts, and every class's probability per model, in two tabs; each fits a 1400 px window beside
    the sidebar without sideways scrolling (tests/test_browser.py)."""
    word = verdicts.confidence_word()
    pinned = {
        "#": st.column_config.NumberColumn("#", pinned=True, width=40),
        "photo": st.column_config.ImageColumn("photo", pinned=True, width="small"),
        "file": st.column_config.TextColumn("file", pinned=True),
    }
    height = "content" if len(table) <= 25 else "auto"  # every row of a typical batch, no inner scrolling
    first, second = st.tabs(["Verdicts", "Every class's probability, per model"])
    config = pinned | {"notes": st.column_config.TextColumn("notes", width="medium")}
    for c in (c for c in table.columns if c.endswith(" class")):
        config[c] = st.column_config.TextColumn(c, help=f"class · {word}")
    first.dataframe(
        table, hide_index=True, height=height, row_height=ROW_HEIGHT, column_config=config, key="results_table"
    )
    config = pinned | {
        f"{c} (%)": st.column_config.ProgressColumn(
            f"{c} (%)", format="%.1f%%", min_value=0, max_value=100, help=f"{c}: {word}"
        )
        for c in classes
    }
    second.dataframe(
        long,
        hide_index=True,
        height="content" if len(long) <= 40 else "auto",
        row_height=ROW_HEIGHT,
        column_config=config,
        key="results_probabilities",
    )


@st.cache_data(show_spinner=False, max_entries=32)
def explain_many(
    model_name: str,
    digests: tuple[str, ...],
    _natives: np.ndarray,
    layers: tuple[str, ...],
    target: int | None,
    contrast: bool,
) -> list[Explanation]:
    """Explanations of a page of photos in one pass; cached by digests, model, layers, target, contrast."""
    loaded = resources.get_model(model_name)
    assert loaded.served is not None
    return loaded.served.explain_many(_natives, list(layers), target, contrast)


def report_photo(
    photo,  # noqa: ANN001 - an UploadedPhoto
    probs: Mapping[str, np.ndarray | None],
    heatmaps: list[tuple[str, np.ndarray]],
    classes: list[str],
) -> ReportPhoto:
    """One photo as the HTML report shows it (``probs``: this photo's row per model)."""
    said, rows = {}, []
    for n in model_names(probs):
        if probs[n] is None:
            continue
        k = int(np.argmax(probs[n]))
        title = ENSEMBLE_TITLE if n == ENSEMBLE_NAME else get_spec(n).title
        rows.append((title, classes[k], float(probs[n][k])))
        if n != ENSEMBLE_NAME:
            said[verdicts.short_title(n)] = classes[k]
    return ReportPhoto(
        photo.filename,
        photo.native,
        photo.preview,
        photo.framing_note,
        list(photo.notes),
        rows,
        verdicts.agreement(said) + ".",
        heatmaps,
    )


def report_bytes(photos: Sequence[ReportPhoto]) -> bytes:
    """The stand-alone HTML report of ``photos``, with every model's (and the ensemble's) test metrics and
    the caveats."""
    cards = {n: c for n in REGISTRY if (c := resources.get_card(n)[0]) is not None}
    titles = {n: get_spec(n).title for n in cards}
    ens = verdicts.ensemble()
    rows = metric_rows({**cards, **({ENSEMBLE_NAME: ens} if ens else {})}, {**titles, ENSEMBLE_NAME: ENSEMBLE_TITLE})
    caveats = [
        f"{p.filename}: {p.framing_note}." for p in photos if p.framing_note
    ]  # how each photo was framed before the models saw it
    if rare := rare_class_caveat(cards):
        caveats.append(rare)
    caveats += [
        "The models learnt from catalogue thumbnails: one product on white. A person wearing the clothes, a busy "
        "room or unusual light is far from what they learnt: they still answer, less reliably.",
        "Grad-CAM shows where the evidence for a class lies at one layer, not a full account of the decision.",
        "Validation chose each model's checkpoint, decision rule and temperature: test numbers are the fair ones.",
    ]
    return report_html(photos, rows, caveats, confidence=verdicts.confidence_word()).encode()


def heatmap_grid(
    numbered: Sequence[tuple[int, object]],
    probs: Mapping[str, np.ndarray | None],
    slots: Sequence[tuple[str, str]],
    look: Mapping[str, object],
    classes: list[str],
) -> list[ReportPhoto]:
    """Per photo a row: the photo, Model A's and Model B's heatmaps, for a page of :data:`GRID_PAGE` photos
    (the first without a click). ``numbered``: (table number, photo) of the scored photos; ``probs``: every
    model's rows for those photos; ``look``: layers (per slot), target, contrast, opacity, cmap, smooth.
    A last column says every model's verdict. Returns the page as the HTML report shows it."""
    n_pages = (len(numbered) - 1) // GRID_PAGE + 1
    page = 1
    if n_pages > 1:
        page = st.number_input(f"Heatmap page (of {n_pages}, {GRID_PAGE} photos each)", 1, n_pages, 1, key="grid_page")
    start = (page - 1) * GRID_PAGE
    chunk = list(numbered[start : start + GRID_PAGE])
    natives = np.stack([p.native for _, p in chunk])
    digests = tuple(p.digest for _, p in chunk)
    with st.spinner(f"Explaining {len(chunk)} photos …"):
        exps = {
            slot: explain_many(name, digests, natives, (look["layers"][slot],), look["target"], look["contrast"])
            if resources.get_model(name).ok
            else None
            for slot, name in slots
        }
    out = []
    for j, (pos, photo) in enumerate(chunk):
        row = {n: None if p is None else p[start + j] for n, p in probs.items()}
        cols = st.columns([2, 3, 3, 3])  # small maps: several photos on a screen
        cols[0].image(thumbnail_image(photo), caption=f"{pos}. {photo.filename}", width=GRID_WIDTH // 2)
        maps = []
        for col, (slot, name) in zip(cols[1:], slots):
            if exps[slot] is None:
                col.error(f"{get_spec(name).title} is unavailable")
                continue
            exp = exps[slot][j]
            layer = look["layers"][slot]
            img = drawing.overlay_image(exp, layer, look["opacity"], look["cmap"], look["smooth"])
            label = get_spec(name).cam_layer(layer).label
            caption = (
                f"{get_spec(name).title}: {classes[exp.predicted]} ({exp.probs[exp.predicted]:.0%}) · Grad-CAM for "
                f"{wording.explained_as(exp, classes, look['target'] is not None)} · {label}"
            )
            col.image(img, caption=caption, width=GRID_WIDTH)
            maps.append((caption, img))
        one = report_photo(photo, row, maps, classes)
        cols[3].markdown(
            "  \n".join(f"{m}: **{c}** · {conf:.0%}" for m, c, conf in one.verdicts) + f"  \n*{one.agreement}*"
        )
        out.append(one)
    return out


def thumbnail_image(photo) -> np.ndarray:  # noqa: ANN001 - an UploadedPhoto
    """What the models saw, enlarged 2× (the grid's first column)."""
    return enlarge(photo.native, 2)
