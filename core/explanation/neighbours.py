"""Explanation by example: the training images nearest to a photo in a model's own embedding.

The embedding is the input of the model's last ``nn.Linear`` (the classification layer of the head): the
256 features the dense head ends with for ResNet50 and EfficientNet-Lite0, the 128 of the baseline's dense
layer, computed on the model's fast path (bfloat16 backbone, fp32 head; :meth:`ServedModel.embeddings`).
:class:`NeighbourIndex` holds the training split's embeddings as unit vectors and searches them with
scikit-learn's ``NearestNeighbors`` (brute force; on unit vectors the Euclidean order is the cosine order). An index
is built once per model and cached on disk under ``core.config.cache_dir()``, keyed by the weights' sha256
(from the model card), the training ids and the dataset folder: other weights or another split build a new one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sklearn.neighbors import NearestNeighbors

from core.config import cache_dir
from core.images.framing import DEFAULT_PARAMS as DEFAULT_FRAMING
from core.images.framing import FRAMING_VERSION
from core.prediction.inference import DEFAULT_BATCH

if TYPE_CHECKING:
    from core.data.catalog import Catalog
    from core.prediction.served import ServedModel

log = logging.getLogger(__name__)

INDEX_VERSION = 2  # bump when the embedding or the file's layout changes (2: the fast path, unit vectors)
K = 6  # neighbours shown per photo


def embed(served: ServedModel, images: np.ndarray, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """Penultimate embeddings (float32 ``N×D``) of uint8 ``N×H×W×3`` native images, on the model's fast path
    (:meth:`ServedModel.embeddings`): the index and every query are embedded the same way."""
    return served.embeddings(images, batch_size, fast=True)


def unit(vectors: np.ndarray) -> np.ndarray:
    """float32 rows scaled to length 1 (a zero row stays zero)."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"vectors must be N×D, not of shape {v.shape}")
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms > 0, norms, 1.0)


@dataclass
class Neighbours:
    """The nearest training images of one photo, nearest first."""

    ids: list[int]
    labels: list[int]  # class indices
    distances: list[float]  # cosine distances (0: same direction)


class NeighbourIndex:
    """Training images' embeddings with their ids and labels, searched by cosine distance."""

    def __init__(
        self, ids: Sequence[int], labels: Sequence[int], vectors: np.ndarray, normalised: bool = False
    ) -> None:
        self.ids = np.asarray(ids, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.vectors = np.asarray(vectors, dtype=np.float32) if normalised else unit(vectors)
        if not (len(self.ids) == len(self.labels) == len(self.vectors)):
            raise ValueError("ids, labels and vectors differ in length")
        has_direction = self.vectors.any(axis=1) if self.vectors.ndim == 2 else np.ones(0, bool)
        if not has_direction.all():  # an all-zero embedding (every ReLU off) has no cosine to anything: left out
            self.ids, self.labels, self.vectors = (
                self.ids[has_direction],
                self.labels[has_direction],
                self.vectors[has_direction],
            )
        # on unit vectors the Euclidean order is the cosine order (|a − b|² = 2 − 2 cos), and scikit-learn's
        # brute-force Euclidean search is one matrix product: a few ms for 23k × 256 where its cosine metric
        # normalises the whole index again on every query
        self._nn = NearestNeighbors(metric="euclidean", algorithm="brute").fit(self.vectors) if len(self.ids) else None

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, vectors: np.ndarray, k: int = K) -> list[Neighbours]:
        """The ``k`` nearest indexed images of each embedding, nearest first (none for an all-zero embedding:
        it has no direction to compare)."""
        queries = unit(vectors)
        if self._nn is None:
            return [Neighbours([], [], []) for _ in range(len(queries))]
        dist, idx = self._nn.kneighbors(queries, n_neighbors=min(k, len(self)))
        dist = dist**2 / 2  # cosine distance
        return [
            Neighbours([int(i) for i in self.ids[row]], [int(c) for c in self.labels[row]], [float(x) for x in d])
            if q.any()
            else Neighbours([], [], [])
            for q, d, row in zip(queries, dist, idx)
        ]

    def nearest(self, served: ServedModel, images: np.ndarray, k: int = K) -> list[Neighbours]:
        """:meth:`search` for native images, embedded by ``served``."""
        return self.search(embed(served, images), k)

    def save(self, path: Path) -> None:
        """Write as ``.npz`` (atomically: a reader never sees half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}-{threading.get_ident()}.tmp.npz")
        np.savez(tmp, ids=self.ids, labels=self.labels, vectors=self.vectors)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> NeighbourIndex:
        """Read a file written by :meth:`save`."""
        with np.load(path) as doc:
            return cls(doc["ids"], doc["labels"], doc["vectors"], normalised=True)


def weights_sha(served: ServedModel) -> str:
    """The weights' sha256 from the model card; without a card, a digest of the weights themselves."""
    sha = (served.card.weights or {}).get("sha256") if served.card is not None else None
    if sha:
        return str(sha)
    h = hashlib.sha256()
    for name, tensor in served.model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def index_path(served: ServedModel, catalog: Catalog, train_ids: Sequence[int]) -> Path:
    """Where the index of ``served`` over ``train_ids`` is cached: keyed by the weights' sha256, the ids, the
    dataset folder, the framing step, the fast copy's precision (and the index version)."""
    ids = sorted(int(i) for i in train_ids)
    framing = [FRAMING_VERSION, DEFAULT_FRAMING.to_dict()]  # the training images are embedded as framed
    precision = str(served.fast_dtype)  # the fast path's copy embeds them
    key = json.dumps([weights_sha(served), str(Path(catalog.root).resolve()), ids, INDEX_VERSION, framing, precision])
    return cache_dir() / f"neighbours-{served.spec.name}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"


def build_index(
    served: ServedModel, catalog: Catalog, train_ids: Sequence[int], use_cache: bool = True
) -> tuple[NeighbourIndex, dict[str, float | bool]]:
    """The neighbour index of ``served`` over the training images ``train_ids`` (read from the disk cache
    when there is one), with how it was obtained: ``{"cached": bool, "seconds": float}``."""
    from core.data.cache import load_native_images

    path = index_path(served, catalog, train_ids)
    start = time.perf_counter()
    if use_cache and path.is_file():
        try:
            index = NeighbourIndex.load(path)
            return index, {"cached": True, "seconds": time.perf_counter() - start}
        except (OSError, ValueError, KeyError) as exc:
            log.warning("neighbour index %s unreadable (%r); building it again", path.name, exc)
    ids = [int(i) for i in train_ids]
    label_of = catalog.label_of()
    unreadable: list[int] = []
    images = load_native_images(catalog, ids, unreadable=unreadable)
    bad = set(unreadable)
    keep = [k for k, i in enumerate(ids) if i not in bad]
    vectors = embed(served, images[keep])
    index = NeighbourIndex([ids[k] for k in keep], [label_of[ids[k]] for k in keep], vectors)
    if use_cache:
        try:
            index.save(path)
        except OSError as exc:
            log.warning("could not write neighbour index %s: %s", path, exc)
    seconds = time.perf_counter() - start
    log.info("%s: neighbour index of %d training images built in %.1f s", served.spec.name, len(index), seconds)
    return index, {"cached": False, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    """``python -m core.explanation.neighbours [--models NAME …]``: build (or find) every model's index over
    the saved split's training images of the dataset found (``core.config.find_default_data_dir``), so that
    the app's first "Similar training products" does not wait for it (ResNet50: minutes on 2 cores)."""
    import argparse

    from core.config import find_default_data_dir
    from core.data.catalog import load_styles
    from core.data.split import get_or_make_split
    from core.models.registry import REGISTRY
    from core.prediction.service import load_served

    ap = argparse.ArgumentParser(prog="python -m core.explanation.neighbours", description=main.__doc__)
    ap.add_argument("--models", nargs="+", choices=list(REGISTRY), default=list(REGISTRY))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = find_default_data_dir()
    if root is None:
        ap.error("no dataset found (set DRESSCODE_DATA)")
    catalog = load_styles(root)
    train = get_or_make_split(catalog)["train"]
    for name in args.models:
        loaded = load_served(name)
        if loaded.served is None:
            log.warning("%s left out: %s", name, loaded.error)
            continue
        index, how = build_index(loaded.served, catalog, train)
        log.info("%s: %d images, %s in %.1f s", name, len(index), "read" if how["cached"] else "built", how["seconds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
