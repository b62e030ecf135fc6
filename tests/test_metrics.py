"""core.scoring.metrics on hand-computed cases and against sklearn: report, intervals, majority reference,
decision rule."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from core.scoring.metrics import (
    DEFAULT_OFFSET_GRID,
    _scores_from_counts,
    bootstrap_intervals,
    choose_logit_bias,
    choose_logit_bias_keeping_recall,
    classification_report,
    confusion_matrix,
    format_report,
    majority_baseline,
)

CLASSES = ["Casual", "Formal", "Smart Casual"]
# true:  0 0 0 0 1 1 2 2
# pred:  0 0 0 1 1 0 2 0
Y_TRUE = [0, 0, 0, 0, 1, 1, 2, 2]
Y_PRED = [0, 0, 0, 1, 1, 0, 2, 0]


def test_confusion_matrix_counts() -> None:
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.tolist() == [[3, 1, 0], [1, 1, 0], [1, 0, 1]]
    assert confusion_matrix([], [], 2).tolist() == [[0, 0], [0, 0]]


def test_report_hand_computed() -> None:
    r = classification_report(Y_TRUE, Y_PRED, CLASSES, n_boot=0)
    # precision: Casual 3/5, Formal 1/2, Smart 1/1; recall: 3/4, 1/2, 1/2
    f1 = [2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4), 0.5, 2 * 1 * 0.5 / 1.5]
    assert r["n"] == 8
    assert r["accuracy"] == pytest.approx(5 / 8)
    assert r["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2 + 1 / 2) / 3)
    assert r["macro_f1"] == pytest.approx(sum(f1) / 3)
    pc = r["per_class"]
    assert pc["Casual"] == pytest.approx({"precision": 0.6, "recall": 0.75, "f1": f1[0], "support": 4})
    assert pc["Formal"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert pc["Smart Casual"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert r["confusion_matrix"] == [[3, 1, 0], [1, 1, 0], [1, 0, 1]]
    assert r["classes"] == CLASSES
    assert r["ci95"] == {}
    assert isinstance(pc["Casual"]["support"], int)


def test_report_perfect_and_never_predicted() -> None:
    perfect = classification_report([0, 1, 2, 2], [0, 1, 2, 2], CLASSES, n_boot=0)
    assert perfect["accuracy"] == perfect["balanced_accuracy"] == perfect["macro_f1"] == 1.0
    # a class that is never predicted has precision 0 (not NaN) and pulls the macro scores down
    r = classification_report([0, 0, 1, 2], [0, 0, 0, 0], CLASSES, n_boot=0)
    assert r["per_class"]["Formal"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert r["balanced_accuracy"] == pytest.approx(1 / 3)
    assert r["macro_f1"] == pytest.approx((2 * (0.5 * 1) / 1.5) / 3)


def test_class_without_support_left_out_of_macro_scores() -> None:
    r = classification_report([0, 0, 1, 1], [0, 0, 1, 1], CLASSES, n_boot=0)
    assert r["per_class"]["Smart Casual"]["support"] == 0
    assert r["balanced_accuracy"] == 1.0 and r["macro_f1"] == 1.0


def test_false_alarms_in_a_class_without_support_count_in_macro_f1() -> None:
    r = classification_report([0, 0, 1, 1], [0, 2, 1, 1], CLASSES, n_boot=0)  # a false alarm into an absent class
    assert r["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)  # as sklearn's f1_score: 0.556, not 0.833
    assert r["balanced_accuracy"] == pytest.approx((0.5 + 1) / 2)  # recall is only defined where images are


def test_bootstrap_interval_contains_point() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    pred = np.where(rng.random(300) < 0.7, y, rng.integers(0, 3, 300))
    r = classification_report(y, pred, CLASSES, n_boot=300, seed=1)
    for key in ("accuracy", "balanced_accuracy", "macro_f1"):
        lo, hi = r["ci95"][key]
        assert lo <= r[key] <= hi
        assert 0.0 < hi - lo < 0.25  # a real interval, not a point and not everything
    again = classification_report(y, pred, CLASSES, n_boot=300, seed=1)
    assert again["ci95"] == r["ci95"]
    other = classification_report(y, pred, CLASSES, n_boot=300, seed=2)
    assert other["ci95"] != r["ci95"]


def test_bootstrap_degenerate_cases() -> None:
    empty = bootstrap_intervals(np.array([], int), np.array([], int), 3, n_boot=10)
    assert empty == {k: [0.0, 0.0] for k in ("accuracy", "balanced_accuracy", "macro_f1")}
    perfect = bootstrap_intervals(np.array([0, 1, 2] * 10), np.array([0, 1, 2] * 10), 3, n_boot=50)
    assert perfect["accuracy"] == [1.0, 1.0]


def test_majority_baseline_numbers() -> None:
    y = [0] * 8 + [1] * 3 + [2] * 1
    r = majority_baseline(y, CLASSES)
    assert r["accuracy"] == pytest.approx(8 / 12)
    assert r["balanced_accuracy"] == pytest.approx(1 / 3)
    f1_casual = 2 * (8 / 12) * 1 / (8 / 12 + 1)
    assert r["macro_f1"] == pytest.approx(f1_casual / 3)
    assert r["confusion_matrix"] == [[8, 0, 0], [3, 0, 0], [1, 0, 0]]
    assert r["ci95"] == {}
    other = majority_baseline(y, CLASSES, majority=1)
    assert other["accuracy"] == pytest.approx(3 / 12)


def _minority_case() -> tuple[np.ndarray, np.ndarray]:
    """Logits where Smart Casual (2) is always a little below Casual: plain argmax never predicts it."""
    rng = np.random.default_rng(0)
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    logits = np.zeros((100, 3))
    logits[y == 0] = [2.0, 0.0, 1.0]
    logits[y == 1] = [0.0, 2.0, -1.0]
    logits[y == 2] = [1.6, 0.0, 1.2]  # needs +0.5 on class 2 to win
    logits += rng.normal(0, 0.05, logits.shape)
    return logits, y


def test_choose_logit_bias_improves_minority() -> None:
    logits, y = _minority_case()
    plain = classification_report(y, logits.argmax(1), CLASSES, n_boot=0)
    assert plain["per_class"]["Smart Casual"]["recall"] == 0.0
    bias, objective = choose_logit_bias(logits, y)
    assert len(bias) == 3 and bias[0] == 0.0
    assert 0.4 < bias[2] - bias[0] < 1.0
    ruled = classification_report(y, (logits + np.array(bias)).argmax(1), CLASSES, n_boot=0)
    assert ruled["per_class"]["Smart Casual"]["recall"] == 1.0
    assert ruled["per_class"]["Casual"]["recall"] == 1.0  # not bought with the majority class
    assert objective == pytest.approx(ruled["macro_f1"])
    assert objective > plain["macro_f1"]


def test_choose_logit_bias_prefers_no_offset_when_argmax_is_best() -> None:
    y = np.array([0, 1, 2] * 10)
    logits = np.eye(3)[y] * 3.0
    bias, objective = choose_logit_bias(logits, y)
    assert bias == [0.0, 0.0, 0.0]
    assert objective == 1.0


def test_offsets_chosen_at_an_operating_point_keep_the_recall_and_are_the_best_there() -> None:
    import itertools

    rng = np.random.default_rng(3)
    y = rng.choice(3, size=600, p=[0.8, 0.15, 0.05])
    logits = rng.normal(size=(600, 3)) + 1.2 * np.eye(3)[y]
    # an operating point reachable on the grid, not the one macro-F1 chooses
    point = classification_report(y, (logits + np.array([0.0, -1.0, 0.5])).argmax(1), CLASSES, n_boot=0)
    floor, sc_floor = point["per_class"]["Casual"]["recall"], point["per_class"]["Smart Casual"]["recall"]
    free, _ = choose_logit_bias(logits, y)
    assert free != [0.0, -1.0, 0.5]
    bias, objective = choose_logit_bias_keeping_recall(logits, y, {0: floor, 2: sc_floor})
    kept = classification_report(y, (logits + np.array(bias)).argmax(1), CLASSES, n_boot=0)["per_class"]
    assert kept["Casual"]["recall"] >= floor and kept["Smart Casual"]["recall"] >= sc_floor
    assert objective == pytest.approx(kept["Formal"]["recall"])  # the one class left free
    best = 0.0  # no offsets on the grid that keep both floors find more Formal images (brute force)
    for offs in itertools.product(DEFAULT_OFFSET_GRID, repeat=2):
        r = classification_report(y, (logits + np.array((0.0, *offs))).argmax(1), CLASSES, n_boot=0)["per_class"]
        if r["Casual"]["recall"] >= floor and r["Smart Casual"]["recall"] >= sc_floor:
            best = max(best, r["Formal"]["recall"])
    assert objective == pytest.approx(best)
    # one class kept: the mean recall of the two others
    bias, objective = choose_logit_bias_keeping_recall(logits, y, {0: floor})
    kept = classification_report(y, (logits + np.array(bias)).argmax(1), CLASSES, n_boot=0)["per_class"]
    assert objective == pytest.approx((kept["Formal"]["recall"] + kept["Smart Casual"]["recall"]) / 2)
    with pytest.raises(ValueError, match="no offsets on the grid keep"):
        choose_logit_bias_keeping_recall(logits, y, {0: 1.0, 1: 1.0})


def test_macro_f1_offsets_above_a_recall_floor_keep_it_and_are_the_best_there() -> None:
    import itertools

    rng = np.random.default_rng(5)
    y = rng.choice(3, size=600, p=[0.8, 0.15, 0.05])
    logits = rng.normal(size=(600, 3)) + 1.2 * np.eye(3)[y]
    free, _ = choose_logit_bias(logits, y)
    free_casual = classification_report(y, (logits + np.array(free)).argmax(1), CLASSES, n_boot=0)
    floor = free_casual["per_class"]["Casual"]["recall"] + 0.05  # above macro-F1's own choice
    bias, objective = choose_logit_bias(logits, y, min_recall={0: floor})
    kept = classification_report(y, (logits + np.array(bias)).argmax(1), CLASSES, n_boot=0)
    assert kept["per_class"]["Casual"]["recall"] >= floor
    assert objective == pytest.approx(kept["macro_f1"])
    best = max(  # brute force over the grid: no offsets keeping the floor have a better macro-F1
        r["macro_f1"]
        for offs in itertools.product(DEFAULT_OFFSET_GRID, repeat=2)
        if (r := classification_report(y, (logits + np.array((0.0, *offs))).argmax(1), CLASSES, n_boot=0))["per_class"][
            "Casual"
        ]["recall"]
        >= floor
    )
    assert objective == pytest.approx(best)
    with pytest.raises(ValueError, match="no offsets on the grid keep"):
        choose_logit_bias(logits, y, min_recall={0: 1.0, 1: 1.0})


def test_format_report_table() -> None:
    r = classification_report(Y_TRUE, Y_PRED, CLASSES, n_boot=20)
    text = format_report(r, "== title ==")
    lines = text.splitlines()
    assert lines[0] == "== title =="
    assert "images: 8" in text
    assert f"accuracy:          {5 / 8:.3f}  [" in text
    assert any(ln.startswith("Smart Casual") and ln.split()[-1] == "2" for ln in lines)  # support
    assert lines[-1].split()[-3:] == ["1", "0", "1"]  # last confusion row


def _random_case(seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Labels and predictions over k classes where class 1 is never predicted, class k-2 neither
    occurs nor is predicted and class k-1 is only predicted (false alarms into an absent class)."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(4, 7))
    n = int(rng.integers(5, 150))
    y = rng.choice([c for c in range(k) if c not in (k - 2, k - 1)], n)
    pred = np.where(rng.random(n) < 0.6, y, rng.integers(0, k, n))
    pred[pred == 1] = 0
    pred[pred == k - 2] = 0
    pred[0] = k - 1
    return y, pred, [f"class {c}" for c in range(k)]


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_report_agrees_with_sklearn_on_random_data(seed: int) -> None:
    y, pred, classes = _random_case(seed)
    k = len(classes)
    r = classification_report(y, pred, classes, n_boot=0)
    assert r["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=range(k)).tolist()
    assert r["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    # sklearn's defaults: balanced accuracy over the classes in y_true, macro-F1 over those in y_true or predicted
    assert r["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred), abs=1e-12)
    assert r["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0.0), abs=1e-12)
    precision, recall, f1, support = skm.precision_recall_fscore_support(y, pred, labels=range(k), zero_division=0.0)
    for i, c in enumerate(classes):
        pc = r["per_class"][c]
        assert (pc["precision"], pc["recall"], pc["f1"]) == pytest.approx((precision[i], recall[i], f1[i]), abs=1e-12)
        assert pc["support"] == support[i]
    assert r["per_class"][classes[1]]["precision"] == 0.0  # never predicted: 0, not NaN
    assert r["per_class"][classes[-1]]["support"] == 0 and r["per_class"][classes[-1]]["f1"] == 0.0
    # the definitions, spelt out: the only-predicted class counts in macro-F1, the unseen one nowhere
    assert r["balanced_accuracy"] == pytest.approx(np.mean([recall[c] for c in np.unique(y)]), abs=1e-12)
    assert r["macro_f1"] == pytest.approx(np.mean([f1[c] for c in np.union1d(y, pred)]), abs=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_fast_resample_scores_agree_with_sklearn(seed: int) -> None:
    """The bootstrap and the offset search score confusion counts without sklearn: the same numbers."""
    y, pred, classes = _random_case(seed)
    rng = np.random.default_rng(seed)
    for _ in range(20):
        idx = rng.integers(0, len(y), len(y))
        fast = _scores_from_counts(confusion_matrix(y[idx], pred[idx], len(classes)))
        r = classification_report(y[idx], pred[idx], classes, n_boot=0)
        assert fast == pytest.approx({k: r[k] for k in ("accuracy", "balanced_accuracy", "macro_f1")}, abs=1e-12)


def test_bootstrap_intervals_are_a_resample_loop_around_the_report() -> None:
    y, pred, classes = _random_case(3)
    ci = bootstrap_intervals(y, pred, len(classes), n_boot=40, seed=5)
    rng = np.random.default_rng(5)
    reports = []
    for _ in range(40):
        idx = rng.integers(0, len(y), len(y))
        reports.append(classification_report(y[idx], pred[idx], classes, n_boot=0))
    for key in ("accuracy", "balanced_accuracy", "macro_f1"):
        values = [r[key] for r in reports]
        assert ci[key] == pytest.approx([np.percentile(values, 2.5), np.percentile(values, 97.5)], abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_choose_logit_bias_objective_is_sklearns_macro_f1(seed: int) -> None:
    y = np.minimum(_random_case(seed)[0], 2)
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(y), 3)) + np.eye(3)[y]
    bias, objective = choose_logit_bias(logits, y, grid=(-1.0, -0.5, 0.0, 0.5, 1.0))
    pred = (logits + np.array(bias)).argmax(1)
    assert objective == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0.0), abs=1e-12)


def test_labels_outside_the_classes_are_refused() -> None:
    from core.scoring.metrics import classification_report

    with pytest.raises(ValueError, match="class indices"):
        classification_report([0, 1, 3], [0, 1, 1], ["a", "b", "c"])
