"""Scoring a whole catalogue: the row every chosen model gives a decoded file (:class:`CatalogueScorer`).

Both engines of ``python -m core.score`` (:mod:`core.scoring.engines`, :mod:`core.scoring.ray_engine`) call the
same two functions: :func:`core.scoring.inputs.decode_item` where the files are read (DataLoader workers, Ray
actors) and :meth:`CatalogueScorer.score` where the models are. Probabilities come from
:meth:`core.prediction.served.ServedModel.predict` on the app's multi-photo path (the fast path, so every
class equals the app's), calibrated where the weights folder holds a calibration (``ServedModel`` applies
it; a temperature never changes a class); the ensemble columns appear where ``weights/ensemble.json``
exists (:func:`ensemble_of`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from core.config import weights_dir as default_weights_dir
from core.prediction.inference import BATCH_FAST, BATCH_SIZE
from core.prediction.served import ServedModel
from core.scoring.inputs import BLANK, Decoded

log = logging.getLogger(__name__)

# ---- the models' rows
ENSEMBLE_FILE = "ensemble.json"


def ensemble_of(weights: Path) -> object | None:
    """The ensemble of the weights folder where ``ensemble.json`` exists (:mod:`core.scoring.calibration`'s
    ``load_ensemble``: ``.members``, ``.combine(calibrated member probabilities) → probabilities``), else None."""
    if not (weights / ENSEMBLE_FILE).is_file():
        return None
    try:
        from core.scoring.calibration import load_ensemble
    except ImportError:  # pragma: no cover - an install without the calibration module
        log.warning("%s exists but core.scoring.calibration is missing: no ensemble column", ENSEMBLE_FILE)
        return None
    return load_ensemble(weights)


def class_slug(name: str) -> str:
    """A class name as a column suffix: ``Smart Casual`` → ``smart_casual``."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


class CatalogueScorer:
    """The chosen models (and the ensemble, where one exists), loaded once, turning decoded files into rows.

    ``fast`` (default: the app's table's setting) predicts on the folded bfloat16 copy with fp32 re-checks of
    near ties, in chunks of the app's ``BATCH_SIZE``: the classes are the app's. ``compile``: build the
    compiled graph before the first batch (``wait_compiled``), so one graph serves the whole run. ``ensemble``:
    False leaves the ensemble column out, and with it the members that were not chosen (no model runs that
    was not asked for).
    """

    def __init__(
        self,
        names: Sequence[str],
        weights: Path | None = None,
        fast: bool = BATCH_FAST,
        compile_wait: float | None = None,
        overlays: Path | None = None,
        ensemble: bool = True,
    ) -> None:
        self.weights = Path(weights) if weights is not None else default_weights_dir()
        self.names = list(names)
        self.ensemble = ensemble_of(self.weights) if ensemble else None
        members = self.ensemble.members if self.ensemble else []
        self.models = {n: ServedModel.load(n, self.weights) for n in dict.fromkeys([*self.names, *members])}
        classes = {tuple(m.classes) for m in self.models.values()}
        if len(classes) != 1:
            raise ValueError(f"the models do not share one list of classes: {sorted(classes)}")
        self.classes = list(classes.pop())
        self.fast = fast
        self.overlays = Path(overlays) if overlays is not None else None
        if fast and compile_wait is not None:
            for m in self.models.values():
                m.fast_predictor.wait_compiled(compile_wait)

    def signature(self) -> dict:
        """What a row depends on: a resumed run must have the same (checked by :mod:`core.scoring.parts`)."""
        return {
            "models": {n: self.models[n].card.weights["sha256"] for n in self.names},
            "classes": self.classes,
            "fast": self.fast,
            "calibrated": {n: bool(getattr(self.models[n], "calibrated", False)) for n in self.names},
            "ensemble": None if self.ensemble is None else _file_digest(self.weights / ENSEMBLE_FILE),
            "overlays": None if self.overlays is None else str(self.overlays),
        }

    def schema(self) -> pa.Schema:
        """The output's columns, in order."""
        fields = [pa.field(c, pa.string()) for c in ("id", "path", "error", "framing", "framing_note", "notes")]
        for prefix in [*self.names, *(["ensemble"] if self.ensemble else [])]:
            fields.append(pa.field(f"{prefix}_class", pa.string()))
            fields += [pa.field(f"{prefix}_p_{class_slug(c)}", pa.float64()) for c in self.classes]
        fields += [pa.field("agreement", pa.bool_()), pa.field("overlay", pa.string())]
        return pa.schema(fields)

    def probabilities(self, name: str, natives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model ``name``'s class indices and probabilities: :meth:`ServedModel.predict` exactly as the app's
        multi-photo table calls it (its decision rule, its calibration where one exists)."""
        probs = self.models[name].predict(natives, batch_size=BATCH_SIZE, fast=self.fast)
        return probs.argmax(1), probs

    def score(self, batch: Sequence[Decoded]) -> pa.Table:
        """One row per decoded file, in order; a file that failed has its error and no classes."""
        ok = [i for i, d in enumerate(batch) if d.native is not None]
        natives = np.stack([batch[i].native for i in ok]) if ok else np.zeros((0, *BLANK.shape), np.uint8)
        cols: dict[str, list] = {
            "id": [d.id for d in batch],
            "path": [d.path for d in batch],
            "error": [d.error for d in batch],
            "framing": [d.framing for d in batch],
            "framing_note": [d.framing_note if d.error is None else None for d in batch],
            "notes": [d.notes if d.error is None else None for d in batch],
        }
        scored = {n: self.probabilities(n, natives) for n in self.models} if ok else {}
        chosen_by = {}
        for name in self.names:
            chosen_by[name] = self._model_columns(cols, name, len(batch), ok, *scored.get(name, (None, None)))
        if self.ensemble is not None:
            probs = self.ensemble.combine({n: p for n, (_, p) in scored.items()}) if ok else None
            self._model_columns(cols, "ensemble", len(batch), ok, None if probs is None else probs.argmax(1), probs)
        agree = [None] * len(batch)
        for k, i in enumerate(ok):
            agree[i] = len({int(chosen_by[n][k]) for n in self.names}) == 1
        cols["agreement"] = agree
        cols["overlay"] = self._overlays(batch, ok, natives) if self.overlays and ok else [None] * len(batch)
        return pa.Table.from_pydict(cols, schema=self.schema())

    def _model_columns(
        self,
        cols: dict[str, list],
        prefix: str,
        n: int,
        ok: list[int],
        chosen: np.ndarray | None,
        probs: np.ndarray | None,
    ) -> np.ndarray:
        classes = [None] * n
        per_class = {c: [None] * n for c in self.classes}
        for k, i in enumerate(ok):
            classes[i] = self.classes[int(chosen[k])]
            for j, c in enumerate(self.classes):
                per_class[c][i] = float(probs[k, j])
        cols[f"{prefix}_class"] = classes
        for c in self.classes:
            cols[f"{prefix}_p_{class_slug(c)}"] = per_class[c]
        return chosen if chosen is not None else np.zeros(0, np.int64)

    def _overlays(self, batch: Sequence[Decoded], ok: list[int], natives: np.ndarray) -> list[str | None]:
        """One PNG per image: each chosen model's Grad-CAM (its default layer, its predicted class) side by side."""
        from core.explanation.overlay import cam_overlay, png_bytes

        self.overlays.mkdir(parents=True, exist_ok=True)
        per_model = {n: self.models[n].explain_many(natives) for n in self.names}
        out: list[str | None] = [None] * len(batch)
        for k, i in enumerate(ok):
            panels = []
            for n in self.names:
                ex = per_model[n][k]
                panels.append(cam_overlay(next(iter(ex.maps.values())), ex.model_input, height=320))
            height = max(p.shape[0] for p in panels)
            panels = [np.pad(p, ((0, height - p.shape[0]), (0, 4), (0, 0)), constant_values=255) for p in panels]
            path = self.overlays / overlay_name(batch[i].id)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(png_bytes(np.concatenate(panels, axis=1)))
            tmp.replace(path)
            out[i] = str(path)
        return out


def overlay_name(item_id: str) -> str:
    """The overlay file of an id: readable, and unique (``a/b.jpg`` and ``a_b.jpg`` differ by the hash)."""
    safe = re.sub(r"[^0-9A-Za-z._-]+", "_", item_id)[-80:]
    return f"{safe}-{hashlib.sha1(item_id.encode()).hexdigest()[:8]}.png"


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
