"""Products that training shares with validation and test: images of one product (the same name up to
colour words) in two splits, which make a score partly measure recognising products seen in training."""

from __future__ import annotations

import re
from collections.abc import Sequence

from core.data.catalog import Catalog
from core.data.split import SPLITS

# words that name a colour in product names; the ``baseColour`` column's words are added
_COLOUR_WORDS = frozenset(
    "black white grey gray red blue green yellow orange pink purple brown beige cream navy maroon silver "
    "gold olive teal khaki charcoal multi off light dark".split()
)


def product_keys(catalog: Catalog) -> dict[int, str]:
    """Map each id to its product: the display name in lower case without colour words.

    Colour variants of one product ("Highlander Men Red Striped Shirt", "… White Striped
    Shirt") share a key. Colour words are the ``baseColour`` column's plus common ones
    (and "light", "dark", "off", "multi"). Rows without a name get a key of their own.
    """
    words = set(_COLOUR_WORDS)
    for row in catalog.rows.values():
        words.update(row.get("baseColour", "").lower().split())
    keys = {}
    for pid in catalog.ids:
        tokens = re.findall(r"[a-z0-9]+", catalog.rows[pid].get("productDisplayName", "").lower())
        kept = [t for t in tokens if t not in words]
        keys[pid] = " ".join(kept) if kept else f"#{pid}"
    return keys


def products_in_train(
    catalog: Catalog, train_ids: Sequence[int], ids: Sequence[int], keys: dict[int, str] | None = None
) -> set[int]:
    """The ``ids`` whose product (see :func:`product_keys`) has a same-class image among ``train_ids``."""
    keys = product_keys(catalog) if keys is None else keys
    label_of = catalog.label_of()
    seen = {(keys[i], label_of[i]) for i in train_ids}
    return {i for i in ids if (keys[i], label_of[i]) in seen}


def twins_in_train(
    catalog: Catalog, split: dict[str, list[int]], keys: dict[int, str] | None = None
) -> dict[str, dict[str, tuple[int, int]]]:
    """Per evaluation split and class: (images whose product has a same-class training image, images).

    A high share means that split's score for that class partly measures recognising
    products seen in training rather than recognising the class on new products.
    """
    keys = product_keys(catalog) if keys is None else keys
    label_of = catalog.label_of()
    known = products_in_train(catalog, split["train"], [i for s in SPLITS[1:] for i in split[s]], keys)
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for s in SPLITS[1:]:
        out[s] = {}
        for k, name in enumerate(catalog.classes):
            members = [i for i in split[s] if label_of[i] == k]
            out[s][name] = (sum(i in known for i in members), len(members))
    return out


def val_twins_in_train(
    catalog: Catalog, split: dict[str, list[int]], classes: Sequence[str], keys: dict[int, str] | None = None
) -> list[int]:
    """Training ids of ``classes`` whose product also appears, with the same class, in validation.

    Leaving them out of training makes validation score those classes on unseen products.
    """
    unknown = set(classes) - set(catalog.classes)
    if unknown:
        raise ValueError(f"unknown classes {sorted(unknown)}; have {list(catalog.classes)}")
    keys = product_keys(catalog) if keys is None else keys
    label_of = catalog.label_of()
    chosen = {catalog.classes.index(c) for c in classes}
    in_val = {(keys[i], label_of[i]) for i in split["val"] if label_of[i] in chosen}
    return sorted(i for i in split["train"] if (keys[i], label_of[i]) in in_val)
