"""Real-browser tests: Debian Chromium + Playwright against ``streamlit run`` on 127.0.0.1.

Run alone with ``python -m pytest -m browser``. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from image_cases import encode, garment_photo

from bench.load import CHROMIUM, CHROMIUM_ARGS, free_port, start_server, stop_server
from core.models.registry import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "fashion-small"
ARTIFACTS = ROOT / "test-artifacts"

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed"),
    pytest.mark.skipif(
        not all(s.weights_file.is_file() for s in REGISTRY.values()), reason="shipped weights are not present"
    ),
]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """``streamlit run streamlit_app.py`` on a free loopback port (the load test's own starter)."""

    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    proc = start_server(port, ARTIFACTS / "streamlit-browser.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(proc)


@pytest.fixture()
def page(server: str):  # noqa: ANN201
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1600})
        pg.set_default_timeout(120_000)
        pg.goto(server, wait_until="domcontentloaded")
        yield pg
        browser.close()


def two_photos(tmp_path: Path) -> list[str]:
    if DATA.is_dir():
        src = [DATA / "images" / "15970.jpg", DATA / "images" / "1855.jpg"]
        src = [p if p.is_file() else DATA / "images" / "39386.jpg" for p in src]
        out = []
        for i, p in enumerate(src):
            dst = tmp_path / f"photo{i}_{p.name}"
            shutil.copy(p, dst)
            out.append(str(dst))
        return out
    paths = []
    for i, colour in enumerate(((30, 40, 120), (10, 10, 10))):
        p = tmp_path / f"photo{i}.png"
        p.write_bytes(encode(garment_photo(colour=colour), "PNG"))
        paths.append(str(p))
    return paths


def choose(pg, label: str, option: str) -> None:  # noqa: ANN001
    """Pick ``option`` in the Streamlit selectbox labelled ``label``."""
    box = pg.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    box.get_by_role("combobox").click()
    pg.get_by_role("option").filter(has_text=option).first.click()


def test_drop_two_photos_switch_layer_and_open_evaluation(page, tmp_path: Path) -> None:  # noqa: ANN001
    pg = page
    ARTIFACTS.mkdir(exist_ok=True)
    drop = pg.locator('[data-testid="stFileUploaderDropzoneInput"]')
    drop.wait_for(state="attached")
    drop.set_input_files(two_photos(tmp_path))
    pg.get_by_text("Results for 2 photos").wait_for()
    pg.locator('[data-testid="stDataFrame"]').first.wait_for()
    first = pg.locator('[data-testid="stExpander"]').filter(has_text="1. photo0").first
    first.locator("summary").click()
    metrics = first.locator('[data-testid="stMetric"]')
    metrics.nth(1).wait_for()
    assert metrics.count() == 2
    for k in range(2):
        lines = [t for t in metrics.nth(k).inner_text().split("\n") if t.strip()]
        assert lines[1] in ("Casual", "Formal", "Smart Casual"), lines
    overlays = first.locator('[data-testid="stImage"]')
    overlays.nth(1).wait_for()  # both models' overlays
    first.get_by_text("Grad-CAM for").nth(1).wait_for()
    caption_before = first.inner_text()
    assert "textures (layer2" in caption_before  # ResNet50's default layer
    pg.screenshot(path=str(ARTIFACTS / "browser-classify.png"), full_page=True)

    # the settings closed when the photos came in (the verdicts show first on a laptop): open them
    pg.locator('[data-testid="stExpander"]').filter(has_text="Heatmap settings").first.locator("summary").click()
    choose(pg, "Layer — ResNet50", "parts · 8×10")  # the picker shows short names
    first = pg.locator('[data-testid="stExpander"]').filter(has_text="1. photo0").first
    first.get_by_text(re.compile(r"Grad-CAM for .* parts \(layer3")).wait_for()
    assert "textures (layer2" not in first.inner_text()
    pg.screenshot(path=str(ARTIFACTS / "browser-layer3.png"), full_page=True)

    pg.get_by_role("link", name="Evaluation").click()
    pg.get_by_text("Confusion matrices").wait_for()
    pg.locator('[data-testid="stPlotlyChart"]').nth(3).wait_for()
    assert pg.locator('[data-testid="stPlotlyChart"]').count() >= 4
    time.sleep(1.5)
    pg.screenshot(path=str(ARTIFACTS / "browser-evaluation.png"), full_page=True)
    assert not pg.locator('[data-testid="stException"]').count()


def test_upload_over_the_limit_is_refused_by_the_server(page, tmp_path: Path) -> None:  # noqa: ANN001
    big = tmp_path / "panorama.jpg"
    big.write_bytes(encode(garment_photo(), "JPEG") + b"\0" * (26 * 1024 * 1024))
    drop = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    drop.wait_for(state="attached")
    drop.set_input_files(str(big))
    page.get_by_text("or smaller").first.wait_for()  # Streamlit's own "File must be 25.0MB or smaller."
    assert not page.locator('[data-testid="stMetric"]').count()
    assert not page.locator('[data-testid="stException"]').count()
    page.screenshot(path=str(ARTIFACTS / "browser-upload-limit.png"), full_page=True)


def test_repository_files_are_not_served(server: str) -> None:
    for path in ("/app/static/README.md", "/app/static/weights/split.json", "/README.md", "/core/models/networks.py"):
        try:
            with urllib.request.urlopen(server + path, timeout=10) as r:
                body = r.read()
        except urllib.error.HTTPError as exc:
            assert exc.code in (403, 404)
            continue
        assert b"Dress-code explainer" not in body and b"import torch" not in body, path


def test_first_visit_straight_to_a_page_goes_through_the_entry_script() -> None:
    """A bookmark or a refresh on /layers right after the server starts gets the app, not the bare page.

    Until st.navigation has run once, Streamlit treats pages/ as an old-style pages folder and would
    run pages/layers.py alone (file names in the menu, no model pickers); pages/_entry.through_entry()
    sends such a run back through streamlit_app.py.
    """

    port = free_port()
    proc = start_server(port, ARTIFACTS / "streamlit-direct.log")
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            pg.set_default_timeout(120_000)
            pg.goto(f"http://127.0.0.1:{port}/layers", wait_until="domcontentloaded")
            pg.get_by_text("What does each layer see?").wait_for()
            pg.get_by_text("Model A").first.wait_for()  # the shared sidebar of streamlit_app.py
            links = pg.locator('[data-testid="stSidebarNavLink"]').all_inner_texts()
            assert [t.split("\n")[-1].strip() for t in links] == [  # after the icon name
                "Classify",
                "Layers",
                "Evaluation",
                "Trust",
                "Data & augmentation",
                "About the models",
            ]
            assert not pg.locator('[data-testid="stException"]').count()
            browser.close()
    finally:
        stop_server(proc)


@pytest.fixture()
def laptop(server: str):  # noqa: ANN201
    """A 1280×800 laptop window, the sidebar open (Streamlit opens it at this width)."""
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 800})
        pg.set_default_timeout(120_000)
        pg.goto(server, wait_until="domcontentloaded")
        pg.locator('[data-testid="stSidebar"]').get_by_text("Model A").first.wait_for()
        yield pg
        browser.close()


def sidebar_open(pg) -> bool:  # noqa: ANN001
    box = pg.locator('[data-testid="stSidebar"]').bounding_box()
    return box is not None and box["width"] > 200 and box["x"] >= 0


def test_laptop_first_verdict_is_visible_after_an_upload_without_scrolling(laptop, tmp_path: Path) -> None:  # noqa: ANN001
    pg = laptop
    assert sidebar_open(pg)
    drop = pg.locator('[data-testid="stFileUploaderDropzoneInput"]')
    drop.wait_for(state="attached")
    drop.set_input_files(two_photos(tmp_path)[0])
    verdict = pg.locator(".st-key-verdicts_single")
    verdict.wait_for()
    pg.locator('[data-testid="stMetric"]').nth(1).wait_for()  # the page is drawn to its end
    time.sleep(1.0)
    assert sidebar_open(pg)
    box = verdict.bounding_box()
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 800, box
    text = verdict.inner_text()
    assert re.search(r"(Casual|Formal|Smart Casual) · \d+%", text) and "Percentages are calibrated confidence" in text
    assert re.search(r"Ensemble\n(Casual|Formal|Smart Casual) · \d+%", text) and " say" in text, text
    pg.screenshot(path=str(ARTIFACTS / "browser-laptop-classify.png"))


def test_laptop_evaluation_table_fits_and_a_clicked_matrix_cell_opens_its_images(laptop) -> None:  # noqa: ANN001
    pg = laptop
    pg.get_by_role("link", name="Evaluation").click()
    table = pg.locator('[data-testid="stDataFrame"]').first
    table.wait_for()
    time.sleep(1.5)  # the grid sizes its columns after the first paint
    assert sidebar_open(pg)
    widths = table.evaluate(
        "el => { const s = el.querySelector('.dvn-scroller') || el; return [s.scrollWidth, s.clientWidth]; }"
    )
    assert widths[0] <= widths[1], widths
    headers = table.evaluate("el => Array.from(el.querySelectorAll('th')).map(t => t.innerText)")
    for col in ("model", "balanced acc.", "macro-F1", "Formal F1", "Smart Casual"):
        assert any(h.startswith(col) for h in headers), headers
    pg.screenshot(path=str(ARTIFACTS / "browser-laptop-evaluation.png"))

    chart = pg.locator('[data-testid="stVegaLiteChart"]').first
    chart.scroll_into_view_if_needed()
    cell = chart.locator('[aria-roledescription="rect mark"][aria-label^="predicted: Smart Casual; true: Formal;"]')
    cell.wait_for()
    cell.click()  # the cell itself is the control
    value = lambda label: (  # noqa: E731 - a selectbox's chosen option
        pg.locator('[data-testid="stSelectbox"]').filter(has_text=label).first.get_by_role("combobox").input_value()
    )
    deadline = time.time() + 60
    while time.time() < deadline and value("Predicted class") != "Smart Casual":
        time.sleep(0.5)
    assert value("True class") == "Formal" and value("Predicted class") == "Smart Casual"
    pg.get_by_text(re.compile(r"\d+ test images? in this cell")).first.wait_for()
    pg.screenshot(path=str(ARTIFACTS / "browser-matrix-click.png"), full_page=True)
    assert not pg.locator('[data-testid="stException"]').count()


def test_many_photos_at_a_glance_at_1400_px(page, tmp_path: Path) -> None:  # noqa: ANN001
    """The results table (thumbnails, the models' and the ensemble's verdicts; every class's probability in the
    next tab) fits a 1400 px window without sideways scrolling, and the heatmap grid shows each photo with both
    models' maps without a click."""
    pg = page
    paths = two_photos(tmp_path)
    third = tmp_path / "photo2.png"
    third.write_bytes(encode(garment_photo(colour=(200, 60, 40)), "PNG"))
    drop = pg.locator('[data-testid="stFileUploaderDropzoneInput"]')
    drop.wait_for(state="attached")
    drop.set_input_files([*paths, str(third)])
    pg.get_by_text("Heatmaps at a glance").wait_for()
    pg.get_by_text(re.compile(r"^3\. photo2\.png$")).first.wait_for()  # the grid's last photo (and its row)
    time.sleep(1.5)
    table = pg.locator('[data-testid="stDataFrame"]').first
    widths = table.evaluate(
        "el => { const s = el.querySelector('.dvn-scroller') || el; return [s.scrollWidth, s.clientWidth]; }"
    )
    headers = table.evaluate("el => Array.from(el.querySelectorAll('th')).map(t => t.innerText)")
    assert "photo" in headers and "Ensemble class" in headers, headers
    assert widths[0] <= widths[1], (widths, headers)
    grid = pg.get_by_text(re.compile(r"Grad-CAM for")).filter(has_text=re.compile(r"^(Baseline CNN|ResNet50): "))
    assert grid.count() >= 6  # two maps per photo
    pg.screenshot(path=str(ARTIFACTS / "browser-many-photos.png"), full_page=True)
    assert not pg.locator('[data-testid="stException"]').count()
