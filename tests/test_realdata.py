"""Checks against the real dataset copy in ``../shared/data/fashion-small`` (skipped when absent)."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import pytest

from core.config import DEFAULT_SPLIT_FILE, WEIGHTS_DIR
from core.data.catalog import Catalog, load_styles, read_styles
from core.data.split import SPLITS, load_split, split_fingerprint
from core.evaluate import evaluate_model
from core.models.card import ModelCard
from core.models.registry import REGISTRY

pytestmark = pytest.mark.realdata

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "fashion-small"
SPLIT_FILE = REPO / "weights" / "split.json"


@pytest.fixture(scope="module")
def data_dir() -> Path:
    """The real dataset folder, or a clean skip."""
    if not ((DATA / "styles.csv").is_file() and (DATA / "images").is_dir()):
        pytest.skip(f"real dataset not found at {DATA}")
    return DATA


@pytest.fixture(scope="module")
def catalog(data_dir: Path) -> Catalog:
    """The real catalog with the app's three classes."""
    return load_styles(data_dir)


def test_paths_agree_with_core() -> None:
    assert SPLIT_FILE == DEFAULT_SPLIT_FILE and SPLIT_FILE.parent == WEIGHTS_DIR


def test_class_counts(catalog: Catalog) -> None:
    assert catalog.counts() == {"Casual": 30953, "Formal": 2111, "Smart Casual": 60}


def test_recovered_rows_and_nothing_dropped(data_dir: Path, catalog: Catalog) -> None:
    assert catalog.recovered_rows == 22
    rows, recovered = read_styles(data_dir / "styles.csv")
    assert recovered == 22
    n_lines = sum(1 for line in (data_dir / "styles.csv").read_text(encoding="utf-8").splitlines() if line.strip())
    assert len(rows) == n_lines - 1  # every data line is a row: none dropped
    assert all(len(r) == 10 for r in rows)
    assert all(r["year"] == "" or r["year"].isdigit() for r in rows)  # no shifted columns


@pytest.fixture(scope="module")
def saved_split() -> dict[str, list[int]]:
    """The repository's saved split."""
    if not SPLIT_FILE.is_file():
        pytest.fail(f"{SPLIT_FILE} is missing from the repository")
    return load_split(SPLIT_FILE)


def test_saved_split_ids_usable_and_complete(catalog: Catalog, saved_split: dict) -> None:
    usable = set(catalog.ids)
    all_ids = [i for s in SPLITS for i in saved_split[s]]
    assert len(all_ids) == len(set(all_ids))  # no id in two splits
    assert set(all_ids) <= usable
    assert set(all_ids) == usable  # this copy is the one the split was made from
    assert json.loads(SPLIT_FILE.read_text())["fingerprint"] == split_fingerprint(saved_split)


def test_saved_split_stratified(catalog: Catalog, saved_split: dict) -> None:
    totals = catalog.counts()
    for name in ("Casual", "Formal"):
        for s, frac in zip(SPLITS, (0.70, 0.15, 0.15)):
            assert abs(catalog.counts(saved_split[s])[name] / totals[name] - frac) < 0.02
    assert all(catalog.counts(saved_split[s])["Smart Casual"] >= 5 for s in SPLITS)


def test_no_identical_image_across_splits(data_dir: Path, saved_split: dict) -> None:
    where: dict[str, set[str]] = defaultdict(set)
    for s in SPLITS:
        for i in saved_split[s]:
            digest = hashlib.sha256((data_dir / "images" / f"{i}.jpg").read_bytes()).hexdigest()
            where[digest].add(s)
    crossing = {d: v for d, v in where.items() if len(v) > 1}
    assert not crossing, f"{len(crossing)} byte-identical images are in more than one split"
    n_ids = sum(len(v) for v in saved_split.values())
    assert len(where) < n_ids  # the real data does have identical images, so the check means something


def _shipped(name: str) -> tuple[Path, Path]:
    return WEIGHTS_DIR / f"{name}.safetensors", WEIGHTS_DIR / f"{name}.json"


# the 120×160 models' full val + test pass in fp32 takes 100 s or more each on 2 cores (AVX2): slow tests
# (python -m pytest -m slow), run whenever their weights change; baseline reproduces its card in every default run
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n != "baseline" else n for n in REGISTRY])
def test_shipped_weights_reproduce_card(data_dir: Path, catalog: Catalog, saved_split: dict, name: str) -> None:
    weights, card_path = _shipped(name)
    if not (weights.is_file() and card_path.is_file()):
        pytest.skip(f"{name}: no shipped weights yet")
    card = ModelCard.load(card_path)
    assert card.data["split_fingerprint"] == split_fingerprint(saved_split), "card made on another split"
    recorded = card.metrics["test"]
    rep = evaluate_model(name, data_dir, "test", weights_dir=WEIGHTS_DIR, split_file=SPLIT_FILE, n_boot=0)
    assert rep["n"] == recorded["n"] == len(saved_split["test"])
    for key in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert rep[key] == recorded[key], key
    assert rep["confusion_matrix"] == recorded["confusion_matrix"]
    if card.predictions.get("test"):
        pred = card.predictions["test"]
        assert {str(i): card.classes[int(p)] for i, p in zip(pred["ids"], pred["pred"])} == rep["predictions"]
    # the recorded numbers again, counted by hand from the predictions and styles.csv (not core.scoring.metrics)
    label_of, classes = catalog.label_of(), card.classes
    pairs = [(classes[label_of[int(i)]], p) for i, p in rep["predictions"].items()]
    cm = [[sum(t == a and p == b for t, p in pairs) for b in classes] for a in classes]
    assert cm == recorded["confusion_matrix"]
    k = range(len(classes))
    recall = [cm[c][c] / sum(cm[c]) for c in k]
    precision = [cm[c][c] / max(1, sum(cm[r][c] for r in k)) for c in k]
    f1 = [2 * p * r / (p + r) if p + r else 0.0 for p, r in zip(precision, recall)]
    assert recorded["accuracy"] == pytest.approx(sum(cm[c][c] for c in k) / len(pairs), abs=1e-12)
    assert recorded["balanced_accuracy"] == pytest.approx(sum(recall) / len(k), abs=1e-12)
    assert recorded["macro_f1"] == pytest.approx(sum(f1) / len(k), abs=1e-12)


# Framing floors on a slice of test with the shipped weights: Formal recall as a ratio to the unframed
# value, per framing (default, then exceptions), and the lowest Casual recall. They guard what holds
# today, set from the VALIDATION runs (bench/framing-results/val_thirteenth_adopted.json for effnet_lite0,
# val_nineteenth_baseline.json, val_eighteenth_resnet50.json) with a margin for the slice's noise, never from
# test. On val all three keep Casual recall >= 0.95 on every framing (resnet50 since the eighteenth try: 0.953
# at least, ratio 0.95 at least); the issue's bar is not met on test by resnet50's Formal ratio under the rotation
# and the drop shadow (README, "Photos framed …").
FRAMING_FLOORS = {
    "effnet_lite0": ({"default": 0.8}, 0.9),
    "resnet50": ({"default": 0.7}, 0.9),
    "baseline": ({"default": 0.75}, 0.9),
}
FRAMING_SLICE = {"Formal": 100, "Casual": 100}


def test_shipped_models_keep_their_answer_on_framed_test_photos(data_dir: Path) -> None:
    from bench.framing import run

    result = run("test", list(FRAMING_FLOORS), FRAMING_SLICE, True, None, None, 2)
    assert result["images"] >= 200
    kept = [p for by_framing in result["predictions"].values() for p in by_framing.values()]
    assert {len(p) for p in kept} == {result["images"]} and set("".join(kept)) <= set("012")  # each image's answer
    failures = []
    for model, (floors, casual_floor) in FRAMING_FLOORS.items():
        for framing, r in result["models"][model].items():
            floor = floors.get(framing, floors["default"])
            if r["formal_recall_ratio"] < floor or r["casual_recall"] < casual_floor:
                failures.append(
                    f"{model} · {framing}: Formal ratio {r['formal_recall_ratio']:.2f} (floor {floor}), "
                    f"Casual recall {r['casual_recall']:.2f} (floor {casual_floor})"
                )
    assert not failures, failures


def test_the_framing_step_barely_changes_the_dataset_images(data_dir: Path, catalog: Catalog) -> None:
    import numpy as np

    from core.images.preprocess import frame_and_fit, open_image, to_native

    ids = sorted(load_split(SPLIT_FILE)["val"])[:300]
    kept, diffs = 0, []
    for pid in ids:
        image = open_image(catalog.image_path(pid).read_bytes()).image
        fitted = frame_and_fit(image)
        kept += fitted.framing.action == "kept"
        diffs.append(np.abs(np.asarray(fitted.image, float) - np.asarray(to_native(image), float)).mean())
    assert kept / len(ids) > 0.7  # most catalogue shots are left exactly as they are
    # grey levels, mean over all images (0 for the kept ones); 10.3 on these 300 and 6.9 over the whole dataset
    # (README): model shots on plain backdrops and small products are cropped to the product
    assert float(np.mean(diffs)) < 12.0


# Pale formal shirts (val) that the shadow step took for shadows and painted white when padded to a white
# square (docs/framing-retrain-rule.md, eleventh try); ids chosen from that run, a regression guard of the step.
PALE_SHIRTS = [11250, 12258, 15910, 23034, 26059, 26123, 26790, 27148, 27155, 31133]


def test_pale_shirts_padded_to_a_square_come_back_close_to_their_thumbnails(data_dir: Path, catalog: Catalog) -> None:
    import numpy as np
    from image_cases import EARLIER_PARTS_FRAMING, PLAIN_FRAMING, SHIPPED_FRAMING

    from core.images.framings import FRAMINGS, enlarge
    from core.images.preprocess import frame_and_fit, open_image, to_native

    plain, parts, both = PLAIN_FRAMING, EARLIER_PARTS_FRAMING, SHIPPED_FRAMING  # both: the shipped step
    dist: dict[str, list[float]] = {"plain": [], "parts": [], "both": []}
    for pid in PALE_SHIRTS:
        raw = open_image(catalog.image_path(pid).read_bytes()).image
        own = np.asarray(to_native(raw), float)
        photo = FRAMINGS["white square"](enlarge(raw), pid)
        for name, params in (("plain", plain), ("parts", parts), ("both", both)):
            dist[name].append(float(np.abs(np.asarray(frame_and_fit(photo, params).image, float) - own).mean()))
    mean = {k: float(np.mean(v)) for k, v in dist.items()}
    assert mean["parts"] > mean["plain"] + 3  # the defect: the shirts' pale fronts erased
    assert mean["both"] < mean["parts"] - 3 and mean["both"] < mean["plain"] + 0.5, mean
    assert all(b < p for b, p in zip(dist["both"], dist["parts"])), dist
