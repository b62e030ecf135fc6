"""Every shipped model's verdict on a photo, the ensemble's, which model validation favours, and whether
they agree, in words (the numbers come from :mod:`core.scoring.calibration` and the model cards)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import streamlit as st

from core.config import weights_dir
from core.models.registry import REGISTRY, get_spec
from core.scoring.calibration import ENSEMBLE_NAME, ENSEMBLE_TITLE, Ensemble, load_ensemble
from pages.ui import resources

NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five"}
CALIBRATED = "calibrated confidence"


def short_title(name: str) -> str:
    """A model's title without its note: "EfficientNet-Lite0", not "… (ImageNet)"; the ensemble's name."""
    return "Ensemble" if name == ENSEMBLE_NAME else get_spec(name).title.split(" (")[0]


@st.cache_data(show_spinner=False, max_entries=4)
def get_ensemble(folder: str) -> Ensemble | None:
    """The ensemble of the weights folder (``weights/ensemble.json``), or None."""
    return load_ensemble(folder)


def ensemble() -> Ensemble | None:
    """The shipped ensemble, when it has one whose members are all loaded with the weights it was built on."""
    ens = get_ensemble(str(weights_dir()))
    if ens is None:
        return None
    for name in ens.members:
        loaded = resources.get_model(name) if name in REGISTRY else None
        if loaded is None or not loaded.ok or list(loaded.card.classes) != ens.classes:
            return None
        sha = ens.member_sha256.get(name)
        if sha and sha != loaded.card.weights.get("sha256"):
            return None
        fitted = ens.doc.get("member_temperatures", {}).get(name)  # averaged with these temperatures
        if fitted is not None and (loaded.served.temperature is None or abs(loaded.served.temperature - fitted) > 1e-6):
            return None
    return ens


def ensemble_or_none() -> Ensemble | None:
    """The ensemble of the weights folder as its file says (for its metrics: no model needs to load)."""
    return get_ensemble(str(weights_dir()))


@st.cache_data(show_spinner=False, max_entries=256)
def predict(model_name: str, digests: tuple[str, ...], _natives: np.ndarray, fast: bool) -> np.ndarray:
    """Calibrated class probabilities of a model for some photos (cached by their digests); ``fast``: the
    batch path (:data:`core.prediction.inference.BATCH_FAST`)."""
    from core.prediction.inference import BATCH_SIZE

    loaded = resources.get_model(model_name)
    assert loaded.served is not None
    return loaded.served.predict(_natives, batch_size=BATCH_SIZE, fast=fast)


def all_probs(digests: tuple[str, ...], natives: np.ndarray, fast: bool = False) -> dict[str, np.ndarray | None]:
    """Every shipped model's calibrated probabilities (N×C; None for an unavailable model), and the
    ensemble's under ``"ensemble"`` when there is one."""
    out: dict[str, np.ndarray | None] = {}
    for name in REGISTRY:
        out[name] = predict(name, digests, natives, fast) if resources.get_model(name).ok else None
    ens = ensemble()
    if ens is not None:
        out[ENSEMBLE_NAME] = ens.combine({m: out[m] for m in ens.members})
    return out


def agreement(verdicts: Mapping[str, str]) -> str:
    """The models' classes in words: "All three say Formal", "EfficientNet-Lite0 says Formal, the other two
    Casual", "Baseline CNN and ResNet50 say Casual, EfficientNet-Lite0 Formal"."""
    groups: dict[str, list[str]] = {}
    for who, cls in verdicts.items():
        groups.setdefault(cls, []).append(who)
    n = len(verdicts)
    if n == 0:
        return "No model could classify this photo"
    if len(groups) == 1:
        cls = next(iter(groups))
        if n == 1:
            return f"{next(iter(verdicts))} says {cls}"
        return f"{'Both' if n == 2 else 'All ' + NUMBERS.get(n, str(n))} say {cls}"
    ordered = sorted(groups.items(), key=lambda kv: -len(kv[1]))  # stable: first seen first among equals
    if len(groups) == 2 and len(ordered[1][1]) == 1 and n > 2:
        (many, _), (few, (lone,)) = ordered
        return f"{lone} says {few}, the other {NUMBERS.get(n - 1, str(n - 1))} {many}"
    parts = []
    for k, (cls, who) in enumerate(ordered):
        names = " and ".join(who) if len(who) <= 2 else ", ".join(who[:-1]) + " and " + who[-1]
        verb = "" if k else (" say" if len(who) > 1 else " says")
        parts.append(f"{names}{verb} {cls}")
    return ", ".join(parts)


def confidence_word() -> str:
    """What the percentages are: "calibrated confidence" when every loaded model has its temperature."""
    loaded = [resources.get_model(n) for n in REGISTRY]
    ok = [m for m in loaded if m.ok]
    return CALIBRATED if ok and all(m.served.calibrated for m in ok) else "confidence (uncalibrated)"


def best_on_validation() -> tuple[str, float] | None:
    """The shipped model with the highest validation balanced accuracy (its card, decision rule applied)."""
    scores = {}
    for name in REGISTRY:
        card = resources.get_card(name)[0]
        m = card.metrics.get("val") if card is not None else None
        if m and "balanced_accuracy" in m:
            scores[name] = float(m["balanced_accuracy"])
    if not scores:
        return None
    best = max(scores, key=scores.__getitem__)
    return best, scores[best]


def sidebar_note() -> None:
    """The sidebar's line on which model to believe."""
    best = best_on_validation()
    if best is None:
        return
    name, score = best
    line = f"Most accurate on validation: **{short_title(name)}** (balanced accuracy {score:.3f})"
    ens = get_ensemble(str(weights_dir()))
    if ens is not None and "val" in ens.metrics:
        line += f"; the ensemble of all three: {ens.metrics['val']['balanced_accuracy']:.3f}"
    st.caption(line + ".")


def verdict_row(probs: Mapping[str, np.ndarray | None], classes: Sequence[str], key: str) -> None:
    """One compact row: every shipped model's class and calibrated confidence, the ensemble's, and
    whether they agree, in words (``probs``: one photo's row per model, as :func:`all_probs` gives)."""
    best = best_on_validation()
    with st.container(key=f"verdicts_{key}", border=True):
        shown = [n for n in probs if n != ENSEMBLE_NAME]
        cols = st.columns(len(shown) + (ENSEMBLE_NAME in probs))
        said: dict[str, str] = {}
        for col, name in zip(cols, [*shown, ENSEMBLE_NAME]):
            p = probs.get(name)
            if name == ENSEMBLE_NAME and p is None:
                continue
            star = " ★" if best and best[0] == name else ""
            if p is None:
                col.markdown(f"**{short_title(name)}**  \nunavailable")
                continue
            k = int(np.argmax(p))
            col.markdown(f"**{short_title(name)}**{star}  \n{classes[k]} · {p[k]:.0%}")
            if name != ENSEMBLE_NAME:
                said[short_title(name)] = classes[k]
        words = agreement(said)
        if ENSEMBLE_NAME in probs and probs[ENSEMBLE_NAME] is not None:
            ens_cls = classes[int(np.argmax(probs[ENSEMBLE_NAME]))]
            words += f"; the ensemble says {ens_cls}"
        st.markdown(f"**{words}.**")
        st.caption(
            (
                f"Percentages are {CALIBRATED} (temperature scaling fitted on validation). "
                if confidence_word() == CALIBRATED
                else "Percentages are uncalibrated confidence (no calibration fitted for these weights). "
            )
            + ("★ most accurate on validation (balanced accuracy). " if best else "")
            + (
                f"{ENSEMBLE_TITLE}: the mean of the calibrated probabilities, with its own decision rule chosen "
                "on validation."
                if probs.get(ENSEMBLE_NAME) is not None
                else ""
            )
        )
