"""The duplicate-aware train/val/test split: made once, saved (``weights/split.json``), fingerprinted
in model cards, and found again by fingerprint."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from core.config import DEFAULT_SPLIT_FILE
from core.data.catalog import Catalog

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_FRACTIONS: tuple[float, float, float] = (0.70, 0.15, 0.15)


def _file_digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def duplicate_groups(catalog: Catalog) -> dict[int, str]:
    """Map each id to the sha1 of its image bytes; byte-identical images share a key."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        digests = list(pool.map(_file_digest, (catalog.image_path(i) for i in catalog.ids)))
    return dict(zip(catalog.ids, digests))


def make_split(
    catalog: Catalog,
    seed: int = 42,
    fractions: Sequence[float] = SPLIT_FRACTIONS,
    groups: dict[int, str] | None = None,
) -> dict[str, list[int]]:
    """Stratified train/val/test split that keeps byte-identical images together.

    Groups of identical images are the unit: each group goes whole to one split. Groups
    are stratified by their majority label, shuffled with ``seed``, and filled into the
    splits class by class so each split gets its fraction of every class's images.
    """
    if groups is None:
        groups = duplicate_groups(catalog)
    members: dict[str, list[int]] = defaultdict(list)
    for pid in catalog.ids:
        members[groups[pid]].append(pid)
    label_of = catalog.label_of()
    by_class: dict[int, list[str]] = defaultdict(list)
    for key in sorted(members):
        majority = Counter(label_of[i] for i in members[key]).most_common(1)[0][0]
        by_class[majority].append(key)
    rng = np.random.default_rng(seed)
    split: dict[str, list[int]] = {s: [] for s in SPLITS}
    cum = np.cumsum(fractions)
    for cls in sorted(by_class):
        keys = by_class[cls]
        rng.shuffle(keys)
        total = sum(len(members[k]) for k in keys)
        taken = 0
        for key in keys:
            # assign by the position of the group's midpoint in the class's image count
            mid = (taken + len(members[key]) / 2) / total
            which = int(np.searchsorted(cum, mid, side="right"))
            split[SPLITS[min(which, len(SPLITS) - 1)]].extend(members[key])
            taken += len(members[key])
    return {s: sorted(v) for s, v in split.items()}


def split_fingerprint(split: dict[str, list[int]]) -> str:
    """A short sha256 of the id lists, recorded in model cards."""
    payload = json.dumps({s: sorted(int(i) for i in split[s]) for s in SPLITS}, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def save_split(split: dict[str, list[int]], path: Path, meta: dict | None = None) -> None:
    """Write the split as lists of ids per split (plus metadata and fingerprint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"fingerprint": split_fingerprint(split), "meta": meta or {}}
    doc.update({s: split[s] for s in SPLITS})
    path.write_text(json.dumps(doc, separators=(",", ":")))


def load_split(path: Path) -> dict[str, list[int]]:
    """Read a split written by :func:`save_split`."""
    doc = json.loads(Path(path).read_text())
    return {s: [int(i) for i in doc[s]] for s in SPLITS}


def find_split(
    fingerprints: Iterable[str], candidates: Iterable[Path], ids: Iterable[int] | None = None
) -> dict[str, list[int]] | None:
    """The split saved in the first existing candidate file whose id lists have one of
    ``fingerprints``, whole or restricted to ``ids`` (a model card fingerprints the split as
    restricted to its data copy); None when no candidate has."""
    wanted = set(fingerprints)
    have = None if ids is None else set(ids)
    for path in dict.fromkeys(Path(c) for c in candidates):
        if not path.is_file():
            continue
        saved = load_split(path)
        found = {split_fingerprint(saved)}
        if have is not None:
            found.add(split_fingerprint({s: [i for i in saved[s] if i in have] for s in SPLITS}))
        if wanted & found:
            return saved
    return None


def get_or_make_split(catalog: Catalog, split_file: Path = DEFAULT_SPLIT_FILE, seed: int = 42) -> dict[str, list[int]]:
    """The saved split restricted to this catalog's ids; made and saved if the file is absent.

    Ids of the saved split that this copy of the data lacks are dropped; usable ids that the
    saved split does not know are left out (logged), so that no image leaks between splits.
    """
    split_file = Path(split_file)
    if split_file.is_file():
        meta = json.loads(split_file.read_text()).get("meta", {})
        if meta.get("label_column", catalog.label_column) != catalog.label_column or list(
            meta.get("classes", catalog.classes)
        ) != list(catalog.classes):
            log.warning(
                "%s was made for %s %s; making a fresh split for %s %s (pass --split-file to save one)",
                split_file,
                meta.get("label_column"),
                meta.get("classes"),
                catalog.label_column,
                list(catalog.classes),
            )
            return make_split(catalog, seed=seed)
        saved = load_split(split_file)
        have = set(catalog.ids)
        split = {s: [i for i in saved[s] if i in have] for s in SPLITS}
        unknown = have - set().union(*map(set, saved.values()))
        if unknown:
            log.warning("%d usable ids are not in %s and are left out", len(unknown), split_file)
        return split
    split = make_split(catalog, seed=seed)
    meta = {
        "seed": seed,
        "fractions": list(SPLIT_FRACTIONS),
        "classes": list(catalog.classes),
        "label_column": catalog.label_column,
        "grouping": "sha1 of image bytes; a group of identical images stays in one split",
    }
    save_split(split, split_file, meta)
    log.info("wrote new split to %s", split_file)
    return split
