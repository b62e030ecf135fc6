"""Per-slice metrics: where a model is weak, by a ``styles.csv`` attribute (articleType, subCategory, gender).

Each slice's balanced accuracy and Formal recall come from scikit-learn; their 95% intervals from a
bootstrap of the slice. A resample of a slice's images, drawn with replacement, has a confusion matrix
that is multinomial over the slice's (true, predicted) cells, so the resamples are drawn as confusion
matrices (``Generator.multinomial``) and scored as arrays: the same bootstrap as resampling the images,
in one call per slice instead of a thousand.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn import metrics as skm

log = logging.getLogger(__name__)

SLICE_ATTRIBUTES: tuple[str, ...] = ("articleType", "subCategory", "gender")  # styles.csv columns to slice by
UNKNOWN = "(unknown)"  # the slice of an id whose row lacks the attribute (or is not in styles.csv)
FOCUS_CLASS = "Formal"


def slice_metrics(
    ids: Sequence[int],
    y_true: Sequence[int],
    y_pred: Sequence[int],
    rows: Mapping[int, Mapping[str, str]],
    by: str,
    classes: Sequence[str],
    min_size: int = 20,
    n_boot: int = 1000,
    seed: int = 0,
    pool_small: bool = True,
    focus: str = FOCUS_CLASS,
) -> pd.DataFrame:
    """One row per value of ``rows[id][by]`` with at least ``min_size`` images, worst first.

    ``y_true``/``y_pred`` are class indices into ``classes``, aligned with ``ids``. Columns: ``slice``,
    ``n``, the true-class counts (one column per class name), ``balanced_accuracy`` (mean recall over
    the classes in the slice's true labels) with ``balanced_accuracy_low``/``_high``, and
    ``focus_recall`` (recall of ``focus``, missing when the slice has no ``focus`` image) with
    ``focus_recall_low``/``_high``: 95% percentile intervals over ``n_boot`` resamples (none when
    ``n_boot`` is 0), and ``slices`` (how many attribute values the row holds). Sorted by balanced
    accuracy, then focus recall (missing last). Smaller slices are pooled into a last row
    ``"other (N slices)"``, or with ``pool_small=False`` left out; ``attrs`` says how many
    (``small_slices``, ``small_images``) and records ``by``, ``min_size``, ``n_boot``, ``pooled``, ``focus``.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    k = len(classes)
    if not (len(ids) == len(y_true) == len(y_pred)):
        raise ValueError(f"ids, y_true and y_pred differ in length ({len(ids)}, {len(y_true)}, {len(y_pred)})")
    if len(y_true) and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= k):
        raise ValueError(f"labels must be class indices in 0..{k - 1}")
    if focus not in classes:
        raise ValueError(f"focus class {focus!r} is not one of {list(classes)}")
    f = list(classes).index(focus)
    values = np.array([_value(rows.get(i), by) for i in ids], dtype=object)
    names, inverse, sizes = np.unique(values, return_inverse=True, return_counts=True)
    big = sizes >= min_size
    groups = [(str(name), inverse == j, 1) for j, name in enumerate(names) if big[j]]
    small_mask = ~big[inverse]
    n_small = int((~big).sum())
    out = [_slice_row(name, y_true[m], y_pred[m], k, f, n_boot, seed, n_slices) for name, m, n_slices in groups]
    out.sort(key=lambda r: (r["balanced_accuracy"], _or_inf(r["focus_recall"]), -r["n"], r["slice"]))
    if pool_small and n_small:
        label = f"other ({n_small} slice{'' if n_small == 1 else 's'})"
        out.append(_slice_row(label, y_true[small_mask], y_pred[small_mask], k, f, n_boot, seed, n_small))
    table = pd.DataFrame(out, columns=_columns(classes))
    for c in ("focus_recall", "focus_recall_low", "focus_recall_high"):
        table[c] = table[c].astype("Float64")  # missing (no focus image) stays missing, never 0
    for j, c in enumerate(classes):
        table[c] = [r["counts"][j] for r in out]
    table.attrs.update(
        by=by,
        min_size=min_size,
        n_boot=n_boot,
        pooled=pool_small,
        focus=focus,
        small_slices=n_small,
        small_images=int(small_mask.sum()),
    )
    log.debug("slices by %s: %d of at least %d images, %d smaller", by, len(groups), min_size, n_small)
    return table


def _value(row: Mapping[str, str] | None, by: str) -> str:
    """A row's slice value; blank or absent becomes :data:`UNKNOWN`."""
    value = (row or {}).get(by, "")
    value = value.strip() if isinstance(value, str) else ""
    return value if value and value not in ("NA", "nan") else UNKNOWN


def _or_inf(x: float | None) -> float:
    return np.inf if x is None else x


def _columns(classes: Sequence[str]) -> list[str]:
    metrics = ["balanced_accuracy", "balanced_accuracy_low", "balanced_accuracy_high"]
    metrics += ["focus_recall", "focus_recall_low", "focus_recall_high"]
    return ["slice", "n", *classes, *metrics, "slices"]


def _slice_row(
    name: str, y_true: np.ndarray, y_pred: np.ndarray, k: int, f: int, n_boot: int, seed: int, n_slices: int
) -> dict:
    """Counts, point estimates (sklearn) and bootstrap intervals of one slice."""
    present = np.unique(y_true)
    balanced = float(skm.recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0))
    has_focus = bool((y_true == f).any())
    focus = float(skm.recall_score(y_true, y_pred, labels=[f], average=None, zero_division=0)[0]) if has_focus else None
    counts = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    row = {"slice": name, "n": int(len(y_true)), "counts": counts.sum(1).tolist(), "slices": n_slices}
    row |= {"balanced_accuracy": balanced, "focus_recall": focus}
    lo_hi = _bootstrap(counts, f, n_boot, _slice_seed(seed, name)) if n_boot else {}
    for key in ("balanced_accuracy", "focus_recall"):
        low, high = lo_hi.get(key, (None, None))
        row[f"{key}_low"], row[f"{key}_high"] = (low, high) if row[key] is not None else (None, None)
    return row


def _slice_seed(seed: int, name: str) -> list[int]:
    """A seed per slice: its interval does not move when other slices come or go."""
    return [seed, zlib.crc32(name.encode())]


def recalls_from_counts(cms: np.ndarray) -> np.ndarray:
    """Per-class recall of a stack of confusion matrices ``(..., k, k)``; NaN for a class without images."""
    support = cms.sum(-1)
    tp = np.diagonal(cms, axis1=-2, axis2=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, tp / np.maximum(support, 1), np.nan)


def _bootstrap(counts: np.ndarray, f: int, n_boot: int, seed: list[int]) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of balanced accuracy and class ``f``'s recall over ``n_boot`` resamples
    of the images behind ``counts`` (a resample's confusion matrix is multinomial over the cells)."""
    k = counts.shape[0]
    n = int(counts.sum())
    rng = np.random.default_rng(seed)
    cms = rng.multinomial(n, counts.ravel() / n, size=n_boot).reshape(n_boot, k, k)
    recall = recalls_from_counts(cms)
    balanced = np.nanmean(recall, axis=1)  # the classes present in each resample, as sklearn does
    out = {"balanced_accuracy": tuple(float(v) for v in np.percentile(balanced, [2.5, 97.5]))}
    if counts[f].sum():  # resamples that drew no focus image have no recall for it: left out
        out["focus_recall"] = tuple(float(v) for v in np.nanpercentile(recall[:, f], [2.5, 97.5]))
    return out


def interval_text(value: float | None, low: float | None, high: float | None) -> str:
    """``"0.62 [0.51–0.73]"``; ``""`` when the value is missing, the bare value without an interval."""
    if value is None or pd.isna(value):
        return ""
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return f"{value:.2f}"
    return f"{value:.2f} [{low:.2f}–{high:.2f}]"


def readable_table(table: pd.DataFrame) -> pd.DataFrame:
    """A :func:`slice_metrics` table for people: the attribute as the first column's name, ``images``,
    the class counts, and each metric with its interval as text (``"0.62 [0.51–0.73]"``; empty for a
    slice without a focus image)."""
    focus = table.attrs.get("focus", FOCUS_CLASS)
    classes = list(table.columns[2 : table.columns.get_loc("balanced_accuracy")])
    return pd.DataFrame(
        {
            table.attrs.get("by", "slice"): table["slice"],
            "images": table["n"],
            **{f"{c} images": table[c] for c in classes},
            "balanced acc. [95% CI]": [
                interval_text(v, lo, hi)
                for v, lo, hi in table[["balanced_accuracy", "balanced_accuracy_low", "balanced_accuracy_high"]].values
            ],
            f"{focus} recall [95% CI]": [
                interval_text(v, lo, hi)
                for v, lo, hi in table[["focus_recall", "focus_recall_low", "focus_recall_high"]].astype(object).values
            ],
        }
    )
