"""core.data (catalog, split, products, cache, summary) on the generated fixture: loading, skipped rows,
recovery, the duplicate-aware split."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import PIL
import pytest
from fixtures import (
    CLASSES,
    CONFLICT_PAIR,
    DUPLICATE_GROUP,
    EMPTY_USAGE_ID,
    EXPECTED_RECOVERED,
    EXPECTED_SKIPPED,
    MISSING_IMAGE_ID,
    NA_USAGE_ID,
    QUOTED_ID,
    QUOTED_NAME,
    RECOVERED,
    SMALL_ID,
    SPORTS_IDS,
    expected_counts,
    expected_master_counts,
)
from PIL import Image

from core.config import DATA_ENV_VAR, find_default_data_dir
from core.data import summary
from core.data.cache import _cache_key, decoder_versions, load_native_images
from core.data.catalog import Catalog, load_styles, read_styles
from core.data.products import product_keys, twins_in_train, val_twins_in_train
from core.data.split import (
    SPLIT_FRACTIONS,
    SPLITS,
    duplicate_groups,
    get_or_make_split,
    load_split,
    make_split,
    save_split,
    split_fingerprint,
)
from core.images.preprocess import load_native_rgb


def file_digests(root: Path, ids: list[int]) -> dict[int, str]:
    """sha256 of each id's image bytes (independent of core's own hashing)."""
    return {i: hashlib.sha256((root / "images" / f"{i}.jpg").read_bytes()).hexdigest() for i in ids}


@pytest.fixture(scope="module")
def catalog(tiny_dataset: Path) -> Catalog:
    """The fixture loaded with the default classes."""
    return load_styles(tiny_dataset)


def test_counts_and_skipped_reasons(catalog: Catalog) -> None:
    assert catalog.classes == CLASSES
    assert catalog.label_column == "usage"
    assert catalog.counts() == expected_counts()
    assert catalog.skipped == EXPECTED_SKIPPED
    assert len(catalog.ids) == len(set(catalog.ids)) == sum(expected_counts().values())
    for pid in (*SPORTS_IDS, EMPTY_USAGE_ID, NA_USAGE_ID, MISSING_IMAGE_ID):
        assert pid not in catalog.ids
    assert SMALL_ID in catalog.ids  # a smaller image is still usable


def test_recovered_rows_rejoined_exactly(catalog: Catalog) -> None:
    assert catalog.recovered_rows == EXPECTED_RECOVERED
    for pid, name in RECOVERED.items():
        row = catalog.rows[pid]
        assert row["productDisplayName"] == name
        assert row["usage"] in CLASSES  # the fields before the last one are untouched
        assert row["year"] == "2012"
    # a properly quoted comma is read by csv itself and is not a recovery
    assert catalog.rows[QUOTED_ID]["productDisplayName"] == QUOTED_NAME


def test_read_styles_short_row_is_padded(tmp_path: Path) -> None:
    (tmp_path / "styles.csv").write_text(
        "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName\n"
        "1,Men,Apparel,Topwear,Tshirts,Red,Summer,2012,Casual\n"
    )
    rows, recovered = read_styles(tmp_path / "styles.csv")
    assert recovered == 0
    assert rows == [
        {
            "id": "1",
            "gender": "Men",
            "masterCategory": "Apparel",
            "subCategory": "Topwear",
            "articleType": "Tshirts",
            "baseColour": "Red",
            "season": "Summer",
            "year": "2012",
            "usage": "Casual",
            "productDisplayName": "",
        }
    ]


def test_classes_and_label_column_are_parameters(tiny_dataset: Path) -> None:
    cat = load_styles(tiny_dataset, classes=("Apparel", "Footwear"), label_column="masterCategory")
    assert cat.classes == ("Apparel", "Footwear")
    assert cat.counts() == expected_master_counts()
    # usage no longer matters: the Sports / empty / NA rows are usable Apparel here
    assert {*SPORTS_IDS, EMPTY_USAGE_ID, NA_USAGE_ID} <= set(cat.ids)
    assert cat.skipped == {"no_image": 1, "bad_id": 1}

    sub = load_styles(tiny_dataset, classes=("Formal", "Casual"))
    assert sub.counts() == {"Formal": 36, "Casual": 36}
    assert sub.skipped["other_label"] == 2 + 36  # Sports rows + the Smart Casual rows
    assert sub.labels[sub.ids.index(CONFLICT_PAIR[0])] == 1  # indexes follow the given order


def test_unknown_label_column_and_missing_csv(tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="nosuchcolumn"):
        load_styles(tiny_dataset, label_column="nosuchcolumn")
    with pytest.raises(FileNotFoundError):
        load_styles(tmp_path)


def test_split_deterministic_and_stratified(catalog: Catalog) -> None:
    a = make_split(catalog, seed=42)
    b = make_split(catalog, seed=42)
    c = make_split(catalog, seed=7)
    assert a == b
    assert a != c
    # a partition of the usable ids
    all_ids = [i for s in SPLITS for i in a[s]]
    assert sorted(all_ids) == sorted(catalog.ids)
    for s in SPLITS:
        assert a[s] == sorted(a[s])
    # every class roughly 70/15/15
    for name, total in catalog.counts().items():
        for s, frac in zip(SPLITS, SPLIT_FRACTIONS):
            got = catalog.counts(a[s])[name] / total
            assert abs(got - frac) <= 0.08, (name, s, got)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 42])
def test_identical_images_never_cross_splits(tiny_dataset: Path, catalog: Catalog, seed: int) -> None:
    split = make_split(catalog, seed=seed)
    digests = file_digests(tiny_dataset, catalog.ids)
    where: dict[str, set[str]] = {}
    for s in SPLITS:
        for i in split[s]:
            where.setdefault(digests[i], set()).add(s)
    assert all(len(v) == 1 for v in where.values())
    # the fixture's groups really are byte-identical, so the check above had something to check
    assert len({digests[i] for i in DUPLICATE_GROUP}) == 1
    assert len({digests[i] for i in CONFLICT_PAIR}) == 1
    side = {s for s in SPLITS if DUPLICATE_GROUP[0] in split[s]}
    assert all(i in split[next(iter(side))] for i in DUPLICATE_GROUP)


def test_duplicate_groups_keys(catalog: Catalog) -> None:
    groups = duplicate_groups(catalog)
    assert set(groups) == set(catalog.ids)
    assert len({groups[i] for i in DUPLICATE_GROUP}) == 1
    assert groups[CONFLICT_PAIR[0]] == groups[CONFLICT_PAIR[1]]
    # all other images are distinct
    n_keys = len(set(groups.values()))
    assert n_keys == len(catalog.ids) - (len(DUPLICATE_GROUP) - 1) - (len(CONFLICT_PAIR) - 1)


def test_save_load_round_trip_and_fingerprint(catalog: Catalog, tmp_path: Path) -> None:
    split = make_split(catalog, seed=42)
    path = tmp_path / "sub" / "split.json"
    save_split(split, path, {"seed": 42})
    assert load_split(path) == split
    doc = json.loads(path.read_text())
    assert doc["fingerprint"] == split_fingerprint(split)
    assert doc["meta"] == {"seed": 42}
    assert len(doc["fingerprint"]) == 16
    # the fingerprint follows the content, not the order of the ids
    shuffled = {s: list(reversed(v)) for s, v in split.items()}
    assert split_fingerprint(shuffled) == split_fingerprint(split)
    moved = {s: list(v) for s, v in split.items()}
    moved["val"].append(moved["train"].pop())
    assert split_fingerprint(moved) != split_fingerprint(split)


def test_get_or_make_split_writes_then_reuses(catalog: Catalog, tmp_path: Path) -> None:
    path = tmp_path / "split.json"
    first = get_or_make_split(catalog, path, seed=3)
    assert path.is_file()
    assert first == make_split(catalog, seed=3)
    meta = json.loads(path.read_text())["meta"]
    assert meta["seed"] == 3 and meta["classes"] == list(CLASSES) and meta["label_column"] == "usage"
    # a different seed does not matter once the file exists
    assert get_or_make_split(catalog, path, seed=99) == first
    # restricted to the catalog's ids: ids the copy lacks are dropped
    saved = load_split(path)
    saved["test"].append(123456789)
    save_split(saved, path)
    assert get_or_make_split(catalog, path) == first


def test_load_native_images(tiny_dataset: Path, catalog: Catalog) -> None:
    ids = [catalog.ids[0], SMALL_ID]
    arr = load_native_images(catalog, ids, use_cache=False)
    assert arr.shape == (2, 80, 60, 3) and arr.dtype == np.uint8
    # a native-size JPEG is decoded as is (no resize, no second JPEG round trip)
    with Image.open(tiny_dataset / "images" / f"{ids[0]}.jpg") as im:
        assert np.array_equal(arr[0], np.asarray(im.convert("RGB")))
    # the 57x77 image goes through the same function as uploads
    expected = np.asarray(load_native_rgb((tiny_dataset / "images" / f"{SMALL_ID}.jpg").read_bytes()))
    assert np.array_equal(arr[1], expected)
    assert load_native_images(catalog, [], use_cache=False).shape == (0, 80, 60, 3)


def test_load_native_images_cache(catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    ids = catalog.ids[:70]  # caches above 64 images
    first = load_native_images(catalog, ids)
    assert [p.name.count(".") for p in (tmp_path / "dresscode").iterdir()] == [1]  # one cache file, no temporary left
    assert np.array_equal(load_native_images(catalog, ids), first)
    assert all(decoder_versions())  # each a real version ("lcms" is no feature name: it gave None)
    key = _cache_key(catalog, ids)
    monkeypatch.setattr(PIL, "__version__", "0.0")  # another Pillow (or libjpeg) may decode other pixels
    assert _cache_key(catalog, ids) != key
    monkeypatch.undo()
    assert _cache_key(catalog, ids) == key
    import core.data.cache as cache_module

    default = cache_module.DEFAULT_FRAMING
    changed = dataclasses.replace(default, shadow_chroma=default.shadow_chroma + 1.0)
    monkeypatch.setattr(cache_module, "DEFAULT_FRAMING", changed)  # a new default of the framing step
    assert _cache_key(catalog, ids) != key  # images framed with the old one are not served


def test_image_cache_notices_replaced_and_repaired_files(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    catalog = load_styles(copy)
    ids = catalog.ids[:70]  # caches above 64 images
    first = load_native_images(catalog, ids)
    victim = catalog.image_path(ids[3])
    original = victim.read_bytes()
    Image.new("RGB", (60, 80), (250, 0, 0)).save(victim, "JPEG", quality=95)  # the file is replaced
    second = load_native_images(catalog, ids)
    assert not np.array_equal(second[3], first[3]) and np.array_equal(second[4], first[4])
    victim.write_bytes(original[: len(original) // 3])  # now truncated
    unreadable: list[int] = []
    blanked = load_native_images(catalog, ids, unreadable=unreadable)
    assert unreadable == [ids[3]] and (blanked[3] == 255).all()
    victim.write_bytes(original)  # repaired: decoded again, not the cached blank
    unreadable.clear()
    again = load_native_images(catalog, ids, unreadable=unreadable)
    assert unreadable == [] and np.array_equal(again, first)


def test_data_cli_prints_counts(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    split_file = tmp_path / "split.json"
    assert summary.main(["--data", str(tiny_dataset), "--split-file", str(split_file)]) == 0
    out = capsys.readouterr().out
    assert split_file.is_file()
    split = load_split(split_file)
    cat = load_styles(tiny_dataset)
    assert f"rows recovered (commas in the last column): {EXPECTED_RECOVERED}" in out
    for name in CLASSES:
        per = [cat.counts(split[s])[name] for s in SPLITS]
        line = next(ln for ln in out.splitlines() if ln.startswith(name + " ") and ln.split()[-1].isdigit())
        assert [int(x) for x in line.split()[-4:]] == [*per, 36]
    for reason, n in EXPECTED_SKIPPED.items():
        assert f"  {reason}: {n}" in out
    assert f"usable rows with an image: {3 * 36}" in out
    assert f"split fingerprint: {split_fingerprint(split)}" in out


def test_data_cli_options(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    split_file = tmp_path / "never-written.json"
    argv = [
        "--data",
        str(tiny_dataset),
        "--split-file",
        str(split_file),
        "--new-split",
        "--label-column",
        "masterCategory",
        "--classes",
        "Apparel",
        "Footwear",
    ]
    assert summary.main(argv) == 0
    out = capsys.readouterr().out
    assert not split_file.exists()  # --new-split does not write
    assert "label column: masterCategory" in out
    assert f"usable rows with an image: {sum(expected_master_counts().values())}" in out
    assert "  bad_id: 1" in out and "other_label" not in out


def test_data_cli_without_data_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(summary, "find_default_data_dir", lambda: None)
    with pytest.raises(SystemExit) as exc:
        summary.main(["--split-file", str(tmp_path / "s.json")])
    assert exc.value.code == 2


def test_find_default_data_dir_env(monkeypatch: pytest.MonkeyPatch, tiny_dataset: Path, tmp_path: Path) -> None:
    monkeypatch.setenv(DATA_ENV_VAR, str(tiny_dataset))
    assert find_default_data_dir() == tiny_dataset


def twin_catalog() -> Catalog:
    """Eight products by hand: colour variants of one shirt and one watch, in several splits."""
    names = {
        1: ("Highlander Men Red Striped Shirt", "Red", 2),
        2: ("Highlander Men White Striped Shirt", "White", 2),  # colour variant of 1
        3: ("Highlander Men Navy Blue Striped Shirt", "Navy Blue", 2),  # "navy blue" is two colour words
        4: ("Timex Men Black Dial Watch", "Black", 2),
        5: ("Timex Men Black Dial Watch", "Black", 0),  # same product, other class
        6: ("Turtle Men Brown Wallet", "Brown", 2),  # no twin anywhere
        7: ("", "Red", 0),  # no name: a product of its own
        8: ("", "Red", 0),
    }
    rows = {pid: {"productDisplayName": n, "baseColour": c} for pid, (n, c, _) in names.items()}
    return Catalog(Path("."), CLASSES, "usage", list(names), [k for _, _, k in names.values()], rows)


TWIN_SPLIT = {"train": [1, 5, 7], "val": [2, 4, 6, 8], "test": [3]}


def test_product_keys_join_colour_variants() -> None:
    keys = product_keys(twin_catalog())
    assert keys[1] == keys[2] == keys[3] == "highlander men striped shirt"
    assert keys[4] == keys[5] == "timex men dial watch"
    assert keys[7] != keys[8]  # unnamed rows are never twins


def test_twins_in_train_counts_same_class_products_only() -> None:
    twins = twins_in_train(twin_catalog(), TWIN_SPLIT)
    # val Smart Casual: 2 (shirt, twin of 1) counts; 4 (watch, train twin 5 is Casual) and 6 do not
    assert twins["val"] == {"Casual": (0, 1), "Formal": (0, 0), "Smart Casual": (1, 3)}
    assert twins["test"] == {"Casual": (0, 0), "Formal": (0, 0), "Smart Casual": (1, 1)}


def test_val_twins_in_train() -> None:
    cat = twin_catalog()
    assert val_twins_in_train(cat, TWIN_SPLIT, ["Smart Casual"]) == [1]
    assert val_twins_in_train(cat, TWIN_SPLIT, ["Casual"]) == []  # 5's twin in val is Smart Casual
    with pytest.raises(ValueError, match="unknown classes"):
        val_twins_in_train(cat, TWIN_SPLIT, ["Smart"])


def test_data_cli_reports_twins(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert summary.main(["--data", str(tiny_dataset), "--split-file", str(tmp_path / "split.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    head = out.index("images whose product (name without colour words) is in train with the same class:")
    split = load_split(tmp_path / "split.json")
    cat = load_styles(tiny_dataset)
    formal = out[head + 3].split()
    n_val, n_test = (cat.counts(split[s])["Formal"] for s in ("val", "test"))
    # every fixture product has a name of its own: no twins
    assert formal == ["Formal", "0", "of", str(n_val), "0", "of", str(n_test)]
