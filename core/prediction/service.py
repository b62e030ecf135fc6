"""What the app asks of the core to load, without Streamlit: models and cards, never raising for bad or
missing weights (uploads are read by :mod:`core.images.upload`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from core.models.card import ModelCard, WeightsError, model_files
from core.prediction.served import ServedModel

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A usable model (served model + card) or the reason it is disabled."""

    name: str
    served: ServedModel | None = None
    card: ModelCard | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the model can be used."""
        return self.served is not None


def load_served(name: str, weights_dir: Path | None = None) -> LoadedModel:
    """Load one registry model for the app; never raises for bad or missing weights."""
    try:
        served = ServedModel.load(name, weights_dir)
    except WeightsError as exc:
        log.warning("model %s disabled: %s", name, exc)
        return LoadedModel(name, error=str(exc))
    except Exception as exc:  # a broken install must not take the app down
        log.exception("model %s failed to load", name)
        return LoadedModel(name, error=f"could not be loaded ({exc.__class__.__name__})")
    return LoadedModel(name, served, served.card)


def load_card(name: str, weights_dir: Path | None = None) -> tuple[ModelCard | None, str | None]:
    """A model card, or the message saying why it is unavailable."""
    try:
        return ModelCard.load(model_files(name, weights_dir)[1]), None
    except WeightsError as exc:
        return None, str(exc)
