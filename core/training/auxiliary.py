"""An auxiliary head for training only: a second ``styles.csv`` column (``articleType``: the product's type)
predicted from the backbone's pooled features beside the dress code, so that the backbone learns what the
product is (a watch or a perfume is almost never Formal; a formal shoe almost always is).

The head is a linear layer on the globally averaged feature map. It is trained with the model and dropped
when the weights are saved: the served model, its Grad-CAM layers and every path that predicts are unchanged.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.data.catalog import Catalog
from core.models.networks import DressCodeNet

log = logging.getLogger(__name__)

IGNORE = -100  # the label of an image whose type is too rare (or missing) to learn: it adds no loss


def auxiliary_labels(catalog: Catalog, ids: Sequence[int], column: str, min_count: int) -> tuple[np.ndarray, list[str]]:
    """One label per id from ``column`` of ``styles.csv``: the index of its value among the values with at least
    ``min_count`` of these ids (sorted by name), ``IGNORE`` for rarer or empty ones. Returns labels and names."""
    if ids and column not in catalog.rows[int(ids[0])]:
        raise ValueError(f"styles.csv has no column {column!r}")
    values = [catalog.rows[int(i)].get(column, "").strip() for i in ids]
    counts = Counter(v for v in values if v)
    names = sorted(v for v, n in counts.items() if n >= min_count)
    if len(names) < 2:
        raise ValueError(f"{column!r}: fewer than two values with at least {min_count} training images")
    index = {v: k for k, v in enumerate(names)}
    labels = np.array([index.get(v, IGNORE) for v in values], dtype=np.int64)
    log.info(
        "auxiliary %s: %d values with >= %d training images; %d images (%.1f%%) of rarer ones add no loss",
        column,
        len(names),
        min_count,
        int((labels == IGNORE).sum()),
        100 * float((labels == IGNORE).mean()),
    )
    return labels, names


class WithAuxiliary(nn.Module):
    """The model and its auxiliary head: ``forward`` returns (dress-code logits, auxiliary logits)."""

    def __init__(self, model: DressCodeNet, n_aux: int, native_hw: tuple[int, int]) -> None:
        super().__init__()
        self.model = model
        with torch.no_grad():  # the backbone's channel count, whatever the architecture
            was_training = model.training
            model.eval()
            probe = torch.zeros(1, 3, *native_hw)
            channels = model.backbone(model.adapter(probe)).shape[1]
            model.train(was_training)
        self.head = nn.Linear(channels, n_aux)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.backbone(self.model.adapter(x))
        return self.model.head(features), self.head(features.mean(dim=(2, 3)))


@dataclass
class Auxiliary:
    """What the epoch loop needs for the auxiliary loss: the joint module, the training images' labels
    (aligned with the training images) and the loss weight."""

    net: WithAuxiliary
    labels: np.ndarray
    names: list[str]
    column: str
    weight: float

    def loss(self, logits: torch.Tensor, idx: np.ndarray, perm: torch.Tensor | None, lam: float) -> torch.Tensor:
        """Weighted cross-entropy on the drawn images' types (mixed like the main loss under mixup)."""
        y = torch.from_numpy(self.labels[idx]).long()
        if (y == IGNORE).all():
            return logits.sum() * 0.0
        loss = F.cross_entropy(logits.float(), y, ignore_index=IGNORE)
        if perm is not None:  # a permutation ignores the same images: not all of them (checked above)
            loss = lam * loss + (1 - lam) * F.cross_entropy(logits.float(), y[perm], ignore_index=IGNORE)
        return self.weight * loss

    def record(self, min_count: int) -> dict:
        """What the card says about it."""
        return {
            "column": self.column,
            "weight": self.weight,
            "min_count": min_count,
            "n_values": len(self.names),
            "values": self.names,
            "ignored_training_images": int((self.labels == IGNORE).sum()),
            "shipped": False,  # dropped at save time: the served model is the dress-code model alone
        }
