"""The dataset's index: the usable rows of ``styles.csv`` in the Kaggle *Fashion Product Images* layout
(DIR/styles.csv and DIR/images/<id>.jpg), one per product with an image and a known class."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_CLASSES: tuple[str, ...] = ("Casual", "Formal", "Smart Casual")
DEFAULT_LABEL_COLUMN = "usage"
_N_FIELDS = 10  # columns of styles.csv; the last one (productDisplayName) may hold commas


@dataclass
class Catalog:
    """Usable rows of ``styles.csv``: one entry per product with an image and a known class."""

    root: Path
    classes: tuple[str, ...]
    label_column: str
    ids: list[int]
    labels: list[int]  # index into ``classes``
    rows: dict[int, dict[str, str]]  # every usable row's fields, for auxiliary labels
    skipped: dict[str, int] = field(default_factory=dict)
    recovered_rows: int = 0

    def image_path(self, product_id: int) -> Path:
        """Path of one product's image."""
        return self.root / "images" / f"{product_id}.jpg"

    def counts(self, ids: Sequence[int] | None = None) -> dict[str, int]:
        """Class counts over ``ids`` (default: all usable rows)."""
        label_of = dict(zip(self.ids, self.labels))
        chosen = self.ids if ids is None else ids
        c = Counter(label_of[i] for i in chosen)
        return {name: c.get(k, 0) for k, name in enumerate(self.classes)}

    def label_of(self) -> dict[int, int]:
        """Mapping id → class index."""
        return dict(zip(self.ids, self.labels))


def read_styles(csv_path: Path) -> tuple[list[dict[str, str]], int]:
    """Read ``styles.csv``; rows with commas in the last column are joined back, not dropped.

    Returns the rows (dicts by header name) and how many rows were recovered.
    """
    rows: list[dict[str, str]] = []
    recovered = 0
    with open(csv_path, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader)]
        n = len(header)
        for fields in reader:
            if not fields:
                continue
            if len(fields) > n:
                fields = fields[: n - 1] + [",".join(fields[n - 1 :])]
                recovered += 1
            elif len(fields) < n:
                fields = fields + [""] * (n - len(fields))
            rows.append(dict(zip(header, fields)))
    return rows, recovered


def load_styles(
    root: str | Path,
    classes: Sequence[str] = DEFAULT_CLASSES,
    label_column: str = DEFAULT_LABEL_COLUMN,
) -> Catalog:
    """Load the usable rows: label in ``classes`` and an image file present.

    Skipped rows are counted by reason: ``empty_label``, ``other_label``, ``no_image``,
    ``bad_id``.
    """
    root = Path(root)
    csv_path = root / "styles.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"no styles.csv in {root} (expected the Kaggle layout)")
    rows, recovered = read_styles(csv_path)
    if rows and label_column not in rows[0]:
        raise KeyError(f"column {label_column!r} not in styles.csv (have {sorted(rows[0])})")
    class_index = {c: k for k, c in enumerate(classes)}
    existing = {p.name for p in (root / "images").iterdir()} if (root / "images").is_dir() else set()
    skipped: Counter[str] = Counter()
    ids: list[int] = []
    labels: list[int] = []
    kept: dict[int, dict[str, str]] = {}
    for row in rows:
        raw_id = row.get("id", "").strip()
        label = row.get(label_column, "").strip()
        if not raw_id.isdigit():
            skipped["bad_id"] += 1
            continue
        if label in ("", "NA", "nan"):
            skipped["empty_label"] += 1
            continue
        if label not in class_index:
            skipped["other_label"] += 1
            continue
        if f"{int(raw_id)}.jpg" not in existing:
            skipped["no_image"] += 1
            continue
        pid = int(raw_id)
        if pid in kept:
            skipped["duplicate_id"] += 1
            continue
        ids.append(pid)
        labels.append(class_index[label])
        kept[pid] = row
    log.info("loaded %d usable rows from %s; skipped %s", len(ids), csv_path, dict(skipped))
    return Catalog(root, tuple(classes), label_column, ids, labels, kept, dict(skipped), recovered)
