"""Streamlit glue shared by the pages: cached models, settings, small renderers.

Everything that is not drawing lives in ``core/``; this module only caches and draws.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from PIL import Image, ImageDraw

from core.data import (
    DATA_ENV_VAR,
    DEFAULT_CLASSES,
    DEFAULT_LABEL_COLUMN,
    DEFAULT_SPLIT_FILE,
    find_default_data_dir,
    get_or_make_split,
    load_split,
    load_styles,
    products_in_train,
    twins_in_train,
)
from core.gradcam import Explanation
from core.inference import BATCH_FAST, BATCH_SIZE
from core.models import REGISTRY, WEIGHTS_DIR, get_spec
from core.overlay import colorize, enlarge, normalise, overlay, png_bytes
from core.service import LoadedModel, UploadedPhoto, load_card, load_explainer, read_upload
from pages import _session

UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "heic", "heif", "avif"]
DISPLAY_HEIGHT = 320
PREDICTED_COLOUR = "#3b5bdb"  # the theme's primary colour: the predicted class's bar
OTHER_COLOUR = "#ced4da"  # a neutral grey for the other classes
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&])")


log = logging.getLogger(__name__)


def plain(text: str) -> str:
    """Escape user text (file names) so Markdown/HTML in it is shown, never rendered."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


# ------------------------------------------------------------------ cached resources
@st.cache_resource(show_spinner=False, max_entries=8)  # warm_models() says so on the page
def get_model(name: str) -> LoadedModel:
    """One loaded model (with its lock) shared by every session."""
    return load_explainer(name)


def warm_models() -> None:
    """Load every model before the page is drawn, saying so in the main area: the first visit
    after a start (or a cache clear) would otherwise show an empty page for the seconds loading
    takes. On cache hits nothing shows: a spinner appears only after half a second."""
    with st.spinner("Loading the models (the first visit after a start takes a few seconds) …"):
        for name in REGISTRY:
            get_model(name)


def wrote_elsewhere(command: str) -> bool:
    """Whether a training command's ``--out`` was a folder other than the project's ``weights/``
    (relative folders are taken from the project root, where the commands run)."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return False
    out = None
    for i, arg in enumerate(argv):
        if arg == "--out" and i + 1 < len(argv):
            out = argv[i + 1]
        elif arg.startswith("--out="):
            out = arg.split("=", 1)[1]
    if out is None:
        return False
    folder = Path(out) if Path(out).is_absolute() else WEIGHTS_DIR.parent / out
    return folder.resolve() != WEIGHTS_DIR.resolve()


def chosen_loaded(names: list[str]) -> tuple[dict[str, LoadedModel], list[str]]:
    """The chosen models (each once) and the class list the page labels them with: the first usable
    model's. A model whose card lists other classes, or the same in another order, is shown as
    unavailable rather than mislabelled."""
    models = {n: get_model(n) for n in dict.fromkeys(names)}
    classes = next((list(m.card.classes) for m in models.values() if m.ok), list(DEFAULT_CLASSES))
    for n, m in models.items():
        if m.ok and list(m.card.classes) != classes:
            models[n] = LoadedModel(
                n, error=f"its classes {list(m.card.classes)} are not the other model's {classes}, in that order"
            )
    return models, classes


@st.cache_data(show_spinner=False, max_entries=16)
def get_card(name: str):  # noqa: ANN201 - (card | None, error | None)
    """A model card and/or the reason it is missing."""
    return load_card(name)


@st.cache_data(show_spinner=False, max_entries=512)
def explain(
    model_name: str,
    digest: str,
    _native: np.ndarray,
    layers: tuple[str, ...],
    target: int | None,
    contrast: bool = False,
) -> Explanation:
    """Prediction + Grad-CAM of ``layers``; cached by photo digest, model, layers, target and contrast."""
    loaded = get_model(model_name)
    assert loaded.explainer is not None
    return loaded.explainer.explain(_native, list(layers), target, contrast)


@st.cache_data(show_spinner=False, max_entries=64)
def explain_many(
    model_name: str, digests: tuple[str, ...], _natives: np.ndarray, layers: tuple[str, ...]
) -> list[Explanation]:
    """:func:`explain` of several photos for their predicted class, in one pass (a gallery page);
    cached by the photos' digests, model and layers."""
    loaded = get_model(model_name)
    assert loaded.explainer is not None
    return loaded.explainer.explain_many(_natives, list(layers))


CONTRAST_HELP = (
    "Off: what speaks for the chosen class. On: what speaks for it *more than* for the class each model "
    "predicted ('why not Formal?'): Grad-CAM of the chosen class's logit minus the predicted one's."
)


def class_and_contrast(key: str, classes: list[str]) -> tuple[int | None, bool]:
    """The "Explain which class" picker with its "…over the prediction" toggle under it, drawn in
    the current container; returns (target class or None for the prediction, contrast). The toggle
    switches off when the picker goes back to the prediction, so it never comes back on unasked."""
    toggle_key = f"{key}_contrast"

    def back_to_prediction() -> None:
        if st.session_state[key] == "predicted class":
            st.session_state[toggle_key] = False

    label = st.selectbox(
        "Explain which class",
        ["predicted class", *classes],
        key=key,
        on_change=back_to_prediction,
        help="Pick a class to see what speaks for it in each model's eyes.",
        persist_state="session",  # kept through visits to other pages
    )
    target = None if label == "predicted class" else classes.index(label)
    contrast = st.toggle(
        "…over the prediction", key=toggle_key, disabled=target is None, help=CONTRAST_HELP, persist_state="session"
    )
    return target, contrast and target is not None


def nothing_to_contrast(exp: Explanation, classes: list[str], contrast: bool, who: str) -> str | None:
    """Said when a contrast was asked for but ``who`` (the model) already predicts the chosen class,
    so its map shows the evidence for that class alone; None otherwise."""
    if not contrast or exp.versus is not None:
        return None
    return f"{who} already predicts {classes[exp.target]}: nothing to contrast it with."


def explained_as(exp: Explanation, classes: list[str], chosen: bool) -> str:
    """What a map explains, for captions: "Casual", "Formal (chosen)", "Formal over Casual (chosen)"."""
    what = classes[exp.target]
    if exp.versus is not None:
        what += f" over {classes[exp.versus]}"
    return what + (" (chosen)" if chosen else "")


def titled(text: str) -> str:
    """Free text from a model card with each model's registry key (``effnet_lite0``) replaced by
    its title, outside `code` spans and paths (``runs/resnet50/last.pt``, ``resnet50.json`` stay)."""
    # only keys that cannot be ordinary words ("baseline" is one: "a baseline of 0.5" stays)
    keys = "|".join(re.escape(k) for k in sorted(REGISTRY, key=len, reverse=True) if re.search(r"[\d_]", k))
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(
        p if p.startswith("`") else re.sub(rf"(?<![\w/.-])({keys})(?![\w/-]|\.\w)", lambda m: get_spec(m[1]).title, p)
        for p in parts
    )


def overlay_file_name(photo_name: str, model_name: str, layer: str, exp: Explanation, classes: list[str]) -> str:
    """A download name that says what the overlay shows, so exports of one photo do not clash:
    ``shirt_resnet50_layer4_Formal-over-Casual.png``."""
    what = classes[exp.target] + ("" if exp.versus is None else f"-over-{classes[exp.versus]}")
    parts = (Path(photo_name).stem or "photo", model_name, layer.removeprefix("backbone.").removeprefix("net."), what)
    parts = tuple(unicodedata.normalize("NFC", p) for p in parts)  # macOS may send "e" + accent: one letter
    return "_".join(re.sub(r"[^\w.-]+", "-", p).strip("-._") or "x" for p in parts) + ".png"  # \w keeps "été"


@st.cache_data(show_spinner=False, max_entries=64)
def predict_batch(model_name: str, digests: tuple[str, ...], _natives: np.ndarray) -> np.ndarray:
    """Class probabilities for a batch of photos (no heatmaps); cached by the photos' digests."""
    loaded = get_model(model_name)
    assert loaded.explainer is not None
    return loaded.explainer.predict(_natives, batch_size=BATCH_SIZE, fast=BATCH_FAST)


@st.cache_data(show_spinner=False, max_entries=128)
def read_photo(filename: str, data: bytes):  # noqa: ANN201
    """Decode an upload (cached by content)."""
    return read_upload(filename, data)


def dataset_photo(catalog, pid: int):  # noqa: ANN001, ANN201 - UploadedPhoto
    """A dataset image as an upload; a file that vanished becomes a message, not a crash."""
    try:
        data = catalog.image_path(pid).read_bytes()
    except OSError:
        return UploadedPhoto(f"{pid}.jpg", "", error="listed in styles.csv but missing from the dataset folder")
    return read_photo(f"{pid}.jpg", data)


@st.cache_resource(show_spinner="Reading the dataset index …", max_entries=4)
def _catalog(root: str, classes: tuple[str, ...], label_column: str):  # noqa: ANN202
    return load_styles(root, classes, label_column)  # a failure is not cached: a fixed folder is read again


def get_catalog(  # noqa: ANN201
    root: str, classes: Sequence[str] = DEFAULT_CLASSES, label_column: str = DEFAULT_LABEL_COLUMN
):
    """The dataset index for the configured folder (class indices in ``classes`` order), or None
    (logged) when it cannot be read."""
    try:
        return _catalog(root, tuple(classes), label_column)
    except (OSError, KeyError, ValueError, StopIteration) as exc:
        log.warning("dataset index of %s could not be read: %r", root, exc)
        return None


@st.cache_data(show_spinner=False)
def saved_split_of() -> dict[int, str]:
    """id → split name from the saved split (empty when there is none)."""
    if not DEFAULT_SPLIT_FILE.is_file():
        return {}
    return {int(i): s for s, ids in load_split(DEFAULT_SPLIT_FILE).items() for i in ids}


def _saved_split(catalog, left_out: tuple[int, ...] = ()) -> dict[str, list[int]] | None:  # noqa: ANN001
    """The saved split of this catalog (None without a split file), training ids ``left_out`` removed."""
    if catalog is None or not DEFAULT_SPLIT_FILE.is_file():
        return None
    split = dict(get_or_make_split(catalog, DEFAULT_SPLIT_FILE))
    gone = set(left_out)
    split["train"] = [i for i in split["train"] if i not in gone]
    return split


def _readable_catalog(root: str):  # noqa: ANN202
    """The catalog, for the cached helpers below: an unreadable folder raises, so that their
    caches never keep an answer computed without it (a fixed folder is then read again)."""
    catalog = get_catalog(root)
    if catalog is None:
        raise OSError(f"the dataset index of {root} cannot be read")
    return catalog


@st.cache_data(show_spinner=False)
def trained_product_twins(root: str) -> frozenset[int]:
    """Ids outside the training split whose product (same class, name without colours) training has."""
    catalog = _readable_catalog(root)
    split = _saved_split(catalog)
    if split is None:
        return frozenset()
    train = set(split["train"])
    return frozenset(products_in_train(catalog, split["train"], [i for i in catalog.ids if i not in train]))


@st.cache_data(show_spinner=False)
def products_seen_without(root: str, left_out: tuple[int, ...] = ()) -> dict | None:
    """:func:`twins_in_train` on the saved split, for a model trained without the ``left_out`` training ids."""
    catalog = _readable_catalog(root)
    split = _saved_split(catalog, left_out)
    return None if split is None else twins_in_train(catalog, split)


SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}  # split key → words for people


@st.cache_data(show_spinner=False)
def products_seen_in_training(root: str) -> pd.DataFrame | None:
    """Per class: validation and test images whose product training has ("k of n (p%)")."""
    twins = products_seen_without(root)
    if twins is None:
        return None
    cells = {
        SPLIT_NAMES[s]: [f"{k:,} of {n:,} ({k / n:.0%})" if n else "—" for k, n in per.values()]
        for s, per in twins.items()
    }
    return pd.DataFrame(cells, index=pd.Index(get_catalog(root).classes, name="class"))


SAMPLE_SOURCES = {  # label → split names; held-out images first, so a demo does not show memorised ones
    "test (held out)": ("test",),
    "validation": ("val",),
    "training (seen by the models)": ("train",),
    "all images": ("train", "val", "test", None),
}


def dataset_sample(catalog, key: str, default_class: int = 0):  # noqa: ANN001, ANN201 - UploadedPhoto | None
    """Class, split and sample pickers for a dataset image; says the image's id and split."""
    split_of = saved_split_of()
    c1, c2, c3 = st.columns([2, 2, 1])
    cls = c1.selectbox("Class", catalog.classes, index=default_class, key=f"{key}_class")
    sources = SAMPLE_SOURCES if split_of else {"all images": (None,)}
    source = c2.selectbox("Images from", list(sources), key=f"{key}_from")
    wanted = sources[source]
    ids = [i for i, k in zip(catalog.ids, catalog.labels) if catalog.classes[k] == cls and split_of.get(i) in wanted]
    if not ids:
        st.info(f"No {cls} images in {source}.")
        return None
    pick = c3.number_input(f"Sample (1–{len(ids)})", 1, len(ids), 1, key=f"{key}_pick")
    pid = ids[int(pick) - 1]
    where = split_of.get(pid)
    seen = {
        "train": "training split — the models learnt from this image",
        "val": "validation split — chose the checkpoint and the decision rule, never trained on",
        "test": "test split — never used for training or choices",
    }
    twin = " · a training image shows the same product (or a colour variant of it)"
    known = twin if where != "train" and pid in trained_product_twins(str(catalog.root)) else ""
    st.caption(f"id {pid} · {seen.get(where, 'not in the saved split')}{known}")
    return dataset_photo(catalog, pid)


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
    samples, where = sample_photos(str(data_dir() or ""))
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
    catalog = get_catalog(root) if root else None
    split_of = saved_split_of()
    if catalog is None or not split_of:
        drawn = [("A drawn jacket", "drawn-jacket.png", _drawn_garment(jacket=True))]
        drawn.append(("A drawn T-shirt", "drawn-t-shirt.png", _drawn_garment(jacket=False)))
        return drawn, "drawn garments, as there are no dataset photos here"
    predicted = []  # per model card: test id → the class it predicted
    for name in REGISTRY:
        card = get_card(name)[0]
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


# ------------------------------------------------------------------ settings
def _defaults() -> dict[str, str]:
    return {
        "model_a": "baseline",
        "model_b": "resnet50",
        "data_dir": os.environ.get(DATA_ENV_VAR) or str(find_default_data_dir() or ""),
    }


DATA_EDITABLE_ENV_VAR = "DRESSCODE_DATA_EDITABLE"  # "1": a local run may type another folder in the sidebar
DATA_LOCK_ENV_VAR = "DRESSCODE_DATA_LOCKED"  # "1": locked even when the other says editable (the old switch)


def data_dir_editable() -> bool:
    """Whether the browser may change the dataset folder: only when the server opts in for a local run
    (``DRESSCODE_DATA_EDITABLE=1``) and does not also lock it. By default the folder is the server's setting."""
    return os.environ.get(DATA_EDITABLE_ENV_VAR, "") == "1" and os.environ.get(DATA_LOCK_ENV_VAR, "") != "1"


def data_dir_locked() -> bool:
    """Whether the server fixes the dataset folder (the default): the sidebar then shows only the dataset's
    name and size, and any value a browser sends for the folder is ignored."""
    return not data_dir_editable()


def where_data_is_set() -> str:
    """Where the dataset folder is set, for messages: by the server, unless a local run made it editable."""
    return f"the server sets it, with ${DATA_ENV_VAR}" if data_dir_locked() else f"sidebar, or ${DATA_ENV_VAR}"


def setting(key: str) -> str:
    """A sidebar setting, or its default when a page runs without the sidebar (always the server's
    dataset folder unless the folder is editable)."""
    if key == "data_dir" and data_dir_locked():
        return _defaults()[key]
    return st.session_state[key] if key in st.session_state else _defaults()[key]


def init_state() -> None:
    """Session defaults, set once."""
    for key, value in _defaults().items():
        # re-assigning keeps a sidebar widget's value when the page (and so its widget id) changes
        st.session_state[key] = st.session_state[key] if key in st.session_state else value


def data_dir() -> Path | None:
    """The configured dataset folder if it has the Kaggle layout, else None."""
    raw = str(setting("data_dir")).strip()
    if not raw:
        return None
    p = Path(raw).expanduser()
    return p if (p / "styles.csv").is_file() and (p / "images").is_dir() else None


def shown_folder(folder: str) -> str:
    """A dataset folder as messages show it: the path typed in an editable sidebar, else only the folder's
    name (the server's paths are not the visitors' business)."""
    return plain(folder if data_dir_editable() else Path(folder).name or folder)


def no_dataset_note(consequence: str) -> str:
    """Why dataset samples are unavailable (nothing configured, or a folder that is not a dataset),
    followed by ``consequence``."""
    configured = str(setting("data_dir")).strip()
    if not configured:
        return f"No dataset folder is configured ({where_data_is_set()}), so {consequence}"
    whose = "configured" if data_dir_editable() else "server's"
    if data_dir() is None:
        return (
            f"The {whose} dataset folder {shown_folder(configured)} is missing or incomplete (it needs styles.csv "
            f"and images/), so {consequence}"
        )
    folder = shown_folder(configured)
    return f"The {whose} dataset folder {folder} could not be read (see the server log), so {consequence}"


def model_label(name: str) -> str:
    """Display name of a registry model, marked when disabled."""
    loaded = get_model(name)
    return get_spec(name).title + ("" if loaded.ok else " (unavailable)")


def chosen_models() -> list[str]:
    """The two models picked in the sidebar (may be the same one twice)."""
    return [setting("model_a"), setting("model_b")]


def sidebar() -> None:
    """The shared sidebar: model pickers, dataset folder, model status."""
    names = list(REGISTRY)
    with st.sidebar:
        st.subheader("Models")
        st.selectbox("Model A", names, key="model_a", format_func=model_label)
        st.selectbox("Model B", names, key="model_b", format_func=model_label)
        for name in names:
            loaded = get_model(name)
            if not loaded.ok:
                st.error(f"{get_spec(name).title} is disabled: {loaded.error}", icon=":material/warning:")
        st.subheader("Dataset")
        if data_dir_editable():  # a local run that opted in: the folder is the user's own to type
            st.text_input(
                "Dataset folder (Kaggle layout)",
                key="data_dir",
                help=f"Folder with styles.csv and images/. Also read from ${DATA_ENV_VAR}. Editable because "
                f"${DATA_EDITABLE_ENV_VAR}=1 (a local run); a shared server leaves it unset.",
            )
        dataset_summary()


def dataset_summary() -> None:
    """The dataset as the sidebar names it: the folder's name and its image count, never a path."""
    configured = str(setting("data_dir")).strip()
    root = data_dir()
    catalog = get_catalog(str(root)) if root else None
    by = "" if data_dir_editable() else " Set by the server."
    if catalog is not None:
        st.markdown(f"**{plain(root.name)}** · {len(catalog.ids):,} labelled product photos")
        st.caption(f"{', '.join(catalog.classes)}.{by}")
    elif root is not None:
        st.caption(f"The dataset {shown_folder(configured)} could not be read; dataset features are off.{by}")
    elif configured:
        st.caption(f"The folder {shown_folder(configured)} has no styles.csv + images/; dataset features are off.{by}")
    else:
        where = "" if data_dir_editable() else " on this server"
        st.caption(f"No dataset configured{where}: dataset galleries are off; everything else works.")


# ------------------------------------------------------------------ renderers
def probability_figure(probs: np.ndarray, classes: list[str]) -> go.Figure:
    """Horizontal probability bars for all classes; the predicted class (the highest bar) in the highlight
    colour, the others in a neutral one."""
    top = int(np.argmax(probs))
    fig = go.Figure(
        go.Bar(
            x=[float(p) for p in probs],
            y=classes,
            orientation="h",
            marker_color=[PREDICTED_COLOUR if k == top else OTHER_COLOUR for k in range(len(classes))],
            text=[f"{p:.1%}" for p in probs],
            textposition="outside",  # level and readable even beside a thin bar
            textangle=0,
            cliponaxis=False,
        )
    )
    fig.update_layout(
        height=150,
        margin=dict(l=0, r=48, t=0, b=0),  # room for "100.0%" beyond a full bar
        xaxis=dict(range=[0, 1], tickformat=".0%", dtick=0.5, tickangle=0),
        yaxis=dict(autorange="reversed"),
    )
    return fig


def probability_chart(probs: np.ndarray, classes: list[str], key: str) -> None:
    """:func:`probability_figure`, drawn."""
    st.plotly_chart(probability_figure(probs, classes), key=key, config={"displayModeBar": False})


def raw_map_image(cam: np.ndarray, vmax: float, cmap: str) -> np.ndarray:
    """The layer-resolution Grad-CAM, one flat block per cell, with a colour strip below it on
    the given scale. An image, so a narrow column shrinks it instead of cropping it."""
    cells = colorize(normalise(cam, vmax), cmap)
    grid = enlarge(cells, max(1, DISPLAY_HEIGHT // cells.shape[0]))
    width = grid.shape[1]
    gap = np.full((max(4, width // 32), width, 3), 255, dtype=np.uint8)
    return np.concatenate([grid, gap, colour_strip(cmap, width, max(8, width // 16))])


def overlay_image(
    exp: Explanation, layer: str, opacity: float, cmap: str, smooth: bool, vmax: float | None = None
) -> np.ndarray:
    """Overlay of one layer's map on the exact model input, enlarged for display. The colour
    scale tops out at ``vmax``, by default the map's own maximum at layer resolution
    (``cam_top``), so a map looks the same on every page whatever the upsampling."""
    up = exp.upsampled(layer, "bilinear" if smooth else "nearest")
    top = cam_top(exp, layer) if vmax is None else vmax
    img = overlay(exp.model_input, normalise(up, top), opacity, cmap)
    return enlarge(img, max(1, DISPLAY_HEIGHT // img.shape[0]))


def colour_strip(cmap: str, width: int = 256, height: int = 12) -> np.ndarray:
    """A horizontal colour bar image (low → high)."""
    ramp = np.tile(np.linspace(0, 1, width)[None, :], (height, 1))
    return colorize(ramp, cmap)


def flat_map_note(exp: Explanation, layer: str, classes: list[str]) -> str | None:
    """What to say when a layer's Grad-CAM is zero everywhere (a flat, uniform overlay)."""
    if float(np.max(exp.maps[layer], initial=0.0)) > 0.0:
        return None
    if exp.versus is not None:
        return (
            f"Nothing at this layer speaks for {classes[exp.target]} over {classes[exp.versus]}: Grad-CAM keeps "
            "only the regions that raise the difference of the two class scores, and here there are none."
        )
    return (
        f"No positive evidence for {classes[exp.target]} at this layer: Grad-CAM keeps only the regions "
        "that raise the class score, and here there are none, so the overlay is flat."
    )


def cam_top(exp: Explanation, layer: str) -> float:
    """The top of a map's colour scale: its maximum at layer resolution, so the overlay, the raw
    map and the shared scale agree whatever the upsampling (smoothing never exceeds it)."""
    return float(exp.maps[layer].max(initial=0.0))


DOWNLOAD_HEIGHT = 640  # downloaded overlays are at least this tall: big enough for a slide


def png(image: np.ndarray) -> bytes:
    """PNG bytes for downloads, enlarged (whole pixels, nothing smoothed) to ``DOWNLOAD_HEIGHT``."""
    return png_bytes(enlarge(image, -(-DOWNLOAD_HEIGHT // image.shape[0])))


def metrics_table(cards: dict, split: str, per_class: bool = False, rule: bool = True) -> pd.DataFrame:
    """One row per model (+ majority-class reference) on ``split``.

    The summary has accuracy, balanced accuracy and macro-F1 with their 95% intervals, the F1 of
    every class and how many images of the rarest class were found; ``per_class`` gives
    precision and recall per class instead. ``rule=False``: the same from plain argmax, without
    the validation-chosen decision rule (no intervals are stored for it).
    """
    rows = []
    ref = None
    for name, card in cards.items():
        m = card.metrics.get(split)
        if m and not rule:
            m = {**m.get("argmax_without_rule", {}), "majority_class_reference": m.get("majority_class_reference")}
        if not m or "per_class" not in m:
            continue
        ref = ref or m.get("majority_class_reference")
        rows.append(_metric_row(get_spec(name).title, m, per_class))
    if ref:
        rows.append(_metric_row("Majority class (reference)", ref, per_class))
    table = pd.DataFrame(rows)
    return table if rule else table.rename(columns=lambda c: c.removesuffix(" [95% CI]"))


def _metric_row(label: str, m: dict, per_class: bool) -> dict:
    if per_class:
        row: dict = {"model": label}
        for cls, pc in m["per_class"].items():
            row[f"{cls} precision"] = pc["precision"]
            row[f"{cls} recall"] = pc["recall"]
        return row
    ci = m.get("ci95") or {}

    def with_interval(key: str) -> str:  # a fixed reference predictor has no interval
        return f"{m[key]:.3f} [{ci[key][0]:.2f}–{ci[key][1]:.2f}]" if key in ci else f"{m[key]:.3f}"

    # the numbers the models are judged by first (a narrow window shows them without scrolling);
    # accuracy last, since on these classes the majority-class predictor already scores 0.93
    row = {
        "model": label,
        "balanced acc. [95% CI]": with_interval("balanced_accuracy"),
        "macro-F1 [95% CI]": with_interval("macro_f1"),
    }
    rare, pc = min(m["per_class"].items(), key=lambda kv: kv[1]["support"])
    row[f"{rare} found"] = f"{round(pc['recall'] * pc['support'])} of {pc['support']}"
    for cls, pc in m["per_class"].items():
        row[f"{cls} F1"] = pc["f1"]
    row["accuracy"] = m["accuracy"]
    return row
