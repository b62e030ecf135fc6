"""AppTest: every page renders, Classify works on real/generated photos, bad input is handled."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from apptest_helpers import APPTEST_MARKS, app
from image_cases import bad_cases, encode, garment_photo, good_cases
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.explanation.gradcam import Explanation
from core.models.registry import REGISTRY, get_spec
from pages.ui import dataset, drawing, resources, settings, wording

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "fashion-small"
PAGES = ["pages/classify.py", "pages/layers.py", "pages/evaluation.py", "pages/data.py", "pages/about.py"]
TIMEOUT = 300

pytestmark = APPTEST_MARKS


def sample_photos() -> list[tuple[str, bytes, str]]:
    """Two real dataset images when ../shared is present, else two generated photos."""
    if DATA.is_dir():
        ids = ["15970", "39386"]  # a Casual shirt and Casual jeans
        return [(f"{i}.jpg", (DATA / "images" / f"{i}.jpg").read_bytes(), "image/jpeg") for i in ids]
    return [
        ("shirt.jpg", encode(garment_photo(), "JPEG"), "image/jpeg"),
        ("dark.png", encode(garment_photo(colour=(10, 10, 10)), "PNG"), "image/png"),
    ]


def image_urls(at: AppTest) -> list[str]:
    return [url for el in at.get("image") for url in el.value]


def image_captions(at: AppTest) -> list[str]:
    return [c for el in at.get("image") for c in el.captions]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(page: str) -> None:
    at = app()
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title, "each page has a title"


def test_every_run_goes_through_the_entry_script() -> None:
    """The sidebar (model pickers) is there on every run and page, as in the real app, not only the first two."""
    at = app()
    for _ in range(3):
        at.run()
        assert len(at.sidebar.selectbox) == 2 and not at.warning
    at.switch_page("pages/layers.py")
    for _ in range(2):
        at.run()
        assert len(at.sidebar.selectbox) == 2 and not at.exception


def test_about_page_reads_sizes_and_gives_a_retrain_command_that_keeps_the_shipped_model() -> None:
    at = app()
    at.switch_page("pages/about.py")
    at.run()
    text = " ".join(m.value for m in [*at.markdown, *at.warning])
    assert "60×80 native canvas (W×H) → 120×160 model input" in text and "[60, 80]" not in text
    assert "--pretrained imagenet --data DIR --out mine" in text
    cards = [json.loads((ROOT / "weights" / f"{name}.json").read_text()) for name in REGISTRY]
    for card in cards:  # the decision rule's offsets are named by class, not a bare list
        bias = card["decision_rule"]["logit_bias"]
        named = ", ".join(c + " " + f"{b:+g}".replace("-", "−") for c, b in zip(card["classes"], bias) if b)
        assert f"({named}; chosen on validation)" in text and str(card["decision_rule"]["logit_bias"]) not in text
    cost = [m.value for m in at.markdown if m.value.startswith("**Training cost.**")]
    assert len(cost) == len(REGISTRY), cost
    # a run that wrote to a scratch folder says its files were copied (all three shipped runs did; a command
    # without --out, or with --out weights, is test_a_training_command_wrote_elsewhere_only_when…)
    assert all((" --out " in m) == ("copied into `weights/`" in m) for m in cost), cost
    assert any(" --out " in m for m in cost), cost
    taught = [m.value for m in at.markdown if m.value.startswith("**Distillation.**")]
    assert len(taught) == sum(bool(c["training"].get("distilled_from")) for c in cards)  # none of today's three


def test_about_page_names_the_teacher_of_a_distilled_model(tmp_path, monkeypatch) -> None:
    copy_shipped_weights(tmp_path)
    card = json.loads((tmp_path / "resnet50.json").read_text())
    card["training"]["distilled_from"] = "effnet_lite0"
    (tmp_path / "resnet50.json").write_text(json.dumps(card))
    monkeypatch.setenv("DRESSCODE_WEIGHTS", str(tmp_path))
    at = app()
    at.switch_page("pages/about.py")
    at.run()
    taught = [m.value for m in at.markdown if m.value.startswith("**Distillation.**")]
    assert taught == ["**Distillation.** Trained with soft targets from EfficientNet-Lite0 (ImageNet)."], taught


def test_classify_one_photo_shows_both_models_and_heatmaps() -> None:
    at = app()
    name, data, mime = sample_photos()[0]
    at.file_uploader(key="uploads").set_value((name, data, mime))
    at.run()
    assert not at.exception
    assert [m.label for m in at.metric] == ["Prediction", "Prediction"]
    assert all(m.value in ("Casual", "Formal", "Smart Casual") for m in at.metric)
    captions = image_captions(at)
    assert sum("Grad-CAM for" in c for c in captions) == 2
    assert len(at.get("plotly_chart")) == 2  # two probability charts
    assert sum(c.startswith("raw map, ") for c in captions) == 2
    assert any("Models agree" in m.value or "Models disagree" in m.value for m in at.markdown)


def test_classify_shows_what_the_models_saw_and_flags_a_busy_background() -> None:
    from test_framing import on_surface, product

    at = app()
    square = Image.new("RGB", (600, 600), (255, 255, 255))
    square.paste(product((300, 400)), (150, 100))
    at.file_uploader(key="uploads").set_value(("square.png", encode(square, "PNG"), "image/png"))
    at.run()
    assert not at.exception
    captions = image_captions(at)
    assert "your photo" in captions and "what the models saw (60×80)" in captions
    assert any(i.value.startswith("Product found on a white background: cropped and placed on white") for i in at.info)
    shares = [c.value for c in at.caption if c.value.endswith("of this map falls on the product.")]
    flagged = [w.value for w in at.warning if "sits mostly on the background" in w.value]
    assert len(shares) + len(flagged) == 2  # one line per model's map

    rng = np.random.default_rng(1)
    room = np.zeros((560, 480, 3), np.uint8)
    for _ in range(120):
        y, x = rng.integers(0, 520), rng.integers(0, 440)
        room[y : y + rng.integers(10, 90), x : x + rng.integers(10, 90)] = rng.integers(0, 256, 3)
    busy = on_surface(product(), (480, 560), room)
    at.file_uploader(key="uploads").set_value(("room.jpg", encode(busy, "JPEG"), "image/jpeg"))
    at.run()
    assert not at.exception
    assert any(w.value.startswith("Busy background: the models learnt from photos") for w in at.warning)
    assert "what the models saw (60×80)" in image_captions(at)

    dark = on_surface(product(), (480, 560), np.full((560, 480, 3), 28, np.uint8))
    at.file_uploader(key="uploads").set_value(("dark.png", encode(dark, "PNG"), "image/png"))
    at.run()
    assert not at.exception
    assert any(w.value.startswith("Product found on a dark background") and "care" in w.value for w in at.warning)


def test_controls_update_heatmaps() -> None:
    at = app()
    at.file_uploader(key="uploads").set_value(sample_photos()[0])
    at.run()
    before_urls, before_caps = image_urls(at), image_captions(at)

    at.selectbox(key="layer_b_resnet50").set_value("backbone.layer3")
    at.run()
    caps = image_captions(at)
    assert any("layer3" in c for c in caps) and caps != before_caps
    assert image_urls(at) != before_urls

    at.selectbox(key="target").set_value("Formal")
    at.run()
    assert sum("Grad-CAM for Formal (chosen)" in c for c in image_captions(at)) == 2

    urls = image_urls(at)
    at.slider(key="opacity").set_value(0.9)
    at.run()
    assert image_urls(at) != urls

    urls = image_urls(at)
    at.toggle(key="shared_scale").set_value(True)
    at.run()
    assert any("shared scale" in c for c in image_captions(at))
    assert not at.exception


def test_why_not_formal_contrasts_the_chosen_class_with_each_models_prediction() -> None:
    at = app()
    at.file_uploader(key="uploads").set_value(sample_photos()[0])
    at.run()
    assert at.toggle(key="target_contrast").disabled  # nothing to contrast while the prediction is explained
    predicted = [m.value for m in at.metric]
    at.selectbox(key="target").set_value("Formal")
    at.run()
    at.toggle(key="target_contrast").set_value(True)
    at.run()
    assert not at.exception
    grad = [c for c in image_captions(at) if c.startswith("Grad-CAM for ")]
    already = [c.value for c in at.caption if "already predicts Formal" in c.value]
    assert len(grad) == 2
    for pred, cap in zip(predicted, grad):
        if pred == "Formal":
            assert cap.startswith("Grad-CAM for Formal (chosen)")
        else:
            assert cap.startswith(f"Grad-CAM for Formal over {pred} (chosen)"), cap
    assert len(already) == predicted.count("Formal")
    at.selectbox(key="target").set_value("predicted class")  # back to the prediction: the toggle goes off
    at.run()
    assert at.toggle(key="target_contrast").disabled and not at.toggle(key="target_contrast").value
    at.selectbox(key="target").set_value("Formal")  # and stays off when a class is chosen again
    at.run()
    assert not at.toggle(key="target_contrast").value
    assert all(" over " not in c for c in image_captions(at) if c.startswith("Grad-CAM for "))


def test_raw_map_scale_is_the_maps_own_maximum_whatever_the_upsampling() -> None:
    at = app()
    at.file_uploader(key="uploads").set_value(sample_photos()[0])
    at.run()
    raw = lambda: [c for c in image_captions(at) if c.startswith("raw map, ")]  # noqa: E731
    smooth = raw()
    from core.images.upload import read_upload
    from core.prediction.service import load_served

    native = read_upload(*sample_photos()[0][:2]).native
    for name, caption in zip(("baseline", "resnet50"), smooth):  # the sidebar's default pair
        ex = load_served(name).served
        top = float(ex.explain(native).maps[ex.spec.default_cam_layer.path].max())
        assert caption.endswith(f"colour scale 0 → {top:.3g}" if top > 0 else "all zero"), (caption, top)
    at.radio(key="upsampling").set_value("blocky")
    at.run()
    assert raw() == smooth  # the upsampling changes the overlay only


def test_same_model_twice_is_said_not_called_agreement() -> None:
    at = app()
    at.selectbox(key="model_b").set_value("baseline")
    at.file_uploader(key="uploads").set_value(sample_photos()[0])
    at.run()
    assert not at.exception
    assert any("same model" in c.value for c in at.caption)
    assert not any("Models agree" in m.value or "Models disagree" in m.value for m in at.markdown)
    first, last = REGISTRY["baseline"].cam_layers[0], REGISTRY["baseline"].cam_layers[-1]
    at.selectbox(key="layer_a_baseline").set_value(first.path)  # its panels show two of its layers
    at.selectbox(key="layer_b_baseline").set_value(last.path)
    at.run()
    shown = [c for c in image_captions(at) if c.startswith("Grad-CAM for")]
    assert len(shown) == 2 and first.label in shown[0] and last.label in shown[1], shown
    heads = [h.value for h in at.subheader if h.value.startswith("Baseline CNN")]
    assert heads == ["Baseline CNN (A)", "Baseline CNN (B)"]  # which panel (and layer picker) is which
    at.file_uploader(key="uploads").set_value(sample_photos()[:2])  # the table: no "agree" column either
    at.run()
    assert not at.exception and "agree" not in at.dataframe[0].value.columns
    assert any("same model" in c.value for c in at.caption)


def test_batch_table_and_bad_inputs_each_get_a_message() -> None:
    at = app()
    files = [*sample_photos()]
    files += [(n, b, "image/png") for n, (b, _) in good_cases().items()]
    files += [(n, b, "application/octet-stream") for n, (b, _) in bad_cases().items()]
    at.file_uploader(key="uploads").set_value(files)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    warnings = [w.value for w in at.warning]
    for name, (_, fragment) in bad_cases().items():
        mine = [w for w in warnings if w.startswith(name.replace(".", "\\.").replace("_", "\\_"))]
        assert mine, f"no message for {name}: {warnings}"
        assert fragment.lower() in mine[0].lower(), (name, mine[0])
    table = at.dataframe[0].value
    n_good = len(sample_photos()) + len(good_cases())
    assert list(table["file"]) == [f[0] for f in files]  # every file has a row, in upload order
    cols = list(table.columns)  # number, thumbnail and file, both models' classes, then agreement, then the rest
    assert (
        cols[:3] == ["#", "photo", "file"]
        and cols[3].endswith(" class")
        and cols[4].endswith(" class")
        and cols[5] == "agree"
    )
    assert list(table["#"]) == list(range(1, len(files) + 1))
    scored = table[table.iloc[:, 3] != "not scored"]
    assert len(scored) == n_good and scored.iloc[:, 3].notna().all()
    assert all(u.startswith("data:image/png;base64,") for u in scored["photo"])  # a thumbnail per photo
    assert all(re.fullmatch(r"(Casual|Formal|Smart Casual) · \d+%", c) for c in scored.iloc[:, 3])  # class · conf.
    every = at.dataframe[1].value  # every class's probability, one row per photo and model
    for name in REGISTRY:
        mine = every[every["model"] == get_spec(name).title]
        assert list(mine["file"]) == list(scored["file"])
        assert np.allclose(mine[["Casual (%)", "Formal (%)", "Smart Casual (%)"]].sum(axis=1), 100, atol=0.05)
    numbered = [e.label for e in at.expander if e.label[:1].isdigit()]  # each row's number, as in the table
    assert numbered == [f"{n}. {wording.plain(f)}" for n, f in zip(scored["#"], scored["file"])]
    for col in (c for c in table.columns if c.endswith("confidence (%)")):  # one decimal, 0–100
        assert all(0 <= v <= 100 and round(v, 1) == v for v in scored[col]), scored[col]
    notes = dict(zip(table["file"], table["notes"]))
    for name, (_, note) in good_cases().items():
        if note:
            assert note in notes[name], (name, note, notes[name])
    classes_of = dict(zip(table["file"], table.iloc[:, 3]))
    for name, (_, fragment) in bad_cases().items():  # the CSV says which files were not scored, and why
        assert classes_of[name] == "not scored" and fragment.lower() in notes[name].lower(), notes[name]
    assert any(f"; {len(bad_cases())} not scored" in h.value for h in at.subheader)
    assert at.get("download_button"), "CSV download present"


def test_file_names_are_not_rendered_as_markdown() -> None:
    at = app()
    evil = "**bold**<img src=x onerror=alert(1)>[link](http://x).png"
    at.file_uploader(key="uploads").set_value([(evil, b"not an image", "image/png"), sample_photos()[0]])
    at.run()
    msg = [w.value for w in at.warning][0]
    assert "\\*\\*bold\\*\\*" in msg and "\\<img" in msg and "\\[link\\]" in msg


def copy_shipped_weights(folder: Path) -> None:
    """Every shipped weights file and model card, copied into ``folder`` (to damage one there)."""
    for spec in REGISTRY.values():
        shutil.copy(spec.weights_file, folder / spec.weights_file.name)
        shutil.copy(spec.card_file, folder / spec.card_file.name)


def test_missing_or_corrupt_weights_disable_only_that_model(tmp_path, monkeypatch) -> None:
    copy_shipped_weights(tmp_path)
    blob = (tmp_path / "resnet50.safetensors").read_bytes()
    (tmp_path / "resnet50.safetensors").write_bytes(blob[: len(blob) // 2])  # truncated copy
    (tmp_path / "effnet_lite0.safetensors").unlink()
    monkeypatch.setenv("DRESSCODE_WEIGHTS", str(tmp_path))
    at = app()
    errors = " ".join(e.value for e in at.error)
    assert "ResNet50 is disabled" in errors and "sha256" in errors
    assert "EfficientNet-Lite0 (ImageNet) is disabled" in errors and "missing" in errors
    at.file_uploader(key="uploads").set_value(sample_photos()[0])
    at.run()
    assert not at.exception
    assert len(at.metric) == 1  # the baseline still classifies
    assert any("unavailable" in e.value for e in at.error)
    for page in PAGES[1:]:
        at.switch_page(page)
        at.run()
        assert not at.exception, page


def test_a_model_whose_classes_are_in_another_order_is_not_mislabelled(tmp_path, monkeypatch) -> None:
    copy_shipped_weights(tmp_path)
    card = json.loads((tmp_path / "resnet50.json").read_text())
    card["classes"] = card["classes"][::-1]  # a valid card on its own: distinct names, one offset each
    (tmp_path / "resnet50.json").write_text(json.dumps(card))
    monkeypatch.setenv("DRESSCODE_WEIGHTS", str(tmp_path))
    at = app()
    at.file_uploader(key="uploads").set_value(sample_photos()[0])
    at.run()
    assert not at.exception
    assert len(at.metric) == 1  # the baseline (Model A) classifies; ResNet50 (Model B) is not shown mislabelled
    assert any("are not the other model's" in e.value for e in at.error)


def test_a_batch_of_refused_files_still_gets_its_table() -> None:
    at = app()
    at.file_uploader(key="uploads").set_value([(n, b, "image/png") for n, (b, _) in list(bad_cases().items())[:2]])
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    assert len(table) == 2 and (table.iloc[:, 3] == "not scored").all() and (table.iloc[:, 4] == "not scored").all()
    assert any(h.value == "None of the 2 files could be scored" for h in at.subheader)
    assert not any("Open a row" in c.value for c in at.caption)  # there is none to open


def test_layers_page_strip_for_both_models() -> None:
    at = app()
    at.switch_page("pages/layers.py")
    at.run()
    at.file_uploader(key="layers_upload").set_value(sample_photos()[0])
    at.run()
    assert not at.exception
    caps = image_captions(at)
    n_layers = len(REGISTRY["baseline"].cam_layers) + len(REGISTRY["resnet50"].cam_layers)
    assert sum(" — map " in c for c in caps) == n_layers
    assert any("early edges" in c for c in caps) and any("whole garment" in c for c in caps)


@pytest.mark.realdata
@pytest.mark.skipif(not DATA.is_dir(), reason="../shared dataset absent")
def test_dataset_samples_say_their_split_and_start_held_out() -> None:
    split = json.loads((ROOT / "weights" / "split.json").read_text())
    at = app()
    at.switch_page("pages/layers.py")
    at.run()
    at.radio(key="layers_source").set_value("dataset sample")
    at.run()
    at.selectbox(key="layers_class").set_value("Smart Casual")
    at.run()
    assert not at.exception

    def shown_id(words: str) -> int:
        cap = next(c.value for c in at.caption if c.value.startswith("id "))
        assert words in cap, cap
        return int(cap.split()[1])

    from core.data.catalog import load_styles
    from core.data.products import product_keys

    catalog = load_styles(DATA)
    keys, label_of = product_keys(catalog), catalog.label_of()
    trained = {(keys[i], label_of[i]) for i in split["train"]}

    def says_twin_rightly(pid: int) -> bool:
        cap = next(c.value for c in at.caption if c.value.startswith("id "))
        return ("a training image shows the same product" in cap) == ((keys[pid], label_of[pid]) in trained)

    first = shown_id("test split")
    assert first in split["test"] and says_twin_rightly(first)  # a demo starts on images no model has seen
    at.number_input(key="layers_pick").set_value(9)  # the last of the 9 test Smart Casual images
    at.run()
    last = shown_id("test split")
    assert last in split["test"] and says_twin_rightly(last)
    # and an image whose product training lacks says nothing of the kind
    test_sc = [i for i in catalog.ids if i in set(split["test"]) and catalog.classes[label_of[i]] == "Smart Casual"]
    new_product = next(k for k, i in enumerate(test_sc) if (keys[i], label_of[i]) not in trained)
    at.number_input(key="layers_pick").set_value(new_product + 1)
    at.run()
    assert shown_id("test split") == test_sc[new_product] and says_twin_rightly(test_sc[new_product])
    assert "same product" not in next(c.value for c in at.caption if c.value.startswith("id "))
    at.selectbox(key="layers_from").set_value("training (seen by the models)")
    at.run()
    assert shown_id("learnt from this image") in split["train"]
    assert sum(" — map " in c for c in image_captions(at)) > 0


def test_evaluation_page_tables_and_toggle() -> None:
    at = app()
    at.switch_page("pages/evaluation.py")
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    assert "Majority class (reference)" in list(table["model"])
    for col in ("balanced acc. [95% CI]", "macro-F1 [95% CI]"):  # an interval per model, none for the reference
        cells = dict(zip(table["model"], table[col]))
        assert re.fullmatch(r"0\.\d{3}", cells.pop("Majority class (reference)"))
        assert cells and all(re.fullmatch(r"0\.\d{3} \[0\.\d\d–[01]\.\d\d\]", c) for c in cells.values()), cells
    for spec in REGISTRY.values():  # "k of n" of the rarest class, as in the card's confusion matrix
        cm = json.loads(spec.card_file.read_text())["metrics"]["test"]["confusion_matrix"]
        assert dict(zip(table["model"], table["Smart Casual found"]))[spec.title] == f"{cm[2][2]} of {sum(cm[2])}"
    assert list(table.columns) == [  # what a laptop shows beside the sidebar (tests/test_browser.py)
        "model", "balanced acc. [95% CI]", "macro-F1 [95% CI]", "Smart Casual found", "Formal F1", "Smart Casual F1"
    ]  # fmt: skip
    per_class = at.dataframe[1].value  # in the "Per-class precision, recall and F1" expander
    assert {"accuracy", "Casual F1", "Smart Casual precision", "Smart Casual recall"} <= set(per_class.columns)
    plain = at.dataframe[2].value  # "Without the decision rule": the cards' argmax numbers
    for spec in REGISTRY.values():
        want = json.loads(spec.card_file.read_text())["metrics"]["test"]["argmax_without_rule"]
        row = plain[plain["model"] == spec.title].iloc[0]
        assert row["balanced acc."] == f"{want['balanced_accuracy']:.3f}"  # no interval is stored for it
        assert row["macro-F1"] == f"{want['macro_f1']:.3f}"
    said = " ".join(c.value for c in at.caption)
    assert "chosen to maximise validation macro-F1, and it usually lowers balanced accuracy" in said
    assert "The same test images, scored by plain argmax" in said
    assert len(at.get("vega_lite_chart")) == 2  # the confusion matrices of the two chosen models
    at.segmented_control(key="eval_norm").set_value("row-normalised (recall)")
    at.run()
    assert not at.exception
    titles = lambda: [json.loads(c.proto.spec)["title"] for c in at.get("vega_lite_chart")]  # noqa: E731
    assert any(t.endswith("— test") for t in titles()) and not any(t.endswith("— validation") for t in titles())
    at.segmented_control(key="eval_split").set_value("val")  # one control for the whole page
    at.run()
    assert not at.exception
    assert any(t.endswith("— validation") for t in titles()) and not any(t.endswith("— test") for t in titles())


@pytest.mark.realdata
@pytest.mark.skipif(not DATA.is_dir(), reason="../shared dataset absent")
@pytest.mark.parametrize("matrix_of", [None, "effnet_lite0"])
def test_evaluation_cell_gallery_shows_images_with_heatmaps(matrix_of: str | None) -> None:
    """The cell's images with the sidebar's models' heatmaps, and the matrix's model's too even
    when the sidebar did not choose it."""
    at = app()
    at.switch_page("pages/evaluation.py")
    at.run()
    if matrix_of:
        at.selectbox(key="cell_model").set_value(matrix_of)
    at.selectbox(key="cell_true").set_value("Formal")
    at.selectbox(key="cell_pred").set_value("Formal")
    at.run()
    assert not at.exception
    caps = image_captions(at)
    assert any(c.startswith("id ") for c in caps)
    assert any("Baseline CNN:" in c for c in caps) and any("ResNet50:" in c for c in caps)
    for name in ("baseline", "resnet50"):  # each overlay names the layer it shows
        spec = REGISTRY[name]
        assert any(c.startswith(f"{spec.title}:") and c.endswith(spec.default_cam_layer.label) for c in caps)
    if matrix_of:
        assert any(c.startswith("EfficientNet-Lite0 (ImageNet):") for c in caps)


@pytest.mark.realdata
@pytest.mark.skipif(not DATA.is_dir(), reason="../shared dataset absent")
def test_evaluation_cell_of_a_card_with_its_classes_in_another_order(tmp_path, monkeypatch) -> None:
    """The cell is read in the matrix model's own class order, not the first sidebar model's."""
    copy_shipped_weights(tmp_path)
    card = json.loads((tmp_path / "resnet50.json").read_text())
    flip = lambda k: len(card["classes"]) - 1 - int(k)  # noqa: E731 - a consistent card, classes reversed
    card["classes"] = card["classes"][::-1]
    card["decision_rule"]["logit_bias"] = card["decision_rule"]["logit_bias"][::-1]
    for s in ("val", "test"):
        card["predictions"][s]["pred"] = "".join(str(flip(k)) for k in card["predictions"][s]["pred"])
        card["metrics"][s]["confusion_matrix"] = [row[::-1] for row in card["metrics"][s]["confusion_matrix"][::-1]]
    (tmp_path / "resnet50.json").write_text(json.dumps(card))
    shipped = json.loads(REGISTRY["resnet50"].card_file.read_text())["metrics"]["test"]["confusion_matrix"]
    monkeypatch.setenv("DRESSCODE_WEIGHTS", str(tmp_path))  # card_file follows it
    at = app()
    at.switch_page("pages/evaluation.py")
    at.run()
    for key, value in (("cell_model", "resnet50"), ("cell_true", "Formal"), ("cell_pred", "Casual")):
        at.selectbox(key=key).set_value(value)
    at.run()
    assert not at.exception
    said = [m.value for m in at.markdown if "in this cell" in m.value]
    assert said == [f"{shipped[1][0]} test images in this cell."], said
    assert any("are not the other model's" in e.value for e in at.error)  # the others are not mislabelled


def test_evaluation_without_dataset_says_what_it_would_show(monkeypatch) -> None:
    monkeypatch.setenv("DRESSCODE_DATA", "/nonexistent")
    monkeypatch.setenv("DRESSCODE_DATA_EDITABLE", "1")  # a local run, where the folder can be emptied
    at = app()
    at.session_state["data_dir"] = ""
    at.switch_page("pages/evaluation.py")
    at.run()
    assert not at.exception
    assert any("this shows the" in i.value for i in at.info)
    at.switch_page("pages/data.py")  # the section it cannot fill says why, instead of vanishing
    at.run()
    assert not at.exception
    assert any("shares with validation and test cannot be counted" in i.value for i in at.info)


def test_augmentation_explorer_grid() -> None:
    at = app()
    at.switch_page("pages/data.py")
    at.run()
    at.file_uploader(key="aug_upload").set_value(sample_photos()[0])
    at.run()
    assert sum(c.startswith("variant") for c in image_captions(at)) == 12
    at.selectbox(key="aug_fill").set_value("constant")
    at.slider(key="aug_n").set_value(8)
    at.run()
    assert sum(c.startswith("variant") for c in image_captions(at)) == 8
    assert not at.exception
    at.slider(key="aug_reframe").set_value(1.0)  # every variant re-framed, tilted and shadowed: still a full grid
    at.slider(key="aug_tilt").set_value(1.0)
    at.slider(key="aug_shadow").set_value(1.0)
    at.run()
    assert sum(c.startswith("variant") for c in image_captions(at)) == 8
    assert not at.exception


def test_evaluation_gallery_with_missing_dataset_folder_says_so(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DRESSCODE_DATA_EDITABLE", "1")  # a local run, where the folder can be typed
    at = app()
    at.session_state["data_dir"] = str(tmp_path / "gone")
    at.switch_page("pages/evaluation.py")
    at.run()
    assert not at.exception
    assert any("missing or incomplete" in w.value for w in at.warning)


@pytest.mark.parametrize(
    ("page", "source_key"), [("pages/layers.py", "layers_source"), ("pages/data.py", "aug_source")]
)
def test_dataset_samples_name_a_bad_folder_rather_than_call_it_unconfigured(
    tmp_path, monkeypatch, page, source_key
) -> None:
    monkeypatch.setenv("DRESSCODE_DATA_EDITABLE", "1")  # a local run, where the folder can be typed
    at = app()
    at.session_state["data_dir"] = str(tmp_path / "gone")
    at.switch_page(page)
    at.run()
    at.radio(key=source_key).set_value("dataset sample")
    at.run()
    assert not at.exception
    notes = [i.value for i in at.info if "dataset samples are unavailable" in i.value]
    assert notes and "missing or incomplete" in notes[0] and "No dataset folder is configured" not in notes[0]


@pytest.mark.realdata
@pytest.mark.skipif(not DATA.is_dir(), reason="../shared dataset absent")
def test_evaluation_gallery_with_partial_dataset_says_so(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DRESSCODE_DATA_EDITABLE", "1")  # a local run, where the folder can be typed
    part = tmp_path / "partial"
    (part / "images").mkdir(parents=True)
    shutil.copy(DATA / "styles.csv", part / "styles.csv")
    for pid in ["15970", "39386", "1855", "53759"]:
        if (DATA / "images" / f"{pid}.jpg").is_file():
            shutil.copy(DATA / "images" / f"{pid}.jpg", part / "images" / f"{pid}.jpg")
    at = app()
    at.session_state["data_dir"] = str(part)
    at.switch_page("pages/evaluation.py")
    at.run()
    assert not at.exception
    assert any("not in this dataset copy" in c.value for c in at.caption)


def test_a_training_command_wrote_elsewhere_only_when_its_out_is_not_weights() -> None:
    assert wording.wrote_elsewhere("python -m core.train --model baseline --out /tmp/bl")
    assert wording.wrote_elsewhere("python -m core.train --model baseline --out=mine")
    assert not wording.wrote_elsewhere("python -m core.train --model baseline --out weights")
    assert not wording.wrote_elsewhere(f"python -m core.train --model baseline --out={ROOT / 'weights'}")
    assert not wording.wrote_elsewhere("python -m core.train --model resnet50 --resume")
    assert not wording.wrote_elsewhere("python -m core.train --out 'unclosed")


def test_downloaded_overlay_is_big_enough_for_a_slide() -> None:
    import io

    from PIL import Image

    img = np.zeros((320, 240, 3), np.uint8)
    img[:160] = 255
    out = np.asarray(Image.open(io.BytesIO(drawing.png(img))))
    assert out.shape == (640, 480, 3) and np.array_equal(out[::2, ::2], img)  # whole pixels, same content


def test_a_map_that_is_zero_everywhere_is_explained_not_drawn_silently() -> None:
    def exp(peak: float) -> Explanation:
        m = np.zeros((4, 5), np.float32)
        m[1, 2] = peak
        probs = np.array([0.2, 0.7, 0.1])
        return Explanation(probs, 1, 2, {"layer4": m}, np.zeros((160, 120, 3), np.uint8))

    classes = ["Casual", "Formal", "Smart Casual"]
    note = wording.flat_map_note(exp(0.0), "layer4", classes)
    assert note is not None and "No positive evidence for Smart Casual" in note
    assert wording.flat_map_note(exp(1e-6), "layer4", classes) is None


def test_overlays_on_every_page_top_out_at_the_maps_layer_resolution_maximum() -> None:
    from core.explanation.overlay import enlarge, normalise, overlay, upsample

    m = np.zeros((4, 5), np.float32)
    m[1, 2] = 2.0  # one hot cell: smoothing lowers its peak below 2.0
    exp = Explanation(np.array([0.2, 0.7, 0.1]), 1, 1, {"layer4": m}, np.zeros((160, 120, 3), np.uint8))
    up = upsample(m, exp.model_input.shape[:2], "bilinear")
    assert up.max() < 2.0 and drawing.cam_top(exp, "layer4") == 2.0
    shown = drawing.overlay_image(exp, "layer4", 1.0, "jet", True)  # Layers and Evaluation use the default
    assert np.array_equal(shown, drawing.overlay_image(exp, "layer4", 1.0, "jet", True, 2.0))  # as on Classify
    own_max = enlarge(overlay(exp.model_input, normalise(up), 1.0, "jet"), 2)  # the smoothed map's own maximum
    assert shown.shape == own_max.shape and not np.array_equal(shown, own_max)


@pytest.mark.realdata
@pytest.mark.skipif(not DATA.is_dir(), reason="../shared dataset absent")
def test_data_page_says_how_many_held_out_products_training_has() -> None:
    from core.data.catalog import load_styles
    from core.data.products import twins_in_train
    from core.data.split import get_or_make_split

    at = app()
    at.switch_page("pages/data.py")
    at.run()
    assert not at.exception
    table = next(d.value for d in at.dataframe if "validation" in d.value.columns)
    catalog = load_styles(DATA)
    twins = twins_in_train(catalog, get_or_make_split(catalog))
    for c in catalog.classes:
        for col, s in (("validation", "val"), ("test", "test")):
            k, n = twins[s][c]
            assert table.loc[c, col].startswith(f"{k:,} of {n:,} (")
    note = next(x.value for x in at.caption if "EfficientNet-Lite0 (ImageNet) was trained without the 9" in x.value)
    assert "Smart Casual: validation 0 of 9, test 2 of 9" in note


def test_evaluation_says_when_an_interval_is_narrow_because_nothing_was_found() -> None:
    at = app()
    at.switch_page("pages/evaluation.py")
    at.run()
    notes = [c.value for c in at.caption if "finds none of the 9 Smart Casual images here" in c.value]
    found = {n: resources.get_card(n)[0].metrics["test"]["per_class"]["Smart Casual"]["recall"] for n in REGISTRY}
    assert len(notes) == sum(r == 0 for r in found.values())
    assert all("up to 0.34 (exact 95% bound)" in n for n in notes)


def test_an_unreadable_dataset_index_is_logged_and_read_again_once_fixed(tmp_path, caplog) -> None:
    from fixtures import make_fixture_dataset

    root = make_fixture_dataset(tmp_path / "ds")
    good = (root / "styles.csv").read_bytes()
    (root / "styles.csv").write_text("id,gender\n1,Men\n")  # no usage column
    with caplog.at_level("WARNING"):
        assert dataset.get_catalog(str(root)) is None
    assert "could not be read" in caplog.text
    with pytest.raises(OSError):  # the helpers cached on top of it keep no answer made without it
        dataset.products_seen_without(str(root))
    (root / "styles.csv").write_bytes(good)  # fixed: no restart needed
    catalog = dataset.get_catalog(str(root))
    assert catalog is not None and catalog.ids
    assert dataset.products_seen_without(str(root)) is not None  # weights/split.json exists: read, never written


def test_overlay_download_names_say_what_they_show() -> None:
    exp = Explanation(np.array([0.2, 0.7, 0.1]), 1, 1, {}, np.zeros((1, 1, 3), np.uint8))
    classes = ["Casual", "Formal", "Smart Casual"]
    assert wording.overlay_file_name("IMG_0042.HEIC", "resnet50", "backbone.layer4", exp, classes) == (
        "IMG_0042_resnet50_layer4_Formal.png"
    )
    exp.target, exp.versus = 2, 1
    name = wording.overlay_file_name("../my shirt (1).jpg", "effnet_lite0", "backbone.net._blocks.10", exp, classes)
    assert name == "my-shirt-1_effnet_lite0_blocks.10_Smart-Casual-over-Formal.png"
    decomposed = "e\u0301te\u0301.jpg"  # "été" as macOS may spell it
    assert wording.overlay_file_name(decomposed, "baseline", "backbone.relu2", exp, classes).startswith("été_")


def sidebar_text(at: AppTest) -> str:
    return " ".join(e.value for e in [*at.sidebar.markdown, *at.sidebar.caption, *at.sidebar.text_input])


def test_the_old_lock_keeps_the_dataset_folder_locked_even_when_editable(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DRESSCODE_DATA", str(tmp_path / "server-choice"))
    monkeypatch.setenv("DRESSCODE_DATA_EDITABLE", "1")
    monkeypatch.setenv("DRESSCODE_DATA_LOCKED", "1")  # accepted for compatibility: it wins
    at = app()
    assert not at.sidebar.text_input
    at.session_state["data_dir"] = "/etc"  # what a crafted browser message could set
    at.switch_page("pages/data.py")
    at.run()
    assert not at.exception
    assert settings.setting("data_dir") == str(tmp_path / "server-choice") and "/etc" not in str(settings.data_dir())
    assert wording.plain("server-choice") in sidebar_text(at) and str(tmp_path) not in sidebar_text(at)
    assert settings.where_data_is_set() == "the server sets it, with $DRESSCODE_DATA"  # not "the sidebar"


def test_card_text_names_models_by_title_but_keeps_paths_and_code() -> None:
    text = (
        "distilled from effnet_lite0 (T=2), resumed from runs/resnet50/last.pt; see resnet50.json, `--model baseline`."
    )
    assert wording.titled(text) == (
        "distilled from EfficientNet-Lite0 (ImageNet) (T=2), resumed from runs/resnet50/last.pt; "
        "see resnet50.json, `--model baseline`."
    )
    assert wording.titled("the teacher was effnet_lite0.") == "the teacher was EfficientNet-Lite0 (ImageNet)."
    assert wording.titled("a baseline of 0.5") == "a baseline of 0.5"  # a key that is also a word stays a word


def test_photos_results_and_settings_survive_a_visit_to_another_page() -> None:
    at = app()
    at.selectbox(key="model_b").set_value("baseline")  # one model twice: a sidebar choice, and cheap to run
    name = sample_photos()[0][0]
    at.file_uploader(key="uploads").set_value(sample_photos()[0])
    at.run()
    first = REGISTRY["baseline"].cam_layers[0]
    at.slider(key="opacity").set_value(0.9)
    at.selectbox(key="layer_b_baseline").set_value(first.path)
    at.run()
    predicted, shown = [m.value for m in at.metric], image_captions(at)
    at.switch_page("pages/evaluation.py")
    at.run()
    assert not at.exception
    at.switch_page("pages/classify.py")
    at.run()
    assert not at.exception
    assert [m.label for m in at.metric] == ["Prediction", "Prediction"] and [m.value for m in at.metric] == predicted
    assert image_captions(at) == shown  # the same overlays, from the same settings
    assert at.selectbox(key="model_b").value == "baseline"
    assert at.slider(key="opacity").value == 0.9 and at.selectbox(key="layer_b_baseline").value == first.path
    assert at.multiselect(key="photos_kept_picker").value == [f"1. {name}"]  # listed, to be removed with ×

    at.switch_page("pages/layers.py")  # Layers offers the photo dropped on Classify
    at.run()
    assert not at.exception
    assert at.radio(key="layers_source").value == "photos from Classify"
    assert [o for s in at.main.selectbox if s.label == "Which photo" for o in s.options] == [f"1. {name}"]
    assert sum(" — map " in c for c in image_captions(at)) == len(REGISTRY["baseline"].cam_layers)

    at.switch_page("pages/classify.py")
    at.run()
    at.multiselect(key="photos_kept_picker").set_value([])  # × on the kept photo
    at.run()
    assert not at.exception and not at.metric
    assert any(i.value.startswith("Drag one or more product photos") for i in at.info)


def test_the_dataset_folder_is_the_servers_by_default(tmp_path, monkeypatch) -> None:
    from fixtures import make_fixture_dataset

    other = make_fixture_dataset(tmp_path / "elsewhere")
    at = app()
    assert not at.sidebar.text_input  # no box to type a folder of the server in
    said = sidebar_text(at)
    assert not re.search(r"(^|[\s(*`])/\w", said) and str(ROOT.parent) not in said, said  # no absolute path
    if DATA.is_dir():  # its name and its size
        assert wording.plain(DATA.name) in said and re.search(r"\d[\d,]* labelled product photos", said), said
    at.session_state["data_dir"] = str(other)  # what a crafted browser message could set
    at.switch_page("pages/layers.py")
    at.run()
    at.radio(key="layers_source").set_value("dataset sample")
    at.run()
    assert not at.exception
    assert "elsewhere" not in sidebar_text(at) and settings.setting("data_dir") != str(other)
    if DATA.is_dir():  # the samples still come from the server's dataset
        pid = int(next(c.value for c in at.caption if c.value.startswith("id ")).split()[1])
        assert (DATA / "images" / f"{pid}.jpg").is_file()
    assert settings.where_data_is_set().startswith("the server sets it")

    monkeypatch.setenv("DRESSCODE_DATA", str(tmp_path / "gone"))  # messages name the folder, not its path
    at = app()
    at.switch_page("pages/layers.py")
    at.run()
    at.radio(key="layers_source").set_value("dataset sample")
    at.run()
    notes = [i.value for i in at.info if "dataset samples are unavailable" in i.value]
    assert notes and "server's dataset folder gone is missing" in notes[0] and str(tmp_path) not in notes[0]
    assert str(tmp_path) not in sidebar_text(at)

    monkeypatch.setenv("DRESSCODE_DATA_EDITABLE", "1")  # a local run opts in to typing a folder
    at = app()
    at.sidebar.text_input(key="data_dir").set_value(str(other))
    at.run()
    assert not at.exception and "elsewhere" in sidebar_text(at)


def test_first_screen_says_what_works_and_offers_two_samples() -> None:
    split = json.loads((ROOT / "weights" / "split.json").read_text())
    at = app()
    said = " ".join(i.value for i in at.info)
    assert "one product" in said and "plain background" in said and "any framing" in said
    assert [b.key for b in at.button if b.key.startswith("sample_")] == ["sample_0", "sample_1"]
    labels = [b.label for b in at.button if b.key.startswith("sample_")]
    at.button(key="sample_0").click()
    at.run()
    assert not at.exception
    assert [m.label for m in at.metric] == ["Prediction", "Prediction"]
    (kept,) = at.multiselect(key="photos_kept_picker").value
    if DATA.is_dir():  # a Formal and a Casual product, held out from training
        assert labels == ["A Formal product", "A Casual product"]
        pid = int(kept.removesuffix(".jpg").rsplit("-", 1)[1])
        assert kept.startswith("1. sample-formal-") and pid in split["test"]
    else:
        assert labels == ["A drawn jacket", "A drawn T-shirt"]
    for chart in at.get("plotly_chart"):  # the predicted class's bar stands out, whichever class it is
        bars = json.loads(chart.proto.spec)["data"][0]
        top = int(np.argmax(bars["x"]))
        assert [c == drawing.PREDICTED_COLOUR for c in bars["marker"]["color"]] == [k == top for k in range(3)]


def test_without_a_dataset_the_samples_are_drawn(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DRESSCODE_DATA", str(tmp_path / "gone"))
    at = app()
    assert [b.label for b in at.button if b.key.startswith("sample_")] == ["A drawn jacket", "A drawn T-shirt"]
    at.button(key="sample_1").click()
    at.run()
    assert not at.exception and len(at.metric) == 2


def test_probability_bars_highlight_the_predicted_class_not_always_formal() -> None:
    classes = ["Casual", "Formal", "Smart Casual"]
    for probs in ([0.1, 0.2, 0.7], [0.8, 0.15, 0.05], [0.2, 0.5, 0.3]):
        colours = list(drawing.probability_figure(np.array(probs), classes).data[0].marker.color)
        top = int(np.argmax(probs))
        assert colours[top] == drawing.PREDICTED_COLOUR
        assert all(c == drawing.OTHER_COLOUR for k, c in enumerate(colours) if k != top)


def about_page(weights: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[AppTest, list[str]]:
    """The About page run on the cards in ``weights``, and its markdown texts."""
    monkeypatch.setenv("DRESSCODE_WEIGHTS", str(weights))
    at = app()
    at.switch_page("pages/about.py")
    at.run()
    assert not at.exception
    return at, [m.value for m in at.main.markdown]


def test_about_opens_with_a_plain_summary_read_from_the_cards(tmp_path, monkeypatch) -> None:
    copy_shipped_weights(tmp_path)
    card = json.loads((tmp_path / "baseline.json").read_text())
    card["metrics"]["test"]["accuracy"] = 0.5  # not the shipped number: the page must read it
    (tmp_path / "baseline.json").write_text(json.dumps(card))
    at, texts = about_page(tmp_path, monkeypatch)
    first_card = next(k for k, t in enumerate(texts) if t.startswith("**Architecture.**"))
    summary = "\n".join(texts[:first_card])  # before the technical cards
    assert at.main.subheader[0].value == "In plain words"
    for name, spec in REGISTRY.items():
        test = json.loads((tmp_path / f"{name}.json").read_text())["metrics"]["test"]
        line = next(t for t in summary.split("\n") if t.startswith(f"- **{spec.title}**"))
        assert f"right {test['accuracy']:.0%} of the time" in line, line
        formal = test["per_class"]["Formal"]
        assert f"{round(formal['recall'] * formal['support'])} of {formal['support']} Formal" in line
    assert "right 50% of the time" in summary
    assert "Smart Casual has only 9 test images" in summary and "catalogue photos" in summary


def test_about_describes_an_averaged_model_from_its_card(tmp_path, monkeypatch) -> None:
    """A card written by core.training.average (no per-run speed, a kept rule) reads as a weight average."""
    from safetensors.torch import load_file, save_file

    from core.models.card import sha256_file
    from core.training.average import average_weights

    copy_shipped_weights(tmp_path)
    tunes = []
    for seed in (1, 2):  # two "fine-tunes": the shipped baseline nudged, each with a card of its own
        d = tmp_path / f"tune{seed}"
        d.mkdir()
        copy_shipped_weights(d)
        card = json.loads((d / "baseline.json").read_text())
        card["training"]["seed"] = seed
        state = load_file(str(d / "baseline.safetensors"))
        save_file({k: v + 0.001 * seed for k, v in state.items()}, str(d / "baseline.safetensors"))
        card["weights"]["sha256"] = sha256_file(d / "baseline.safetensors")
        (d / "baseline.json").write_text(json.dumps(card))
        tunes.append(d)
    out = tmp_path / "averaged"
    card = average_weights("baseline", tmp_path, tunes, 0.5, out, command="python -m core.training.average …")
    card.metrics = json.loads((tmp_path / "baseline.json").read_text())["metrics"]  # as if measured
    card.save(out / "baseline.json")
    for f in ("baseline.json", "baseline.safetensors"):
        (tmp_path / f).write_bytes((out / f).read_bytes())
    at, texts = about_page(tmp_path, monkeypatch)
    assert any(
        t.startswith("**Weight average.** 0.5 × the earlier weights + 0.5 × the mean of 2 fine-tunes") for t in texts
    )
    assert any("seeds 1, 2" in t for t in texts)
    assert any("kept from the weights it was averaged from" in t for t in texts)
    cost = next(t for t in texts if t.startswith("**Training cost.**"))
    assert "images/s" not in cost and "python -m core.training.average" in cost


def gallery_rows(at: AppTest) -> list[list]:
    """The column rows of the Evaluation gallery: each row's columns, the first holding the dataset image."""
    from streamlit.testing.v1.element_tree import Block, Column

    rows = []
    for node in at:
        if isinstance(node, Block) and node.children and all(isinstance(c, Column) for c in node.children.values()):
            cols = list(node.children.values())
            if any(c.startswith("id ") for el in cols[0].get("image") for c in el.captions):
                rows.append(cols)
    return rows


@pytest.mark.realdata
@pytest.mark.skipif(not DATA.is_dir(), reason="../shared dataset absent")
def test_evaluation_gallery_has_a_column_per_model_shown_and_none_empty() -> None:
    at = app()
    at.switch_page("pages/evaluation.py")
    at.run()
    at.selectbox(key="cell_true").set_value("Formal")
    at.selectbox(key="cell_pred").set_value("Formal")
    at.run()
    assert not at.exception
    rows = gallery_rows(at)
    assert rows and all(len(cols) == 3 for cols in rows)  # the image, Baseline CNN and ResNet50
    assert all(list(c) for cols in rows for c in cols), "an empty column"


def test_balancing_chart_labels_the_copies_bars_with_room_above() -> None:
    at = app()
    at.switch_page("pages/data.py")
    at.run()
    assert not at.exception
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    named = lambda t: t.get("name", "").startswith("(a) after augmented copies")  # noqa: E731
    fig = next(f for f in specs if any(named(t) for t in f["data"]))
    copies = next(t for t in fig["data"] if named(t))
    assert copies.get("texttemplate") and copies.get("textposition") == "outside"
    top = max(float(y) for t in fig["data"] for y in t["y"])
    _, high = fig["layout"]["yaxis"]["range"]
    assert high >= np.log10(top) + 0.2  # a log axis: room for the tallest bar's label


def test_evaluation_shows_where_each_model_is_weak_worst_slices_first(tmp_path, monkeypatch) -> None:
    at = app()
    at.switch_page("pages/evaluation.py")
    at.run()
    assert not at.exception
    assert "Where each model is weak (per-slice metrics)" in [h.value for h in at.subheader]

    def slice_tables(by: str) -> list:
        return [d.value for d in at.dataframe if by in d.value.columns and "balanced acc. [95% CI]" in d.value.columns]

    if DATA.is_dir():
        tables = slice_tables("articleType")  # the default: visible on opening the page, one tab per model
        assert len(tables) == len(REGISTRY)
        n_test = len(resources.get_card("resnet50")[0].predictions["test"]["ids"])
        for table in tables:
            cells = list(table["balanced acc. [95% CI]"])
            assert all(re.fullmatch(r"[01]\.\d\d \[[01]\.\d\d–[01]\.\d\d\]", c) for c in cells), cells
            points = [float(c.split()[0]) for c in cells[:-1]]  # the last row pools the small slices
            assert points == sorted(points)
            assert table["articleType"].iloc[-1].startswith("other (") and table["images"].sum() == n_test
            assert "" in set(table["Formal recall [95% CI]"])  # slices without Formal images: empty, not 0
        said = " ".join(c.value for c in at.caption)
        assert "Test images by article type" in said and "fewer than 20 images are pooled" in said
        at.selectbox(key="eval_slice_by").set_value("gender")
        at.segmented_control(key="eval_split").set_value("val")
        at.run()
        assert not at.exception
        tables = slice_tables("gender")
        assert len(tables) == len(REGISTRY) and {"Men", "Women"} <= set(tables[0]["gender"])
        assert "Validation images by gender" in " ".join(c.value for c in at.caption)
    monkeypatch.setenv("DRESSCODE_DATA", str(tmp_path))  # no dataset there: a sentence instead of the tables
    at.run()
    assert not at.exception
    assert not slice_tables("articleType") and not slice_tables("gender")
    assert any("recall per article type, sub-category and gender" in i.value for i in at.info)
