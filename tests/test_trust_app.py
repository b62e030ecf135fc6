"""AppTest of the trust checks: the Trust page's charts, Classify's deletion line and its similar training
products (from a generated dataset and split), and the sentence that replaces them without a dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from apptest_helpers import APPTEST_MARKS, app
from fixtures import CONFLICT_PAIR, DUPLICATE_GROUP
from streamlit.testing.v1 import AppTest

from core.data.catalog import load_styles
from core.data.split import make_split, save_split
from core.images.upload import read_upload

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 300

pytestmark = APPTEST_MARKS


def tiny_photo(root: Path, pid: int) -> tuple[str, bytes, str]:
    return f"{pid}.jpg", (root / "images" / f"{pid}.jpg").read_bytes(), "image/jpeg"


def app_on_the_tiny_dataset(
    monkeypatch: pytest.MonkeyPatch, tiny_dataset: Path, tmp_path: Path
) -> tuple[AppTest, dict]:
    """The app with the generated dataset and a split of it saved where the similar-products index reads it."""
    catalog = load_styles(tiny_dataset)
    split = make_split(catalog)
    save_split(split, tmp_path / "split.json", {"classes": list(catalog.classes), "label_column": "usage"})
    monkeypatch.setenv("DRESSCODE_DATA", str(tiny_dataset))
    from pages.ui import trust

    monkeypatch.setattr(trust, "SPLIT_FILE", tmp_path / "split.json")
    return app(), split


def chart_json(at: AppTest) -> list[str]:
    return [el.proto.spec for el in at.get("plotly_chart")]


def test_trust_page_charts_the_cascade_and_the_curves_and_says_why_no_neighbours(monkeypatch, tiny_dataset) -> None:
    monkeypatch.setenv("DRESSCODE_DATA", "/nonexistent")  # no dataset: the neighbours' sentence
    at = app()
    at.switch_page("pages/trust.py")
    at.run()
    assert not at.exception and at.title[0].value == "Can this heatmap be trusted?"
    at.selectbox(key="trust_model").set_value("baseline")
    at.file_uploader(key="trust_upload").set_value(tiny_photo(tiny_dataset, 11005))  # a Formal-looking photo
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    charts = chart_json(at)
    assert len(charts) == 2
    cascade = json.loads(charts[0])
    assert [t["name"] for t in cascade["data"]] == ["Spearman rank correlation", "SSIM"]
    assert cascade["data"][0]["x"] == ["trained", "head.4", "+ head.1", "+ conv2", "+ conv1"]
    assert cascade["data"][0]["y"][0] == 1.0 and len(cascade["data"][1]["y"]) == 5
    curves = json.loads(charts[1])
    assert len(curves["data"]) == 6 and any("random order (AUC" in t["name"] for t in curves["data"])
    captions = " ".join(c.value for c in at.caption)
    assert "Fully randomised, its Spearman correlation with the trained map is" in captions
    assert "Deletion AUC" in captions and "Insertion starts from a blurred copy" in captions
    assert "removed pixels are filled in from their neighbours (ROAD's imputation)" in captions
    assert "Similar training products:" in captions and "cannot be shown" in captions
    assert not [t for t in at.toggle if t.label == "Similar training products"]  # hidden, the sentence instead


def test_classify_shows_the_deletion_line_and_the_similar_training_products(monkeypatch, tiny_dataset, tmp_path):
    at, split = app_on_the_tiny_dataset(monkeypatch, tiny_dataset, tmp_path)
    pid = next(i for i in split["train"] if i not in (*DUPLICATE_GROUP, *CONFLICT_PAIR))
    photo = tiny_photo(tiny_dataset, pid)
    at.file_uploader(key="uploads").set_value(photo)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    lines = [c.value for c in at.caption if c.value.startswith("Deletion check: removing the top 10% of this map ")]
    assert len(lines) == 2 and all("(random 10%: " in line for line in lines)  # one per model
    assert all("Deleted pixels are filled in from their neighbours" in line for line in lines)
    assert [t.value for t in at.toggle if t.label == "Similar training products"] == [False]  # nothing computed yet
    digest = read_upload(photo[0], photo[1]).digest
    at.toggle(key=f"similar_single_{digest}").set_value(True)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    said = [m.value for m in at.markdown if ": it looks like these 6 " in m.value]
    assert len(said) == 2, [m.value for m in at.markdown]
    found = [c for el in at.get("image") for c in el.captions if " · d=" in c]
    assert len(found) == 12
    assert found[0].split(" · ")[1] == str(pid)  # a training photo finds itself first


def test_classify_hides_similar_products_with_a_sentence_without_dataset(monkeypatch, tiny_dataset) -> None:
    monkeypatch.setenv("DRESSCODE_DATA", "/nonexistent")
    at = app()
    at.file_uploader(key="uploads").set_value(tiny_photo(tiny_dataset, 10010))
    at.run()
    assert not at.exception
    assert not [t for t in at.toggle if t.label == "Similar training products"]
    assert any(c.value.startswith("Similar training products: ") for c in at.caption)
    assert sum(c.value.startswith("Deletion check: ") for c in at.caption) == 2


@pytest.mark.realdata
@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "fashion-small").is_dir(), reason="../shared dataset absent")
def test_the_cascade_is_two_clicks_from_a_fresh_start() -> None:
    at = app()
    at.switch_page("pages/trust.py")  # click 1: the Trust page
    at.run()
    at.radio(key="trust_source").set_value("dataset sample")  # click 2: a held-out Formal photo
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(chart_json(at)) == 2 and any(t.label == "Similar training products" for t in at.toggle)


def test_a_batch_rows_details_have_the_trust_lines_too(monkeypatch, tiny_dataset, tmp_path) -> None:
    """Inside a batch row (an expander) the similar products sit behind a toggle: expanders cannot nest."""
    at, _ = app_on_the_tiny_dataset(monkeypatch, tiny_dataset, tmp_path)
    photos = [tiny_photo(tiny_dataset, pid) for pid in (10010, 11012)]
    at.file_uploader(key="uploads").set_value(photos)
    at.run()
    digest = read_upload(photos[0][0], photos[0][1]).digest
    at.session_state[f"row_0_{digest}"] = True  # open the first row
    at.run()
    at.toggle(key=f"similar_row0_{digest}").set_value(True)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert sum(c.value.startswith("Deletion check: ") for c in at.caption) == 2
    assert len([m for m in at.markdown if ": it looks like these 6 " in m.value]) == 2


def test_a_photo_with_an_all_zero_embedding_gets_a_sentence_not_an_error(monkeypatch, tiny_dataset, tmp_path):
    """The index leaves out an all-zero query (no direction): the section says so instead of empty columns."""
    at, split = app_on_the_tiny_dataset(monkeypatch, tiny_dataset, tmp_path)
    from core.explanation import neighbours

    def zero_query(self, served, images, k=neighbours.K):  # the index is built as usual, the query is zero
        return self.search(np.zeros((len(images), self.vectors.shape[1]), np.float32), k)

    monkeypatch.setattr(neighbours.NeighbourIndex, "nearest", zero_query)
    photo = tiny_photo(tiny_dataset, split["train"][0])
    at.file_uploader(key="uploads").set_value(photo)
    at.run()
    at.toggle(key=f"similar_single_{read_upload(photo[0], photo[1]).digest}").set_value(True)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    said = [c.value for c in at.caption if "its embedding is all zero" in c.value]
    assert len(said) == 2 and not [m for m in at.markdown if ": it looks like these " in m.value]
