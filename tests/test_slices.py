"""Per-slice metrics (core.scoring.slices): worst first, intervals, pooling, equal to sklearn; the shipped
cards' slices."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, recall_score

from core.scoring.slices import (
    SLICE_ATTRIBUTES,
    UNKNOWN,
    interval_text,
    readable_table,
    recalls_from_counts,
    slice_metrics,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "fashion-small"
CLASSES = ("Casual", "Formal", "Smart Casual")
FORMAL = 1


def make_slices(sizes: dict[str, int], accuracy: dict[str, float], seed: int = 0, formal: bool = True):  # noqa: ANN201
    """ids, true and predicted labels and styles rows: per slice, ``sizes[name]`` images whose
    labels cycle through the classes (Casual only when not ``formal``) and a share ``accuracy[name]``
    predicted rightly (the others shifted to the next class)."""
    rng = np.random.default_rng(seed)
    ids, y_true, y_pred, rows = [], [], [], {}
    for name, n in sizes.items():
        for j in range(n):
            pid = len(ids) + 1
            t = j % 3 if formal else 0
            p = t if rng.random() < accuracy.get(name, 0.8) else (t + 1) % 3
            ids.append(pid)
            y_true.append(t)
            y_pred.append(p)
            rows[pid] = {"id": str(pid), "articleType": name}
    return ids, np.array(y_true), np.array(y_pred), rows


def test_a_slice_where_the_model_is_always_wrong_comes_first() -> None:
    ids, y_true, y_pred, rows = make_slices({"Shirts": 60, "Formal Shoes": 40, "Ties": 50}, {"Formal Shoes": 0.0})
    table = slice_metrics(ids, y_true, y_pred, rows, "articleType", CLASSES, n_boot=200)
    assert table["slice"].iloc[0] == "Formal Shoes"
    assert table["balanced_accuracy"].iloc[0] == 0.0 and table["focus_recall"].iloc[0] == 0.0
    assert list(table["balanced_accuracy"]) == sorted(table["balanced_accuracy"])
    assert table["balanced_accuracy_high"].iloc[0] == 0.0  # no resample finds anything either


def test_ties_in_balanced_accuracy_go_to_the_lower_formal_recall() -> None:
    # both slices: one class of two found; slice "b" misses its Formal images, slice "a" its Casual ones
    ids = list(range(1, 81))
    y_true = np.array([0] * 20 + [1] * 20 + [0] * 20 + [1] * 20)
    y_pred = np.array([2] * 20 + [1] * 20 + [0] * 20 + [0] * 20)
    rows = {i: {"gender": "a" if i <= 40 else "b"} for i in ids}
    table = slice_metrics(ids, y_true, y_pred, rows, "gender", CLASSES, n_boot=0)
    assert list(table["slice"]) == ["b", "a"] and list(table["balanced_accuracy"]) == [0.5, 0.5]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_intervals_contain_the_point_estimate(seed: int) -> None:
    sizes = {"Shirts": 300, "Jeans": 120, "Belts": 45, "Ties": 25}
    accuracy = {"Shirts": 0.9, "Jeans": 0.7, "Belts": 0.5, "Ties": 0.3}
    ids, y_true, y_pred, rows = make_slices(sizes, accuracy, seed)
    table = slice_metrics(ids, y_true, y_pred, rows, "articleType", CLASSES, seed=seed)
    for key in ("balanced_accuracy", "focus_recall"):
        low, point, high = (table[f"{key}_low"], table[key], table[f"{key}_high"])
        assert (low <= point).all() and (point <= high).all(), table[[key, f"{key}_low", f"{key}_high"]]
    assert (table["balanced_accuracy_high"] > table["balanced_accuracy_low"]).all()  # none degenerate here
    width = dict(zip(table["slice"], table["balanced_accuracy_high"] - table["balanced_accuracy_low"]))
    assert width["Ties"] > width["Shirts"]  # the small slice's interval is the wider


def test_a_slice_without_formal_images_has_no_formal_recall() -> None:
    ids, y_true, y_pred, rows = make_slices({"Socks": 30}, {"Socks": 0.5}, formal=False)
    ids2, y_true2, y_pred2, rows2 = make_slices({"Blazers": 30}, {"Blazers": 0.5}, seed=1)
    ids2 = [i + 100 for i in ids2]
    rows |= {i + 100: r for i, r in rows2.items()}
    table = slice_metrics(
        ids + ids2, np.r_[y_true, y_true2], np.r_[y_pred, y_pred2], rows, "articleType", CLASSES, n_boot=100
    )
    socks = table[table["slice"] == "Socks"].iloc[0]
    assert socks["Formal"] == 0
    assert all(pd.isna(socks[c]) for c in ("focus_recall", "focus_recall_low", "focus_recall_high"))  # not 0
    assert not pd.isna(table[table["slice"] == "Blazers"].iloc[0]["focus_recall"])
    shown = readable_table(table).set_index("articleType")
    assert shown.loc["Socks", "Formal recall [95% CI]"] == ""
    assert shown.loc["Blazers", "Formal recall [95% CI]"] != ""


def test_small_slices_are_pooled_last_or_left_out() -> None:
    sizes = {"Shirts": 30, "Jeans": 25, "Cufflinks": 5, "Ties": 3}
    ids, y_true, y_pred, rows = make_slices(sizes, {"Cufflinks": 0.0, "Ties": 0.0})
    table = slice_metrics(ids, y_true, y_pred, rows, "articleType", CLASSES, min_size=20, n_boot=100)
    assert set(table["slice"][:2]) == {"Shirts", "Jeans"}
    pooled = table.iloc[-1]
    assert pooled["slice"] == "other (2 slices)" and pooled["n"] == 8 and pooled["slices"] == 2
    assert pooled["balanced_accuracy"] == 0.0  # the worst row, still last: it is not a slice of its own
    assert table["n"].sum() == len(ids)
    assert table.attrs["small_slices"] == 2 and table.attrs["small_images"] == 8
    left = slice_metrics(ids, y_true, y_pred, rows, "articleType", CLASSES, min_size=20, n_boot=100, pool_small=False)
    assert set(left["slice"]) == {"Shirts", "Jeans"} and left["n"].sum() == 55
    assert left.attrs["small_slices"] == 2 and left.attrs["small_images"] == 8 and not left.attrs["pooled"]
    one = slice_metrics(ids, y_true, y_pred, rows, "articleType", CLASSES, min_size=4, n_boot=0)
    assert one["slice"].iloc[-1] == "other (1 slice)"


def test_point_estimates_equal_sklearn() -> None:
    rng = np.random.default_rng(7)
    n = 2000
    ids = list(range(n))
    y_true = rng.choice(3, n, p=[0.8, 0.15, 0.05])
    y_pred = np.where(rng.random(n) < 0.7, y_true, rng.integers(0, 3, n))
    kinds = rng.choice(["Shirts", "Heels", "Ties", "Watches", "Belts"], n)
    rows = {i: {"articleType": k} for i, k in zip(ids, kinds)}
    table = slice_metrics(ids, y_true, y_pred, rows, "articleType", CLASSES, n_boot=0).set_index("slice")
    for name in set(kinds):
        m = kinds == name
        with warnings.catch_warnings():  # "y_pred contains classes not in y_true", where so
            warnings.simplefilter("ignore")
            want = balanced_accuracy_score(y_true[m], y_pred[m])
        assert table.loc[name, "balanced_accuracy"] == pytest.approx(want, abs=1e-12)
        formal = recall_score(y_true[m], y_pred[m], labels=[FORMAL], average=None, zero_division=0)[0]
        assert table.loc[name, "focus_recall"] == pytest.approx(formal, abs=1e-12)
        assert [table.loc[name, c] for c in CLASSES] == np.bincount(y_true[m], minlength=3).tolist()
        # the bootstrap's counting path scores the observed matrix as sklearn does
        cm = np.bincount(y_true[m] * 3 + y_pred[m], minlength=9).reshape(3, 3)
        recall = recalls_from_counts(cm)
        assert np.nanmean(recall) == pytest.approx(want, abs=1e-12)
        assert recall[FORMAL] == pytest.approx(formal, abs=1e-12)


def test_the_counting_bootstrap_matches_resampling_the_images() -> None:
    """Drawing confusion matrices is the same bootstrap as drawing images with replacement."""
    ids, y_true, y_pred, rows = make_slices({"Shirts": 150}, {"Shirts": 0.6}, seed=3)
    table = slice_metrics(ids, y_true, y_pred, rows, "articleType", CLASSES, n_boot=4000)
    rng = np.random.default_rng(11)
    idx = rng.integers(0, len(ids), (4000, len(ids)))
    cms = np.stack([np.bincount(y_true[i] * 3 + y_pred[i], minlength=9).reshape(3, 3) for i in idx])
    balanced = np.nanmean(recalls_from_counts(cms), axis=1)
    low, high = np.percentile(balanced, [2.5, 97.5])
    assert table["balanced_accuracy_low"].iloc[0] == pytest.approx(low, abs=0.02)
    assert table["balanced_accuracy_high"].iloc[0] == pytest.approx(high, abs=0.02)


def test_intervals_are_reproducible_and_a_slices_own() -> None:
    ids, y_true, y_pred, rows = make_slices({"Shirts": 80, "Jeans": 40, "Belts": 30}, {})
    a = slice_metrics(ids, y_true, y_pred, rows, "articleType", CLASSES, n_boot=300, seed=5).set_index("slice")
    b = slice_metrics(ids, y_true, y_pred, rows, "articleType", CLASSES, n_boot=300, seed=5).set_index("slice")
    pd.testing.assert_frame_equal(a, b)
    keep = [k for k, i in enumerate(ids) if rows[i]["articleType"] != "Belts"]  # another slice gone
    c = slice_metrics(
        [ids[k] for k in keep], y_true[keep], y_pred[keep], rows, "articleType", CLASSES, n_boot=300, seed=5
    ).set_index("slice")
    assert c.loc["Shirts", "balanced_accuracy_low"] == a.loc["Shirts", "balanced_accuracy_low"]


def test_blank_or_absent_attributes_make_an_unknown_slice() -> None:
    ids = list(range(1, 31))
    rows = {i: {"gender": "" if i <= 10 else "Men"} for i in ids if i <= 20}  # 21..30 not in styles.csv
    table = slice_metrics(ids, np.zeros(30, int), np.zeros(30, int), rows, "gender", CLASSES, min_size=5, n_boot=10)
    assert dict(zip(table["slice"], table["n"])) == {UNKNOWN: 20, "Men": 10}


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="length"):
        slice_metrics([1, 2], [0], [0], {}, "gender", CLASSES)
    with pytest.raises(ValueError, match="class indices"):
        slice_metrics([1], [3], [0], {}, "gender", CLASSES)
    with pytest.raises(ValueError, match="focus class"):
        slice_metrics([1], [0], [0], {}, "gender", ("Casual", "Smart Casual"))
    empty = slice_metrics([], [], [], {}, "gender", CLASSES)
    assert empty.empty and "balanced_accuracy" in empty.columns


def test_interval_text() -> None:
    assert interval_text(0.6234, 0.512, 0.7349) == "0.62 [0.51–0.73]"
    assert interval_text(None, None, None) == "" and interval_text(pd.NA, pd.NA, pd.NA) == ""
    assert interval_text(0.5, None, None) == "0.50"


@pytest.mark.realdata
@pytest.mark.skipif(not DATA.is_dir(), reason="../shared dataset absent")
def test_shipped_cards_slices_cover_every_image_and_counts_add_up() -> None:
    from core.data.catalog import load_styles

    catalog = load_styles(DATA)
    label_of = catalog.label_of()
    for card_file in sorted((ROOT / "weights").glob("*.json")):
        card = json.loads(card_file.read_text())
        if "predictions" not in card:
            continue  # split.json
        assert card["classes"] == list(CLASSES)
        for split in ("val", "test"):
            preds = card["predictions"][split]
            ids = preds["ids"]
            assert all(i in label_of for i in ids), f"{card_file.name} {split}: ids missing from styles.csv"
            y_true = np.array([label_of[i] for i in ids])
            y_pred = np.array([int(p) for p in preds["pred"]])
            assert len(y_pred) == len(ids)
            for by in SLICE_ATTRIBUTES:
                table = slice_metrics(ids, y_true, y_pred, catalog.rows, by, CLASSES, n_boot=100)
                where = f"{card_file.name} {split} by {by}"
                assert table["n"].sum() == len(ids), where  # every image in one row, pooled ones included
                assert (table[list(CLASSES)].sum(axis=1) == table["n"]).all(), where
                assert table[list(CLASSES)].sum().tolist() == np.bincount(y_true, minlength=3).tolist(), where
                assert UNKNOWN not in set(table["slice"]), where
                slices = table["slices"].sum()
                assert slices == len({catalog.rows[i][by] for i in ids}), where
                rows = table[table["slices"] == 1]
                assert list(rows["balanced_accuracy"]) == sorted(rows["balanced_accuracy"]), where
                assert (rows["n"] >= 20).all(), where
