"""A demo a stakeholder can follow: every model's verdict and the ensemble's, calibrated confidence, many
photos at a glance, a clickable confusion matrix and exports that stand alone (AppTest and core)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from apptest_helpers import APPTEST_MARKS, app
from image_cases import encode, garment_photo
from PIL import Image
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

from core.explanation.overlay import annotated_download, enlarge
from core.explanation.report_html import ReportPhoto, metric_rows, rare_class_caveat, report_html
from core.models.card import ModelCard
from core.models.registry import REGISTRY, get_spec
from core.scoring.calibration import ENSEMBLE_TITLE
from pages.ui import matrices, results, verdicts

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "fashion-small"
WEIGHTS = ROOT / "weights"
TIMEOUT = 300
CLASSES = ["Casual", "Formal", "Smart Casual"]

pytestmark = APPTEST_MARKS
calibrated = pytest.mark.skipif(
    not (WEIGHTS / "calibration.json").is_file() or not (WEIGHTS / "ensemble.json").is_file(),
    reason="no calibration.json / ensemble.json (python -m core.calibrate)",
)


def photo_bytes(k: int) -> tuple[str, bytes, str]:
    colour = ((30, 40, 120), (10, 10, 10), (200, 60, 40), (240, 240, 60))[k % 4]
    return f"p{k:02d}.png", encode(garment_photo(colour=colour), "PNG"), "image/png"


def test_agreement_is_said_in_words() -> None:
    say = verdicts.agreement
    assert (
        say({"Baseline CNN": "Formal", "ResNet50": "Formal", "EfficientNet-Lite0": "Formal"}) == "All three say Formal"
    )
    assert (
        say({"Baseline CNN": "Casual", "ResNet50": "Casual", "EfficientNet-Lite0": "Formal"})
        == "EfficientNet-Lite0 says Formal, the other two Casual"
    )
    assert (
        say({"Baseline CNN": "Casual", "ResNet50": "Smart Casual", "EfficientNet-Lite0": "Formal"})
        == "Baseline CNN says Casual, ResNet50 Smart Casual, EfficientNet-Lite0 Formal"
    )
    assert say({"A": "Casual", "B": "Casual"}) == "Both say Casual"


@calibrated
def test_classify_shows_every_models_verdict_the_ensemble_and_calibrated_confidence() -> None:
    at = app()
    at.file_uploader(key="uploads").set_value(photo_bytes(0))
    at.run()
    assert not at.exception
    row = [m.value for m in at.main.markdown if m.value.startswith("**") and " · " in m.value]
    titles = [get_spec(n).title.split(" (")[0] for n in REGISTRY]
    assert [r.split("**")[1] for r in row] == [*titles, "Ensemble"], row
    assert all(re.search(r"\n(Casual|Formal|Smart Casual) · \d+%$", r) for r in row), row
    said = [m.value for m in at.markdown if re.match(r"\*\*(All three say|.* says )", m.value)]
    assert len(said) == 1 and "the ensemble says" in said[0], said
    assert all(m.delta.endswith("% calibrated confidence") for m in at.metric)
    best = max(REGISTRY, key=lambda n: ModelCard.load(REGISTRY[n].card_file).metrics["val"]["balanced_accuracy"])
    assert sum("★" in r for r in row) == 1 and any(
        r.startswith(f"**{get_spec(best).title.split(' (')[0]}**") and "★" in r for r in row
    )
    side = " ".join(c.value for c in at.sidebar.caption)
    assert f"Most accurate on validation: **{get_spec(best).title.split(' (')[0]}**" in side


def test_settings_collapse_once_a_photo_is_in_and_stay_open_when_reopened() -> None:
    at = app()
    assert at.session_state["heatmap_settings"] if "heatmap_settings" in at.session_state else True
    at.file_uploader(key="uploads").set_value(photo_bytes(1))
    at.run()
    assert not at.exception and not any("Session State" in w.value for w in at.warning)
    assert at.session_state["heatmap_settings"] is False  # closed, so the first verdict shows on a laptop
    at.session_state["heatmap_settings"] = True  # the visitor opens them again
    at.run()
    at.run()
    assert at.session_state["heatmap_settings"] is True and not any("Session State" in w.value for w in at.warning)


def test_many_photos_get_thumbnails_a_paged_heatmap_grid_and_a_full_csv() -> None:
    at = app()
    at.selectbox(key="model_a").set_value("baseline")
    at.selectbox(key="model_b").set_value("baseline")  # one cheap model twice
    at.run()
    at.file_uploader(key="uploads").set_value([photo_bytes(k) for k in range(14)])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    captions = [c for el in at.get("image") for c in el.captions]
    grid = [c for c in captions if re.fullmatch(r"\d+\. p\d\d\.png", c)]
    assert grid == [f"{k + 1}. p{k:02d}.png" for k in range(12)]  # the first 12 without a click
    assert sum(c.startswith("Baseline CNN: ") and "Grad-CAM for" in c for c in captions) == 24
    at.number_input(key="grid_page").set_value(2)  # more on request
    at.run()
    captions = [c for el in at.get("image") for c in el.captions]
    assert [c for c in captions if re.fullmatch(r"\d+\. p\d\d\.png", c)] == ["13. p12.png", "14. p13.png"]
    buttons = [b.proto.label for b in at.get("download_button")]
    assert "Download results (CSV)" in buttons and "Download explanation report of these photos (HTML)" in buttons


def fake_photo(name: str, error: str | None = None) -> SimpleNamespace:
    native = np.full((80, 60, 3), 200, np.uint8)
    return SimpleNamespace(
        filename=name, error=error, native=native, preview=np.full((160, 120, 3), 90, np.uint8),
        framing_note="" if error else "cropped and placed on white", notes=[], digest=name,
    )  # fmt: skip


def test_the_csv_has_every_class_probability_of_every_model_the_ensemble_framing_and_file() -> None:
    photos = [fake_photo("a.jpg"), fake_photo("bad.gif", "not an image"), fake_photo("b.jpg")]
    rng = np.random.default_rng(0)
    probs = {n: rng.dirichlet(np.ones(3), 2) for n in REGISTRY} | {"ensemble": rng.dirichlet(np.ones(3), 2)}
    slots = (("a", "baseline"), ("b", "resnet50"))
    shown, every, csv = results.tables(photos, probs, slots, CLASSES)
    assert list(csv["file"]) == ["a.jpg", "bad.gif", "b.jpg"] and list(csv["status"])[1] == "not scored"
    assert csv["framing"][0] == "cropped and placed on white"
    for n in REGISTRY:
        for k, c in enumerate(CLASSES):
            col = [c2 for c2 in csv.columns if c2.startswith(f"{get_spec(n).title} {c} (")]
            assert len(col) == 1 and csv[col[0]][2] == pytest.approx(100 * probs[n][1][k], abs=0.01)
    assert any(c.startswith(f"{ENSEMBLE_TITLE} Smart Casual (") for c in csv.columns)
    assert shown["photo"][0].startswith("data:image/png;base64,") and not isinstance(shown["photo"][1], str)
    assert shown["Ensemble class"][2] == f"{CLASSES[probs['ensemble'][1].argmax()]} · {probs['ensemble'][1].max():.0%}"
    assert list(every["model"]) == [*(get_spec(n).title for n in REGISTRY), ENSEMBLE_TITLE] * 2
    assert every["Formal (%)"].iloc[-1] == pytest.approx(100 * probs["ensemble"][1][1], abs=0.01)


def test_overlay_download_carries_model_class_confidence_layer_and_a_colour_bar() -> None:
    img = np.zeros((320, 240, 3), np.uint8)
    img[:160] = 255
    png = annotated_download(
        img, ["ResNet50 · Formal · 83.0% calibrated confidence", "Grad-CAM for Formal · layer4"], "jet", 0.5
    )
    out = np.asarray(Image.open(io.BytesIO(png)))
    assert out.shape[0] > 640 and out.shape[1] >= 480
    assert np.array_equal(out[:640:2, :480:2], img)  # the overlay itself, whole pixels
    band = out[640:]
    assert (band < 100).all(axis=2).sum() > 200  # dark text under it
    hues = {tuple(px) for px in band.reshape(-1, 3)[::7] if px.max() - px.min() > 120}
    assert len(hues) > 20  # the colour bar's range of colours


def test_html_report_stands_alone_with_verdicts_heatmaps_metrics_and_caveats() -> None:
    cards = {n: ModelCard.load(REGISTRY[n].card_file) for n in REGISTRY}
    photo = ReportPhoto(
        "shirt <1>.jpg", np.full((80, 60, 3), 120, np.uint8), np.full((200, 150, 3), 90, np.uint8),
        "cropped and placed on white", [], [("ResNet50", "Formal", 0.81), ("Ensemble of all three", "Formal", 0.77)],
        "All three say Formal.", [("ResNet50: Grad-CAM", enlarge(np.zeros((80, 60, 3), np.uint8), 4))],
    )  # fmt: skip
    caveat = rare_class_caveat(cards)
    html = report_html([photo], metric_rows(cards, {n: get_spec(n).title for n in cards}), [caveat])
    assert html.startswith("<!DOCTYPE html>") and "shirt &lt;1&gt;.jpg" in html
    assert html.count('src="data:image/png;base64,') == 3  # photo, what the models saw, the heatmap
    assert not re.search(r'(src|href)="(?!data:)', html)  # nothing to fetch
    assert "All three say Formal." in html and "81.0%" in html and "cropped and placed on white" in html
    m = cards["resnet50"].metrics["test"]
    assert f"{m['balanced_accuracy']:.3f} [" in html and "Smart Casual has only 9 test images" in html


def test_a_clicked_matrix_cell_sets_the_gallery_pickers() -> None:
    at = app()
    at.switch_page("pages/evaluation.py")
    at.run()
    charts = at.get("vega_lite_chart")
    spec = json.loads(charts[0].proto.spec)
    params = spec.get("params", []) + [p for layer in spec.get("layer", []) for p in layer.get("params", [])]
    assert any(p["name"] == matrices.SELECTION and p["select"]["fields"] == ["true", "predicted"] for p in params)
    state = {"cm_x": {"selection": {matrices.SELECTION: [{"true": "Formal", "predicted": "Casual"}]}}, "cell_page": 3}
    matrices.select_cell("cm_x", "resnet50", state)
    seen = {k: state[k] for k in matrices.PICKERS}
    assert seen == {"cell_model": "resnet50", "cell_true": "Formal", "cell_pred": "Casual"} and "cell_page" not in state
    # what the callback sets is what the gallery shows, with the cell outlined in that model's matrix
    at.selectbox(key="model_b").set_value("resnet50")
    at.run()
    for k, v in seen.items():
        at.session_state[k] = v
    at.run()
    assert not at.exception and not at.warning
    assert at.selectbox(key="cell_true").value == "Formal" and at.selectbox(key="cell_pred").value == "Casual"
    chosen = []
    for chart in at.get("vega_lite_chart"):
        for named in chart.proto.datasets:  # the chart's data, as Arrow
            df = convert_arrow_bytes_to_pandas_df(named.data.data)
            chosen += [(t, p) for t, p, c in zip(df["true"], df["predicted"], df["chosen"]) if c]
    assert chosen == [("Formal", "Casual")]


@calibrated
def test_evaluation_shows_the_ensemble_and_calibration_before_and_after() -> None:
    at = app()
    at.switch_page("pages/evaluation.py")
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    ens = json.loads((WEIGHTS / "ensemble.json").read_text())
    row = table[table["model"] == ENSEMBLE_TITLE].iloc[0]
    assert row["balanced acc. [95% CI]"].startswith(f"{ens['metrics']['test']['balanced_accuracy']:.3f} [")
    cal = next(d.value for d in at.dataframe if "ECE before" in d.value.columns)
    assert list(cal["model"]) == [*(get_spec(n).title for n in REGISTRY), ENSEMBLE_TITLE]
    want = json.loads((WEIGHTS / "calibration.json").read_text())["models"]
    for n in REGISTRY:
        got = cal[cal["model"] == get_spec(n).title].iloc[0]
        assert got["ECE after"] == pytest.approx(want[n]["ece"]["test"]["after"])
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    reliability = [f for f in figs if "— test" in f["layout"].get("title", {}).get("text", "")]
    assert len(reliability) == len(REGISTRY) + 1
    at.segmented_control(key="eval_split").set_value("val")
    at.run()
    cal = next(d.value for d in at.dataframe if "ECE before" in d.value.columns)
    got = cal[cal["model"] == get_spec("resnet50").title].iloc[0]
    assert got["ECE before"] == pytest.approx(want["resnet50"]["ece"]["val"]["before"])
