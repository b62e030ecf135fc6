"""Classification metrics for imbalanced classes, with bootstrap intervals, and the decision rule.

The reported numbers come from scikit-learn (:mod:`sklearn.metrics`). The bootstrap and the
offset search score thousands of resamples or candidate rules; they count a confusion matrix
with ``np.bincount`` and score it with :func:`_scores_from_counts` (sklearn takes milliseconds a
call), which the tests check against sklearn.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
from sklearn import metrics as skm


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """Counts: rows are true classes, columns predicted."""
    if len(y_true) == 0:
        return np.zeros((n_classes, n_classes), dtype=np.int64)
    return skm.confusion_matrix(y_true, y_pred, labels=np.arange(n_classes)).astype(np.int64)


def _sklearn_scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, np.ndarray | float]:
    """Accuracy, balanced accuracy, macro-F1 and per-class precision/recall/F1/support, by sklearn.

    Balanced accuracy is the mean recall of the classes that occur in ``y_true``; macro-F1 averages
    every class that occurs or is predicted (a class only predicted counts with F1 0). A class
    never predicted has precision 0, a class without images recall 0 (not NaN)."""
    if len(y_true) == 0:  # sklearn refuses empty input
        zeros = np.zeros(n_classes)
        per_class = {"precision": zeros, "recall": zeros, "f1": zeros, "support": zeros.astype(np.int64)}
        return {"accuracy": 0.0, "balanced_accuracy": 0.0, "macro_f1": 0.0, **per_class}
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=np.arange(n_classes), average=None, zero_division=0.0
    )
    if y_true.min() < 0 or y_pred.min() < 0 or max(y_true.max(), y_pred.max()) >= n_classes:
        raise ValueError(f"labels must be class indices in 0..{n_classes - 1}")
    seen = np.union1d(y_true, y_pred)
    # balanced accuracy = the macro recall over the classes in y_true (sklearn's balanced_accuracy_score,
    # without the warning it gives for a class only predicted: warning filters are not thread-safe)
    balanced = skm.recall_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0.0)
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced),
        "macro_f1": float(skm.f1_score(y_true, y_pred, labels=seen, average="macro", zero_division=0.0)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support,
    }


def _scores_from_counts(cm: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro-F1 of a confusion matrix, as :func:`_sklearn_scores`
    computes them, for the many evaluations of the bootstrap and the offset search."""
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    support = cm.sum(1)
    predicted = cm.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = support > 0  # balanced accuracy: the mean recall of the classes that occur
    seen = present | (predicted > 0)  # macro-F1 also counts a class only predicted (its F1 is 0), as sklearn does
    return {
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[seen].mean()) if seen.any() else 0.0,
    }


def bootstrap_intervals(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, n_boot: int = 1000, seed: int = 0
) -> dict[str, list[float]]:
    """95% percentile intervals of accuracy, balanced accuracy and macro-F1 over resamples."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    keys = ("accuracy", "balanced_accuracy", "macro_f1")
    out: dict[str, list[float]] = {k: [] for k in keys}
    if n == 0:
        return {k: [0.0, 0.0] for k in keys}
    flat = y_true * n_classes + y_pred
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        cm = np.bincount(flat[idx], minlength=n_classes * n_classes).reshape(n_classes, n_classes)
        s = _scores_from_counts(cm)
        for k in keys:
            out[k].append(s[k])
    return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in out.items()}


def classification_report(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    classes: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Accuracy, balanced accuracy, macro-F1 (with 95% bootstrap intervals), per-class
    precision/recall/F1/support and the confusion matrix in counts."""
    y_true = np.asarray(y_true, int)
    y_pred = np.asarray(y_pred, int)
    k = len(classes)
    s = _sklearn_scores(y_true, y_pred, k)
    return {
        "n": int(len(y_true)),
        "accuracy": s["accuracy"],
        "balanced_accuracy": s["balanced_accuracy"],
        "macro_f1": s["macro_f1"],
        "ci95": bootstrap_intervals(y_true, y_pred, k, n_boot, seed) if n_boot else {},
        "per_class": {
            c: {
                "precision": float(s["precision"][i]),
                "recall": float(s["recall"][i]),
                "f1": float(s["f1"][i]),
                "support": int(s["support"][i]),
            }
            for i, c in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, k).tolist(),
        "classes": list(classes),
    }


def majority_baseline(y_true: Sequence[int], classes: Sequence[str], majority: int | None = None) -> dict:
    """The reference: always predict the majority class (by default the most frequent in ``y_true``)."""
    y_true = np.asarray(y_true, int)
    if majority is None:
        majority = int(np.bincount(y_true, minlength=len(classes)).argmax()) if len(y_true) else 0
    return classification_report(y_true, np.full_like(y_true, majority), classes, n_boot=0)


DEFAULT_OFFSET_GRID: tuple[float, ...] = tuple(float(v) for v in np.arange(-3.0, 3.01, 0.25))


def _recall_if_kept(cm: np.ndarray, floors: dict[int, float]) -> np.ndarray | None:
    """Per-class recall of a confusion matrix, or None when a class of ``floors`` (with images) is below its floor."""
    support = cm.sum(1)
    recall = np.divide(np.diag(cm), support, out=np.zeros(len(support)), where=support > 0)
    if any(support[c] and recall[c] < floor - 1e-12 for c, floor in floors.items()):
        return None
    return recall


def choose_logit_bias(
    logits: np.ndarray,
    y_true: Sequence[int],
    grid: Sequence[float] = DEFAULT_OFFSET_GRID,
    min_recall: dict[int, float] | None = None,
) -> tuple[list[float], float]:
    """Pick per-class logit offsets (class 0 fixed at 0) on *validation* data.

    Objective: macro-F1, the headline metric for these imbalanced classes (it rewards a rare
    class's precision as well as its recall). Ties go to the smallest total offset, so plain
    argmax wins unless an offset really helps. ``min_recall`` (class → floor) allows only the
    offsets that keep each of those recalls, e.g. Casual ≥ 0.965 for a bar on Casual recall.
    Returns the offsets and the objective reached; ValueError when no offsets are allowed.
    """
    floors = min_recall or {}
    if any(not 0 <= c < logits.shape[1] or not np.isfinite(f) for c, f in floors.items()):
        raise ValueError(f"min_recall {floors}: a class index from 0 to {logits.shape[1] - 1} and a finite recall")

    def score(cm: np.ndarray) -> float | None:
        return None if _recall_if_kept(cm, floors) is None else _scores_from_counts(cm)["macro_f1"]

    found = _search_offsets(logits, np.asarray(y_true, int), grid, score)
    if found is None:
        why = f"no offsets on the grid keep the recalls {floors} on these images" if floors else "an empty grid"
        raise ValueError(why)
    return found


def _search_offsets(
    logits: np.ndarray, y_true: np.ndarray, grid: Sequence[float], score: Callable[[np.ndarray], float | None]
) -> tuple[list[float], float] | None:
    """The grid's offsets (class 0 fixed at 0) with the highest ``score`` of their confusion matrix (None:
    not allowed); ties go to the smallest total offset. None when no offsets are allowed."""
    k = logits.shape[1]
    best_key, best = None, None
    for offs in itertools.product(grid, repeat=k - 1):
        bias = np.array((0.0, *offs))
        pred = (logits + bias).argmax(1)
        obj = score(np.bincount(y_true * k + pred, minlength=k * k).reshape(k, k))
        if obj is None:
            continue
        key = (round(obj, 6), -float(np.abs(bias).sum()))
        if best_key is None or key > best_key:
            best_key, best = key, ([float(b) for b in bias], obj)
    return best


def choose_logit_bias_keeping_recall(
    logits: np.ndarray,
    y_true: Sequence[int],
    keep: dict[int, float],
    grid: Sequence[float] = DEFAULT_OFFSET_GRID,
) -> tuple[list[float], float]:
    """Per-class offsets chosen on *validation* data at a given operating point: among the offsets that
    keep each class ``c`` of ``keep`` at a recall of at least ``keep[c]`` (e.g. the shipped model's),
    those with the highest mean recall of the other classes (every class kept: balanced accuracy;
    ties: smallest offsets). Keep every class but one to spend the whole margin on that one: a class
    of a few images would otherwise weigh as much as one of hundreds.

    Comparing two models class by class only means something at one operating point; macro-F1 alone
    can move it. Returns the offsets and the objective; ValueError when no offsets on the grid keep
    those recalls."""
    y_true = np.asarray(y_true, int)
    free = [c for c in range(logits.shape[1]) if c not in keep]

    def score(cm: np.ndarray) -> float | None:
        recall = _recall_if_kept(cm, keep)
        if recall is None:
            return None
        support = cm.sum(1)
        counted = [c for c in free if support[c]] or [c for c in range(len(support)) if support[c]]
        return float(recall[counted].mean())

    found = _search_offsets(logits, y_true, grid, score)
    if found is None:
        raise ValueError(f"no offsets on the grid keep the recalls {keep} on these images")
    return found


def format_report(report: dict, title: str = "") -> str:
    """A plain-text table of a :func:`classification_report`."""
    classes = report["classes"]
    ci = report.get("ci95") or {}
    lines = [title] if title else []

    def with_ci(key: str) -> str:
        v = f"{report[key]:.3f}"
        return v + (f"  [{ci[key][0]:.3f}, {ci[key][1]:.3f}]" if key in ci else "")

    lines += [
        f"images: {report['n']}",
        f"accuracy:          {with_ci('accuracy')}",
        f"balanced accuracy: {with_ci('balanced_accuracy')}",
        f"macro-F1:          {with_ci('macro_f1')}",
        "",
        f"{'class':<14}{'precision':>10}{'recall':>8}{'F1':>8}{'support':>9}",
    ]
    for c in classes:
        pc = report["per_class"][c]
        lines.append(f"{c:<14}{pc['precision']:>10.3f}{pc['recall']:>8.3f}{pc['f1']:>8.3f}{pc['support']:>9d}")
    lines += ["", "confusion matrix (rows true, columns predicted):"]
    width = max(len(c) for c in classes) + 2
    lines.append(" " * width + "".join(c[:12].rjust(14) for c in classes))
    for c, row in zip(classes, report["confusion_matrix"]):
        lines.append(c.ljust(width) + "".join(f"{v:14d}" for v in row))
    return "\n".join(lines)
