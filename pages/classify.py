"""Classify: drop photos, compare two models, see Grad-CAM for each."""

from __future__ import annotations

from pages._entry import through_entry

through_entry()  # first, before the heavy imports below: a page run alone after a start goes back at once

from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image, ImageDraw

from core.explanation.overlay import COLORMAPS, annotated_download, colour_strip, enlarge, png_bytes, raw_map_image
from core.images.framing import share_on_product
from core.images.preprocess import FORMAT_NAMES
from core.models.registry import REGISTRY, get_spec
from core.prediction.inference import BATCH_FAST
from pages import _session
from pages.ui import dataset, drawing, pickers, resources, results, settings, trust, verdicts, wording

st.title("Dress code: Casual, Formal or Smart Casual?")
st.caption(
    "Drop product photos. Two models classify each one side by side, and Grad-CAM shows which "
    "parts of the image pushed each model towards the class it explains."
)

names = settings.chosen_models()
SLOTS = (("a", names[0]), ("b", names[1]))  # Model A and Model B, as the sidebar chose them
SAME_MODEL = (
    "Model A and Model B are the same model: its two panels can show two of its layers side by side (Heatmap "
    "settings). Pick another model in the sidebar to compare two models."
)
models, classes = resources.chosen_loaded(names)

uploads = _session.drop_zone(  # the photos stay for the session, through visits to other pages
    f"Product photos ({FORMAT_NAMES})",
    key="uploads",
    types=dataset.UPLOAD_TYPES,
    help="Several at once is fine. Large photos are fitted to the 60×80 canvas the models were trained on.",
)

SETTINGS_BOX = "heatmap_settings"  # the expander's open state
if uploads and not st.session_state.get("heatmap_settings_closed_once"):
    # closed once when the first photo comes in: on a 800 px laptop the first verdict then shows without
    # scrolling; opened again, the settings stay open
    st.session_state[SETTINGS_BOX] = False
st.session_state["heatmap_settings_closed_once"] = bool(uploads)
opened = {} if SETTINGS_BOX in st.session_state else {"expanded": not uploads}  # its state, when it has one, rules
with st.expander("Heatmap settings", key=SETTINGS_BOX, on_change=lambda: None, **opened):
    # rows of two or three: at 800 px a row of four cut the labels and the chosen layer's name short
    c1, c2 = st.columns(2)
    layers: dict[str, str] = {}
    for col, (slot, name) in zip((c1, c2), SLOTS):
        spec = get_spec(name)
        paths = [c.path for c in spec.cam_layers]
        labels = {c.path: c.short for c in spec.cam_layers}  # short: a 800 px window cut the full names
        layers[slot] = col.selectbox(
            # the title without its note ("EfficientNet-Lite0", not "… (ImageNet)"): one line at 800 px
            f"Layer — {spec.title.split(' (')[0]} ({'A' if slot == 'a' else 'B'})",
            paths,
            index=paths.index(spec.default_cam_layer.path),
            format_func=labels.__getitem__,
            key=f"layer_{slot}_{name}",
            persist_state="session",  # every setting here stays through visits to other pages
        )
    c3, c4 = st.columns(2)  # two a row: at 800 px three cut the toggle's label to "…over th…"
    with c3:
        target, contrast = pickers.class_and_contrast("target", classes)
    cmap = c4.selectbox("Colour map", COLORMAPS, key="cmap", persist_state="session")
    opacity = c4.slider("Heatmap opacity", 0.0, 1.0, 0.5, 0.05, key="opacity", persist_state="session")
    c6, c7 = st.columns(2)
    upsampling = c6.radio(
        "Upsampling", ["smooth", "blocky"], horizontal=True, key="upsampling", persist_state="session"
    )
    smooth = upsampling == "smooth"
    shared = c7.toggle(
        "Shared scale",
        key="shared_scale",
        persist_state="session",
        help="Both models' maps on one colour scale (with a colour bar), instead of each to its own maximum. "
        "Raw Grad-CAM values of different architectures differ by orders of magnitude.",
    )


def explanations(photo) -> dict[str, object]:  # noqa: ANN001
    """Both chosen models' explanations of one photo (None for a disabled model)."""
    out = {}
    for slot, name in SLOTS:
        if models[name].ok:
            out[slot] = resources.explain(name, photo.digest, photo.native, (layers[slot],), target, contrast)
        else:
            out[slot] = None
    return out


def framing_panel(photo) -> None:  # noqa: ANN001
    """The photo as uploaded, the canvas the models saw after framing, and what the framing step did."""
    c_in, c_seen, c_text = st.columns([1, 1, 3])
    if photo.preview is not None:
        c_in.image(photo.preview, caption="your photo", width=120)
    c_seen.image(enlarge(photo.native, 2), caption="what the models saw (60×80)", width=120)
    with c_text:
        if photo.background_flagged:
            st.warning(f"{photo.framing_note[:1].upper()}{photo.framing_note[1:]}.", icon=":material/warning:")
        elif photo.framing_note:
            st.info(f"{photo.framing_note[:1].upper()}{photo.framing_note[1:]}.", icon=":material/crop:")
        else:
            st.caption("Framed like the catalogue photos the models learnt from: used as it is.")


def product_share_note(photo, cam: np.ndarray, title: str) -> tuple[str, bool] | None:  # noqa: ANN001
    """How much of a map falls on the product (from the framing step's mask), and whether that
    is mostly background (flagged); None without a mask or for an all-zero map."""
    if photo.product_mask is None:
        return None
    share = share_on_product(cam, photo.product_mask)
    if share is None:
        return None
    if share < MOSTLY_BACKGROUND:
        return f"{title}'s map sits mostly on the background: only {share:.0%} of it falls on the product.", True
    return f"{share:.0%} of this map falls on the product.", False


MOSTLY_BACKGROUND = 0.5


def probability_chart(probs: np.ndarray, classes: list[str], key: str) -> None:
    """:func:`~pages.ui.drawing.probability_figure`, drawn."""
    st.plotly_chart(drawing.probability_figure(probs, classes), key=key, config={"displayModeBar": False})


def render_detail(photo, exps: dict, key: str) -> None:  # noqa: ANN001
    """Every model's verdict in one row, then side-by-side predictions, probability bars, overlays and raw
    maps for one photo, and its HTML report."""
    every = verdicts.all_probs((photo.digest,), photo.native[None])  # fp32, as the explanations below
    every = {n: None if p is None else p[0] for n, p in every.items()}
    verdicts.verdict_row(every, classes, key)
    framing_panel(photo)
    for note in photo.notes:
        st.info(f"Note: {note}.")
    ok = [e for e in exps.values() if e is not None]
    if names[0] == names[1]:
        if key == "single":  # a batch says it once, above its table
            st.caption(SAME_MODEL)
    elif len(ok) == 2:
        a, b = ok
        if a.predicted == b.predicted:
            st.badge(f"Models agree: {classes[a.predicted]}", icon=":material/check_circle:", color="green")
        else:
            st.badge(
                f"Models disagree: {classes[a.predicted]} vs {classes[b.predicted]}",
                icon=":material/warning:",
                color="orange",
            )
    tops = {s: drawing.cam_top(e, layers[s]) for s, e in exps.items() if e is not None}
    shared_top = max(tops.values(), default=0.0)
    if shared and tops:
        st.image(colour_strip(cmap), caption=f"shared scale: 0 → {shared_top:.3g}", width=320)
        if len(ok) == 2 and (ok[0].versus is None) != (ok[1].versus is None):
            st.caption(
                "One map explains the chosen class over its model's prediction, the other the class itself "
                "(that model already predicts it): on one shared scale they compare different scores."
            )
        low = min(tops.values())
        if len(tops) == 2 and 0 < low < shared_top / 10:  # an all-zero map gets its own note below
            dim = names[0] if tops["a"] <= tops["b"] else names[1]
            st.caption(
                f"{get_spec(dim).title}'s map peaks at {low:.3g} against {shared_top:.3g}: Grad-CAM magnitudes "
                "of different architectures are not comparable, so on one scale it looks dark. Switch "
                "*Shared scale* off to see each map against its own maximum."
            )
    cols = st.columns(2)
    maps: list[tuple[str, np.ndarray]] = []  # the overlays shown, for the HTML report
    for col, (slot, name) in zip(cols, SLOTS):
        spec = get_spec(name)
        exp = exps[slot]
        with col:
            # one model in both slots: the heading says which panel (and so which layer picker) this is
            st.subheader(spec.title + (f" ({slot.upper()})" if names[0] == names[1] else ""))
            if exp is None:
                st.error(f"This model is unavailable: {models[name].error}")
                continue
            st.metric(
                "Prediction",
                classes[exp.predicted],
                f"{exp.probs[exp.predicted]:.1%} {verdicts.confidence_word()}",
                delta_color="off",
                delta_arrow="off",
            )
            probability_chart(exp.probs, classes, key=f"prob_{key}_{slot}")
            vmax = shared_top if shared else tops[slot]
            img = drawing.overlay_image(exp, layers[slot], opacity, cmap, smooth, vmax)
            layer_label = spec.cam_layer(layers[slot]).label
            why = wording.explained_as(exp, classes, target is not None)
            left, right = st.columns([3, 2])
            left.image(img, caption=f"Grad-CAM for {why} · {layer_label} (right: the raw map at layer resolution)")
            if note := wording.flat_map_note(exp, layers[slot], classes):
                left.caption(note)
            elif said := wording.nothing_to_contrast(exp, classes, contrast, spec.title):
                left.caption(said)
            cam = exp.maps[layers[slot]]
            if said := product_share_note(photo, cam, spec.title):
                (left.warning if said[1] else left.caption)(said[0])
            trust.deletion_note(left, name, photo, exp, layers[slot], classes)  # the Trust page has the curves
            right.image(
                raw_map_image(cam, vmax, cmap, drawing.DISPLAY_HEIGHT),
                caption=f"raw map, {cam.shape[1]}×{cam.shape[0]} cells · "
                + (f"colour scale 0 → {vmax:.3g}" if vmax > 0 else "all zero"),
            )
            labelled = [
                f"{spec.title} · {classes[exp.predicted]} · {exp.probs[exp.predicted]:.1%} "
                + verdicts.confidence_word(),
                f"Grad-CAM for {why} · {layer_label}",
                f"photo: {photo.filename} · colour scale 0 → {vmax:.3g}" if vmax > 0 else f"photo: {photo.filename}",
            ]
            maps.append((f"{spec.title}: Grad-CAM for {why} · {layer_label}", img))
            st.download_button(
                "Download overlay (PNG)",
                annotated_download(img, labelled, cmap, vmax),
                file_name=wording.overlay_file_name(photo.filename, name, layers[slot], exp, classes),
                mime="image/png",
                key=f"dl_{key}_{slot}",
            )
    trust.similar_products(photo, names, key, classes)  # nearest training images in each model's embedding
    st.download_button(
        "Download explanation report (HTML)",
        results.report_bytes([results.report_photo(photo, every, maps, classes)]),
        file_name=f"{Path(photo.filename).stem or 'photo'}_dress_code_report.html",
        mime="text/html",
        key=f"dl_report_{key}",
        help="One page that stands alone: the photo, what the models saw, every verdict, both heatmaps, each "
        "model's test metrics and the caveats.",
    )


SAMPLE_CLASSES = ("Formal", "Casual")  # the sample photos Classify offers before any upload
PHOTOS_THAT_WORK = (
    "Drag one or more product photos into the drop zone above to start. What works: **one product** per photo, "
    "on a **plain background** (white, grey or a colour); **any framing** — square, landscape, zoomed out — is "
    "fitted to the catalogue photos' frame. A person wearing the clothes, or a busy room behind them, is far from "
    "what the models learnt: they still answer, less reliably."
)


def first_screen() -> None:
    """Classify before any photo: what kind of photo works, and sample photos to try with one click."""
    st.info(PHOTOS_THAT_WORK, icon=":material/photo_camera:")
    samples, where = sample_photos(str(settings.data_dir() or ""))
    st.caption(f"Or try a sample: {where}.")
    cols = st.columns(4)  # small buttons on the left, as wide as their labels
    for k, (col, (label, name, data)) in enumerate(zip(cols, samples)):
        col.button(label, key=f"sample_{k}", on_click=_session.keep_photo, args=(name, data), width="stretch")


@st.cache_data(show_spinner=False, max_entries=4)
def sample_photos(root: str) -> tuple[list[tuple[str, str, bytes]], str]:
    """The sample photos as (button label, file name, bytes), and where they come from. With the dataset
    folder ``root`` readable and a saved split: per class of ``SAMPLE_CLASSES``, the first test image that
    every shipped model card classifies rightly (an easy start; else the first test image). Otherwise two
    drawn garments."""
    catalog = dataset.get_catalog(root) if root else None
    split_of = dataset.saved_split_of()
    if catalog is None or not split_of:
        drawn = [("A drawn jacket", "drawn-jacket.png", _drawn_garment(jacket=True))]
        drawn.append(("A drawn T-shirt", "drawn-t-shirt.png", _drawn_garment(jacket=False)))
        return drawn, "drawn garments, as there are no dataset photos here"
    predicted = []  # per model card: test id → the class it predicted
    for name in REGISTRY:
        card = resources.get_card(name)[0]
        test = card.predictions.get("test") if card is not None else None
        if test:
            predicted.append({i: card.classes[int(k)] for i, k in zip(test["ids"], test["pred"])})
    samples, all_right = [], bool(predicted)
    for cls in (c for c in SAMPLE_CLASSES if c in catalog.classes):
        k = catalog.classes.index(cls)
        ids = [i for i, lab in zip(catalog.ids, catalog.labels) if lab == k and split_of.get(i) == "test"]
        right = [i for i in ids if all(p.get(i) == cls for p in predicted)]
        all_right &= bool(right)
        for pid in (right or ids)[:1]:
            try:
                data = catalog.image_path(pid).read_bytes()
            except OSError:
                continue
            samples.append((f"A {cls} product", f"sample-{cls.lower().replace(' ', '-')}-{pid}.jpg", data))
    if not samples:
        return sample_photos("")
    classes = " and ".join(label.removeprefix("A ").removesuffix(" product") for label, _, _ in samples)
    easy = ", which every model classifies rightly (an easy start; Evaluation shows the hard cases)"
    return samples, f"held-out test images, labelled {classes} in the catalogue{easy if all_right else ''}"


def _drawn_garment(jacket: bool) -> bytes:
    """A flat garment on white, 300×400 PNG: a dark jacket with lapels, or a bright T-shirt."""
    img = Image.new("RGB", (300, 400), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    if jacket:
        draw.polygon([95, 60, 205, 60, 270, 110, 262, 340, 38, 340, 30, 110], fill=(30, 38, 64))
        draw.polygon([130, 60, 170, 60, 150, 190], fill=(245, 245, 245))  # the shirt between the lapels
        for y in (215, 255, 295):
            draw.ellipse((144, y, 156, y + 12), fill=(200, 200, 200))  # buttons
    else:
        shirt = [100, 70, 200, 70, 270, 120, 240, 170, 215, 155, 215, 330, 85, 330, 85, 155, 60, 170, 30, 120]
        draw.polygon(shirt, fill=(240, 120, 40))
        draw.ellipse((125, 58, 175, 92), fill=(255, 255, 255))  # the neckline
    return png_bytes(np.asarray(img))


if not uploads:
    first_screen()
    st.stop()

photos = [dataset.read_photo(name, data) for name, data in uploads]
good = [p for p in photos if p.error is None]
for p in photos:
    if p.error:
        st.warning(f"{wording.plain(p.filename)}: {p.error}", icon=":material/block:")

if len(photos) == 1 and good:
    render_detail(good[0], explanations(good[0]), key="single")
elif len(photos) > 1:  # a table even when every file was refused: the CSV accounts for each one
    probs: dict = {n: None for n in names}
    if good:
        natives = np.stack([p.native for p in good])
        with st.spinner(f"Classifying {len(good)} photos …"):
            probs = verdicts.all_probs(tuple(p.digest for p in good), natives, fast=BATCH_FAST)
    refused = len(photos) - len(good)
    st.subheader(
        f"Results for {len(good)} photos" + (f"; {refused} not scored" if refused else "")
        if good
        else f"None of the {len(photos)} files could be scored"
    )
    if names[0] == names[1]:
        st.caption(SAME_MODEL)
    table, long, csv = results.tables(photos, probs, SLOTS, classes)
    results.show_tables(table, long, classes)
    st.download_button(
        "Download results (CSV)",
        csv.to_csv(index=False).encode(),
        file_name="dress_code_results.csv",
        mime="text/csv",
        key="dl_csv",
        help="Every file, its framing note, and every class's probability for every model and the ensemble.",
    )
    if good:  # nothing to open, nor a fast path to explain, when every file was refused
        st.caption(
            "The table comes from the fast batch path (bfloat16 where this CPU runs it in hardware; a photo whose "
            "top two classes are close is re-run in full precision), so an opened row's exact confidence can differ "
            "from the table's by a few tenths of a point. Its class matched the full-precision one on every "
            "validation and test image measured (README, Benchmarks)."
        )
        st.subheader("Heatmaps at a glance")
        look = {"layers": layers, "target": target, "contrast": contrast}
        look |= {"opacity": opacity, "cmap": cmap, "smooth": smooth}
        numbered_good = [(pos, p) for pos, p in enumerate(photos, 1) if p.error is None]
        shown = results.heatmap_grid(numbered_good, probs, SLOTS, look, classes)
        st.download_button(
            "Download explanation report of these photos (HTML)",
            results.report_bytes(shown),
            file_name="dress_code_report.html",
            mime="text/html",
            key="dl_report_batch",
            help="One page that stands alone, for the photos of this heatmap page: each photo, what the models saw, "
            "every verdict, both heatmaps, each model's test metrics and the caveats.",
        )
        st.caption("Open a row to see its probability bars, raw maps and the rest (computed when opened).")
    numbered = [(pos, p) for pos, p in enumerate(photos, 1) if p.error is None]  # each with its table "#"
    for i, (pos, p) in enumerate(numbered):
        box = st.expander(f"{pos}. {wording.plain(p.filename)}", key=f"row_{i}_{p.digest}", on_change="rerun")
        with box:
            if box.open:
                render_detail(p, explanations(p), key=f"row{i}")
