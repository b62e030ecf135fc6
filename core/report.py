"""Markdown table of the shipped models' metrics (from their cards), for the README.

python -m core.report [--split test]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from core.models.card import ModelCard, WeightsError
from core.models.registry import REGISTRY


def metrics_markdown(split: str = "test") -> str:
    """One row per shipped model plus the majority-class predictor, on ``split``."""
    head = (
        "| model | init | accuracy | balanced acc. [95% CI] | macro-F1 [95% CI] | Casual F1 | Formal F1 "
        "| Smart Casual F1 | Smart Casual found |\n|---|---|---|---|---|---|---|---|---|"
    )
    rows, ref = [head], None
    for name, spec in REGISTRY.items():
        try:
            card = ModelCard.load(spec.card_file)
        except WeightsError:
            continue
        m = card.metrics.get(split)
        if not m:
            continue
        ref = ref or m.get("majority_class_reference")
        rows.append(_row(f"`{name}`", card.training.get("initialisation", "?"), m))
    if ref:
        rows.append(_row("majority class (reference)", "—", ref))
    return "\n".join(rows)


def _row(label: str, init: str, m: dict) -> str:
    ci = m.get("ci95") or {}

    def with_ci(key: str) -> str:
        return f"{m[key]:.3f}" + (f" [{ci[key][0]:.2f}–{ci[key][1]:.2f}]" if key in ci else "")

    pc = m["per_class"]
    classes = list(pc)
    last = classes[-1]
    cm = m["confusion_matrix"]
    found = f"{cm[-1][-1]} of {sum(cm[-1])}"
    f1 = " | ".join(f"{pc[c]['f1']:.3f}" for c in classes)
    return (
        f"| {label} | {init} | {m['accuracy']:.3f} | {with_ci('balanced_accuracy')} | {with_ci('macro_f1')} "
        f"| {f1} | {found if last else ''} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(prog="python -m core.report", description=__doc__)
    p.add_argument("--split", choices=["val", "test"], default="test")
    p.add_argument("--readme", type=Path, default=None, help="rewrite the metrics block of this README")
    args = p.parse_args(argv)
    table = metrics_markdown(args.split)
    print(table)  # noqa: T201 - CLI output
    if args.readme:
        a, b = "<!-- metrics:start -->", "<!-- metrics:end -->"
        body = args.readme.read_text()
        block = (
            f"{a}\nOn the saved **{args.split}** split, with each card's validation-chosen decision rule "
            f"(`python -m core.report --readme README.md`; 95% bootstrap intervals in brackets):\n\n"
            f"{table}\n{b}"
        )
        body = body[: body.index(a)] + block + body[body.index(b) + len(b) :]
        args.readme.write_text(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
