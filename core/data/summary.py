"""Dataset loading in the Kaggle *Fashion Product Images* layout, duplicate-aware split.

Layout: DIR/styles.csv and DIR/images/<id>.jpg. Run

    python -m core.data --data DIR

to print the class counts per split, the skipped rows by reason, and how many validation
and test images show a product that training has (same name up to colour words).
"""

# The command behind ``python -m core.data`` (core/data/__main__.py); the docstring above is its --help.
from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from core.config import DATA_ENV_VAR, DEFAULT_SPLIT_FILE, find_default_data_dir
from core.data.catalog import DEFAULT_CLASSES, DEFAULT_LABEL_COLUMN, Catalog, load_styles
from core.data.products import twins_in_train
from core.data.split import SPLITS, get_or_make_split, make_split, split_fingerprint


def describe(catalog: Catalog, split: dict[str, list[int]]) -> str:
    """A plain-text report: class counts per split, skipped rows by reason, and how many
    validation and test images show a product that training has (same class)."""
    lines = [f"data: {catalog.root}", f"label column: {catalog.label_column}"]
    lines.append(f"rows recovered (commas in the last column): {catalog.recovered_rows}")
    width = max(len(c) for c in catalog.classes) + 2
    lines.append("class".ljust(width) + "".join(s.rjust(8) for s in (*SPLITS, "total")))
    for name in catalog.classes:
        per = [catalog.counts(split[s])[name] for s in SPLITS]
        lines.append(name.ljust(width) + "".join(f"{n:8d}" for n in (*per, sum(per))))
    tot = [len(split[s]) for s in SPLITS]
    lines.append("total".ljust(width) + "".join(f"{n:8d}" for n in (*tot, sum(tot))))
    lines.append(f"usable rows with an image: {len(catalog.ids)}")
    lines.append("skipped rows by reason:")
    for reason, n in sorted(catalog.skipped.items()):
        lines.append(f"  {reason}: {n}")
    lines.append(f"split fingerprint: {split_fingerprint(split)}")
    lines.append("images whose product (name without colour words) is in train with the same class:")
    twins = twins_in_train(catalog, split)
    lines.append("class".ljust(width) + "".join(s.rjust(14) for s in twins))
    for name in catalog.classes:
        cells = (f"{twins[s][name][0]} of {twins[s][name][1]}" for s in twins)
        lines.append(name.ljust(width) + "".join(c.rjust(14) for c in cells))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: print class counts per split, skipped rows and shared products."""
    p = argparse.ArgumentParser(
        prog="python -m core.data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", type=Path, default=None, help="dataset folder (Kaggle layout; default: auto-detect)")
    p.add_argument("--label-column", default=DEFAULT_LABEL_COLUMN, help="styles.csv column to count (usage)")
    p.add_argument("--classes", nargs="+", default=list(DEFAULT_CLASSES), help="class names, in order")
    p.add_argument(
        "--split-file", type=Path, default=DEFAULT_SPLIT_FILE, help="saved split; made there if absent (weights/)"
    )
    p.add_argument("--seed", type=int, default=42, help="seed of a split made here (42)")
    p.add_argument("--new-split", action="store_true", help="make a fresh split instead of the saved one")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = args.data or find_default_data_dir()
    if data is None:
        p.error(f"no --data given and no dataset found (set ${DATA_ENV_VAR})")
    catalog = load_styles(data, args.classes, args.label_column)
    if args.new_split:
        split = make_split(catalog, seed=args.seed)
    else:
        split = get_or_make_split(catalog, args.split_file, args.seed)
    print(describe(catalog, split))  # noqa: T201 - CLI output
    return 0
