"""Markdown table of the shipped models' metrics (from their cards), for the README.

python -m core.report [--split test]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from core.models.card import ModelCard, WeightsError
from core.models.registry import REGISTRY
from core.scoring.calibration import load_calibration, load_ensemble


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
    ens = load_ensemble()
    if ens is not None and ens.metrics.get(split):
        members = " + ".join(f"`{n}`" for n in ens.members)
        rows.append(_row(f"ensemble ({members}, `python -m core.calibrate`)", "—", ens.metrics[split]))
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


def calibration_markdown() -> str:
    """Each model's (and the ensemble's) temperature and expected calibration error before → after
    temperature scaling, on validation (where it was fitted) and test; ``""`` without ``calibration.json``."""
    models = load_calibration().get("models", {})
    if not models:
        return ""
    rows = [
        "| model | temperature | ECE validation: before → after | ECE test: before → after |",
        "|---|---|---|---|",
    ]
    ens = load_ensemble()
    entries = [(f"`{n}`", models[n]) for n in REGISTRY if n in models]
    entries += [("ensemble", ens.doc)] if ens is not None and "ece" in ens.doc else []
    for label, e in entries:
        val, test = e["ece"]["val"], e["ece"]["test"]
        rows.append(
            f"| {label} | {e['temperature']:.3f} | {val['before']:.3f} → **{val['after']:.3f}** "
            f"| {test['before']:.3f} → **{test['after']:.3f}** |"
        )
    return "\n".join(rows)


def _replace_block(body: str, name: str, text: str) -> str:
    a, b = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if a not in body or b not in body:
        return body
    return body[: body.index(a)] + f"{a}\n{text}\n{b}" + body[body.index(b) + len(b) :]


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
        if cal := calibration_markdown():
            body = _replace_block(
                body,
                "calibration",
                "Calibration (`python -m core.calibrate`; temperature fitted on validation, top-label ECE over 10 "
                f"bins):\n\n{cal}",
            )
        args.readme.write_text(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
