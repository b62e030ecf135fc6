"""Cached resources shared by every session: the loaded models, their cards, Grad-CAM calls."""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.data.catalog import DEFAULT_CLASSES
from core.explanation.gradcam import Explanation
from core.models.registry import REGISTRY
from core.prediction.service import LoadedModel, load_card, load_served


@st.cache_resource(show_spinner=False, max_entries=8)  # warm_models() says so on the page
def get_model(name: str) -> LoadedModel:
    """One loaded model (with its lock) shared by every session."""
    return load_served(name)


def warm_models() -> None:
    """Load every model before the page is drawn, saying so in the main area: the first visit
    after a start (or a cache clear) would otherwise show an empty page for the seconds loading
    takes. On cache hits nothing shows: a spinner appears only after half a second."""
    with st.spinner("Loading the models (the first visit after a start takes a few seconds) …"):
        for name in REGISTRY:
            get_model(name)


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
    assert loaded.served is not None
    return loaded.served.explain(_native, list(layers), target, contrast)
