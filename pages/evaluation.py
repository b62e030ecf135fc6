"""Evaluation: confusion matrices, metrics across models, training curves, and a gallery per cell."""

from __future__ import annotations

from pages._entry import through_entry

through_entry()  # first, before the heavy imports below: a page run alone after a start goes back at once

from functools import partial

import numpy as np
import pandas as pd
import streamlit as st
from plotly.subplots import make_subplots

from core.explanation.gradcam import Explanation
from core.explanation.overlay import enlarge
from core.models.registry import REGISTRY, get_spec
from core.scoring.calibration import ENSEMBLE_NAME, ENSEMBLE_TITLE
from core.scoring.slices import FOCUS_CLASS, SLICE_ATTRIBUTES, readable_table, slice_metrics
from pages.ui import calibration, dataset, drawing, matrices, resources, settings, verdicts

GALLERY_PAGE = 8
SLICE_NAMES = {"articleType": "article type", "subCategory": "sub-category", "gender": "gender"}
MIN_SLICE = 20  # images; smaller slices are pooled into one row
SLICE_BOOT = 1000  # bootstrap resamples per slice

st.title("How good are the models?")
st.caption(
    "All numbers come from the model cards in weights/, measured on the saved validation and test "
    "splits (never on training data). The test split holds only 9 Smart Casual images, so the 95% "
    "bootstrap intervals matter. Validation also chose each model's checkpoint and decision rule, so its "
    "scores flatter a little; and a model scores higher on validation than on test when validation holds more "
    "products that training has (colour variants), which the Data & augmentation page counts."
)

cards, problems = {}, {}
for name in REGISTRY:
    card, err = resources.get_card(name)
    if card is not None:
        cards[name] = card
    else:
        problems[name] = err
for name, err in problems.items():
    st.warning(f"{get_spec(name).title}: {err}")
if not cards:
    st.error("No model cards found in weights/: train a model first (see README).")
    st.stop()

split = st.segmented_control(
    "Split",
    ["val", "test"],
    default="test",
    format_func=dataset.SPLIT_NAMES.__getitem__,
    key="eval_split",
    required=True,
    help="Everything below — metrics, confusion matrices and the cell gallery — is on this split.",
)
st.subheader("Metrics across models")


def show_metrics(table, key: str) -> None:  # noqa: ANN001 - a DataFrame
    """Numbers to three decimals; text columns (intervals, counts) as they are."""
    fmt = {c: "{:.3f}" for c in table.columns if pd.api.types.is_float_dtype(table[c])}
    pin = {"model": st.column_config.TextColumn("model", pinned=True)}  # stays in view when the table scrolls
    st.dataframe(table.style.format(fmt), hide_index=True, column_config=pin, key=key)


def metrics_table(cards: dict, split: str, per_class: bool = False, rule: bool = True) -> pd.DataFrame:
    """One row per model (+ majority-class reference) on ``split``.

    The summary has balanced accuracy and macro-F1 with their 95% intervals, how many images of the
    rarest class were found and the F1 of every class but the most frequent (it fits a laptop's window
    beside the sidebar); ``per_class`` gives accuracy and every class's precision, recall and F1 instead.
    The ensemble (``weights/ensemble.json``) comes after the models. ``rule=False``: the same from plain argmax, without
    the validation-chosen decision rule (no intervals are stored for it).
    """
    rows = []
    ref = None
    ens = verdicts.ensemble_or_none()
    for name, card in {**cards, **({ENSEMBLE_NAME: ens} if ens is not None else {})}.items():
        m = card.metrics.get(split)
        if m and not rule:
            m = {**m.get("argmax_without_rule", {}), "majority_class_reference": m.get("majority_class_reference")}
        if not m or "per_class" not in m:
            continue
        ref = ref or m.get("majority_class_reference")
        rows.append(_metric_row(ENSEMBLE_TITLE if name == ENSEMBLE_NAME else get_spec(name).title, m, per_class))
    if ref:
        rows.append(_metric_row("Majority class (reference)", ref, per_class))
    table = pd.DataFrame(rows)
    return table if rule else table.rename(columns=lambda c: c.removesuffix(" [95% CI]"))


def _metric_row(label: str, m: dict, per_class: bool) -> dict:
    if per_class:
        row: dict = {"model": label, "accuracy": m["accuracy"]}
        for cls, pc in m["per_class"].items():
            row[f"{cls} precision"] = pc["precision"]
            row[f"{cls} recall"] = pc["recall"]
            row[f"{cls} F1"] = pc["f1"]
        return row
    ci = m.get("ci95") or {}

    def with_interval(key: str) -> str:  # a fixed reference predictor has no interval
        return f"{m[key]:.3f} [{ci[key][0]:.2f}–{ci[key][1]:.2f}]" if key in ci else f"{m[key]:.3f}"

    # the numbers the models are judged by (a 800 px laptop window shows them beside the sidebar without
    # scrolling); accuracy and the majority class's F1 are in the per-class table: on these classes the
    # majority-class predictor already scores 0.93 and 0.97 on them
    row = {
        "model": label,
        "balanced acc. [95% CI]": with_interval("balanced_accuracy"),
        "macro-F1 [95% CI]": with_interval("macro_f1"),
    }
    rare, pc = min(m["per_class"].items(), key=lambda kv: kv[1]["support"])
    row[f"{rare} found"] = f"{round(pc['recall'] * pc['support'])} of {pc['support']}"
    common = max(m["per_class"], key=lambda c: m["per_class"][c]["support"])
    for cls, pc in m["per_class"].items():
        if cls != common:
            row[f"{cls} F1"] = pc["f1"]
    return row


show_metrics(metrics_table(cards, split), "eval_metrics")
for name, card in cards.items():
    for cls, m in card.metrics.get(split, {}).get("per_class", {}).items():
        n = int(m.get("support", 0))
        if 0 < n <= 30 and m.get("recall") == 0:
            upper = 1 - 0.025 ** (1 / n)  # exact (Clopper–Pearson) 95% upper bound for 0 of n
            st.caption(
                f"{get_spec(name).title} finds none of the {n} {cls} images here, and so does every bootstrap "
                f"resample: its intervals look narrow only for that reason. With 0 of {n}, its {cls} recall on "
                f"other images could still be up to {upper:.2f} (exact 95% bound)."
            )
with st.expander("Per-class precision, recall and F1, and accuracy"):
    show_metrics(metrics_table(cards, split, per_class=True), "eval_metrics_per_class")
with st.expander("Without the decision rule (plain argmax)"):
    st.caption(
        f"The same {dataset.SPLIT_NAMES[split]} images, scored by plain argmax. Each model's decision rule adds "
        "per-class offsets to its logits, chosen after training to maximise macro-F1 on validation. It trades "
        "rare-class recall for precision: macro-F1 goes up on validation, while balanced accuracy (the mean "
        "recall) usually goes down."
    )
    show_metrics(metrics_table(cards, split, rule=False), "eval_metrics_argmax")

st.subheader("How far to trust the percentages (calibration)")
calibration.show(split, dataset.SPLIT_NAMES[split])

st.subheader("Confusion matrices")
norm = st.segmented_control(
    "Show",
    ["counts", "row-normalised (recall)", "column-normalised (precision)"],
    default="counts",
    key="eval_norm",
    required=True,
)
chosen = [n for n in dict.fromkeys(settings.chosen_models()) if n in cards]


# the gallery's cell (its pickers' defaults until they are drawn), outlined in its matrix
first_classes = list(next(iter(cards.values())).classes)
chosen_cell = (
    st.session_state.get("cell_true", first_classes[-1]),
    st.session_state.get("cell_pred", first_classes[0]),
)
outlined = st.session_state.get("cell_model", chosen[0] if chosen else None)
cols = st.columns(max(1, len(chosen)))
for col, name in zip(cols, chosen):
    m = cards[name].metrics.get(split)
    if m:
        key = f"cm_{name}_{split}_{norm}"
        col.altair_chart(
            matrices.matrix_chart(
                m["confusion_matrix"],
                cards[name].classes,
                f"{get_spec(name).title} — {dataset.SPLIT_NAMES[split]}",
                norm,
                chosen_cell if outlined == name else None,
            ),
            key=key,
            on_select=partial(matrices.select_cell, key, name),
            selection_mode=matrices.SELECTION,
        )
st.caption("Click a cell to see its images below, with each model's heatmaps (*Look inside a cell*).")

st.subheader("Where each model is weak (per-slice metrics)")


@st.cache_data(show_spinner=False, max_entries=32)
def slice_table(name: str, split: str, by: str, root: str) -> tuple[pd.DataFrame | None, int, str]:
    """A model's :func:`slice_metrics` on ``split`` by ``by``, the number of its images missing from the
    dataset copy, and why there is no table (``""`` when there is one)."""
    card = resources.get_card(name)[0]
    preds = card.predictions.get(split) if card is not None else None
    if not preds:
        return None, 0, "this model card has no per-image predictions"
    if FOCUS_CLASS not in card.classes:
        return None, 0, f"this model has no {FOCUS_CLASS} class"
    catalog = dataset.get_catalog(root, card.classes, card.data.get("label_column", "usage"))
    if catalog is None:
        return None, 0, "the dataset folder could not be read"
    label_of = catalog.label_of()
    known = [(i, int(p)) for i, p in zip(preds["ids"], preds["pred"]) if i in label_of]
    ids = [i for i, _ in known]
    y_true, y_pred = [label_of[i] for i in ids], [p for _, p in known]
    table = slice_metrics(ids, y_true, y_pred, catalog.rows, by, card.classes, min_size=MIN_SLICE, n_boot=SLICE_BOOT)
    return table, len(preds["ids"]) - len(ids), ""


@st.cache_data(show_spinner=False, max_entries=64)
def explain_many(
    model_name: str, digests: tuple[str, ...], _natives: np.ndarray, layers: tuple[str, ...]
) -> list[Explanation]:
    """:func:`~pages.ui.resources.explain` of several photos for their predicted class, in one pass (a
    gallery page); cached by the photos' digests, model and layers."""
    loaded = resources.get_model(model_name)
    assert loaded.served is not None
    return loaded.served.explain_many(_natives, list(layers))


slice_root = settings.data_dir()
if slice_root is None:
    st.info(
        f"With the dataset folder configured ({settings.where_data_is_set()}), this shows each model's balanced "
        f"accuracy and {FOCUS_CLASS} recall per article type, sub-category and gender (from the dataset's "
        "styles.csv), worst slices first."
    )
else:
    by = st.selectbox(
        "Slice by",
        SLICE_ATTRIBUTES,
        format_func=SLICE_NAMES.__getitem__,
        key="eval_slice_by",
        help="A column of the dataset's styles.csv: each of its values is one slice of the images.",
    )
    for tab, name in zip(st.tabs([get_spec(n).title for n in cards]), cards):
        table, missing, why = slice_table(name, split, by, str(slice_root))
        if table is None:
            tab.warning(f"No per-slice metrics for {get_spec(name).title}: {why}.")
            continue
        if table.empty:
            tab.info(f"None of the {dataset.SPLIT_NAMES[split]} images is in this dataset copy.")
            continue
        tab.dataframe(
            readable_table(table),
            hide_index=True,
            column_config={by: st.column_config.TextColumn(SLICE_NAMES[by], pinned=True)},
            key=f"eval_slices_{name}",
        )
        if missing:
            tab.caption(
                f"{missing:,} {dataset.SPLIT_NAMES[split]} image{'' if missing == 1 else 's'} of the saved split "
                "missing from this dataset copy: the slices leave them out."
            )
    st.caption(
        f"{dataset.SPLIT_NAMES[split].capitalize()} images by {SLICE_NAMES[by]}, predicted with each model's decision "
        f"rule; worst slices first (lowest balanced accuracy, then lowest {FOCUS_CLASS} recall). Slices with fewer "
        f"than {MIN_SLICE} images are pooled into the last row, *other (N slices)*. Intervals are 95% bootstrap "
        f"intervals ({SLICE_BOOT} resamples of the slice's images): on small slices they are wide. Balanced accuracy "
        "averages the recall of the classes present in the slice, so a class with one or two images there sways it; "
        f"read it with the counts. {FOCUS_CLASS} recall is empty where a slice has no {FOCUS_CLASS} image."
    )

st.subheader("Training curves")
for name in chosen:
    hist = cards[name].history
    if not hist:
        continue
    ep = [h["epoch"] for h in hist]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy / macro-F1"))
    fig.add_scatter(x=ep, y=[h["train_loss"] for h in hist], name="train loss", row=1, col=1)
    fig.add_scatter(x=ep, y=[h["val_loss"] for h in hist], name="val loss", row=1, col=1)
    fig.add_scatter(x=ep, y=[h["train_acc"] for h in hist], name="train acc. (balanced stream)", row=1, col=2)
    fig.add_scatter(x=ep, y=[h["val_acc"] for h in hist], name="val acc. (argmax)", row=1, col=2)
    fig.add_scatter(x=ep, y=[h["val_macro_f1"] for h in hist], name="val macro-F1 (argmax)", row=1, col=2)
    best = cards[name].training.get("best_epoch")
    averaged = cards[name].training.get("best_is_average_of_last_epochs")
    shipped = ""
    if best:  # named in the title: a label beside the line sat on the curves
        fig.add_vline(x=best, line_dash="dot", line_color="grey")
        shipped = f" · dotted line: the shipped epoch, {best}"
        if averaged:
            shipped = f" · dotted line: epoch {best}; the shipped weights average epochs {best - averaged + 1}–{best}"
    fig.update_layout(
        title=get_spec(name).title + shipped,
        height=340,
        margin=dict(l=0, r=0, t=50, b=0),
        legend=dict(orientation="h", yanchor="top", y=-0.22),  # below, so a narrow page keeps the plots wide
    )
    fig.update_xaxes(title_text="epoch", range=[0.5, max(ep) + 0.5])  # every model's axis starts alike
    st.plotly_chart(fig, key=f"curves_{name}")

st.caption(
    "The validation curves use plain argmax: each model's decision rule was chosen after training. "
    f"The table above is on {dataset.SPLIT_NAMES[split]} and uses the rules. A rule is chosen to maximise "
    "validation macro-F1, and it usually lowers balanced accuracy (see *Without the decision rule* above)."
)

st.subheader("Look inside a cell")
root = settings.data_dir()
first = chosen[0] if chosen else next(iter(cards))
c1, c2, c3 = st.columns(3)
# defaults set once, not as the widgets' index: a clicked matrix cell sets these keys (pages.ui.matrices)
if st.session_state.get("cell_model") not in cards:
    st.session_state["cell_model"] = first
cell_model = c1.selectbox("Matrix of", list(cards), format_func=lambda n: get_spec(n).title, key="cell_model")
classes = list(cards[cell_model].classes)  # the matrix's own, in its order
cell_split = split
for key, default in (("cell_true", classes[-1]), ("cell_pred", classes[0])):
    if st.session_state.get(key) not in classes:
        st.session_state[key] = default
true_cls = c2.selectbox("True class", classes, key="cell_true")
pred_cls = c3.selectbox("Predicted class", classes, key="cell_pred")
if root is None and str(settings.setting("data_dir")).strip():
    st.warning(settings.no_dataset_note("the gallery is off."))
if root is None:
    st.info(
        f"With the dataset folder configured ({settings.where_data_is_set()}), this shows the "
        f"{dataset.SPLIT_NAMES[cell_split]} images "
        f"that are truly {true_cls} and that {get_spec(cell_model).title} predicted as {pred_cls}, each with "
        "the Grad-CAM heatmaps of that model and of the models chosen in the sidebar."
    )
    st.stop()
# indices into the matrix model's classes, from the column that model was trained on
catalog = dataset.get_catalog(str(root), classes, cards[cell_model].data.get("label_column", "usage"))
preds = cards[cell_model].predictions.get(cell_split)
if catalog is None or not preds:
    st.warning("The dataset folder could not be read, or this model card has no per-image predictions.")
    st.stop()
label_of = catalog.label_of()
t_idx, p_idx = classes.index(true_cls), classes.index(pred_cls)
cell_ids = [i for i, p in zip(preds["ids"], preds["pred"]) if int(p) == p_idx and label_of.get(i) == t_idx]
missing = [i for i in preds["ids"] if i not in label_of]
st.write(f"{len(cell_ids)} {dataset.SPLIT_NAMES[cell_split]} image{'' if len(cell_ids) == 1 else 's'} in this cell.")
if missing:
    st.caption(
        f"{len(missing)} image{'' if len(missing) == 1 else 's'} of the saved split "
        f"{'is' if len(missing) == 1 else 'are'} not in this dataset copy and left out."
    )
if not cell_ids:
    st.stop()
pages_n = (len(cell_ids) - 1) // GALLERY_PAGE + 1
page_no = st.number_input(f"Page (of {pages_n})", 1, pages_n, 1, key="cell_page") if pages_n > 1 else 1
show = cell_ids[(page_no - 1) * GALLERY_PAGE : page_no * GALLERY_PAGE]
# the matrix's model first, then the sidebar's; one whose classes differ from it is shown as unavailable
in_gallery, gallery_classes = resources.chosen_loaded([cell_model, *chosen])
st.caption(
    "Each overlay is the model's Grad-CAM for the class it predicted, at its default layer (named under "
    "it), scaled to the map's own maximum; Classify and Layers choose the layer, class and colours."
)
n_cols = 1 + len(in_gallery)  # the photo and each model shown: no empty column at the end
photos = {pid: dataset.dataset_photo(catalog, pid) for pid in show}
readable = [p for p in photos.values() if not p.error]
with st.spinner(f"Explaining {len(readable)} images …"):
    explained = {  # each model explains the whole page in one pass
        name: explain_many(
            name,
            tuple(p.digest for p in readable),
            np.stack([p.native for p in readable]),
            (get_spec(name).default_cam_layer.path,),
        )
        for name, loaded in in_gallery.items()
        if loaded.ok and readable
    }
row_of = {p.digest: k for k, p in enumerate(readable)}
for pid, photo in photos.items():
    if photo.error:
        st.warning(f"image {pid}: {photo.error}")
        continue
    cols = st.columns(n_cols)
    cols[0].image(enlarge(photo.native, 4), caption=f"id {pid} · true {true_cls}", width="stretch")
    for col, (name, loaded) in zip(cols[1:], in_gallery.items()):
        if not loaded.ok:
            col.error(f"{get_spec(name).title} unavailable: {loaded.error}")
            continue
        layer = get_spec(name).default_cam_layer
        exp = explained[name][row_of[photo.digest]]
        img = drawing.overlay_image(exp, layer.path, 0.5, "jet", True)
        col.image(
            img,
            caption=f"{get_spec(name).title}: {gallery_classes[exp.predicted]} ({exp.probs[exp.predicted]:.0%}) · "
            f"{layer.label}",
            width="stretch",
        )
