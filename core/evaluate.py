"""Score a shipped model on the saved split, or on every usable image of a dataset copy.

    python -m core.evaluate --model effnet_lite0 --data DIR --split test --json out.json

--split all evaluates every usable image in DIR (any image size goes through the
same preprocessing as uploads), so the shipped models can be scored on another copy.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from core.cli import non_negative_int, positive_int
from core.config import DEFAULT_SPLIT_FILE, find_default_data_dir
from core.data.cache import load_native_images
from core.data.catalog import DEFAULT_LABEL_COLUMN, load_styles
from core.data.split import find_split, get_or_make_split
from core.images.framing import DEFAULT_PARAMS as DEFAULT_FRAMING
from core.images.framing import FRAMING_VERSION
from core.models.card import ModelCard, WeightsError, model_files
from core.models.registry import REGISTRY
from core.prediction.inference import apply_decision_rule
from core.prediction.served import ServedModel
from core.scoring.metrics import (
    choose_logit_bias,
    choose_logit_bias_keeping_recall,
    classification_report,
    format_report,
    majority_baseline,
)

log = logging.getLogger(__name__)


class EvaluationError(ValueError):
    """What the user asked for cannot be scored (the message says why and what to do)."""


def framing_record() -> dict:
    """What a card records of the framing step its metrics were measured through: its version and parameters."""
    return {"version": FRAMING_VERSION, **DEFAULT_FRAMING.to_dict()}


def measure_splits(
    served: ServedModel,
    images: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    ids: dict[str, list[int]],
    n_boot: int = 1000,
    seed: int = 42,
    log_reports: bool = True,
) -> None:
    """Fill the served model's card's ``metrics`` and ``predictions`` for val and test (fp32 path, the
    card's decision rule applied) — the numbers ``evaluate`` reproduces; ``log_reports`` logs them."""
    card = served.card
    if card is None:
        raise ValueError(f"{served.name} was served without its model card: there is nothing to fill")
    # the metrics below were measured on images through this framing step (core.images.framing)
    card.data["framing_normalisation"] = framing_record()
    for s in ("val", "test"):
        logits = served.logits(images[s])
        pred = apply_decision_rule(logits, card.logit_bias).argmax(1)
        rep = classification_report(labels[s], pred, card.classes, n_boot=n_boot, seed=seed)
        plain = classification_report(labels[s], logits.argmax(1), card.classes, n_boot=0)
        plain.pop("ci95", None)
        rep["argmax_without_rule"] = plain
        rep["majority_class_reference"] = majority_baseline(labels[s], card.classes)
        card.metrics[s] = rep
        card.predictions[s] = {"ids": [int(i) for i in ids[s]], "pred": "".join(str(int(k)) for k in pred)}
        if log_reports:
            log.info("%s", format_report(rep, f"== {card.name} on {s} =="))


def refresh_card(
    name: str,
    data_dir: Path,
    weights_dir: Path | None = None,
    n_boot: int = 1000,
    split_file: Path = DEFAULT_SPLIT_FILE,
    choose_rule: bool = False,
    keep_recall: dict[str, float] | None = None,
    min_recall: dict[str, float] | None = None,
) -> ModelCard:
    """Re-measure val/test metrics and per-image predictions of a shipped model into its card;
    with ``choose_rule`` the decision rule is first chosen again on the validation split: for
    macro-F1 (among the offsets keeping each ``min_recall`` floor, class → recall, if given), or with
    ``keep_recall`` (class → recall, e.g. another model's) for the mean recall of the other classes
    among the offsets that keep those validation recalls (one operating point)."""
    if (keep_recall or min_recall) and not choose_rule:
        raise ValueError("keep_recall and min_recall choose the decision rule: they need choose_rule")
    if keep_recall and min_recall:
        raise ValueError("keep_recall and min_recall are two ways of choosing the offsets: give one")
    served = ServedModel.load(name, weights_dir)
    card = served.card
    for option, given in (("--keep-recall-of", keep_recall), ("--min-recall", min_recall)):
        if unknown := sorted(set(given or {}) - set(card.classes)):  # before minutes of decoding images
            raise EvaluationError(f"{option}: {', '.join(unknown)} is not a class of {name} ({card.classes})")
    catalog = load_styles(data_dir, card.classes, card.data.get("label_column", DEFAULT_LABEL_COLUMN))
    split = get_or_make_split(catalog, split_file, card.training.get("seed", 42))
    label_of = catalog.label_of()
    ids = {s: split[s] for s in ("val", "test")}
    if empty := [s for s, v in ids.items() if not v]:
        raise EvaluationError(
            f"none of the {len(catalog.ids):,} usable images in {data_dir} is in the saved {' or '.join(empty)} "
            f"split ({split_file}): a card is refreshed on the dataset copy it was trained on"
        )
    labels = {s: np.array([label_of[i] for i in v], dtype=np.int64) for s, v in ids.items()}
    images = {s: load_native_images(catalog, v) for s, v in ids.items()}
    if choose_rule:
        val_logits = served.logits(images["val"])
        floors = keep_recall or min_recall or {}
        kept = ", ".join(f"{c} ≥ {r:.4f}" for c, r in floors.items())
        try:
            if keep_recall:
                keep = {card.classes.index(c): r for c, r in keep_recall.items()}
                bias, objective = choose_logit_bias_keeping_recall(val_logits, labels["val"], keep)
                others = [c for c in card.classes if c not in keep_recall] or card.classes
                aim = f"mean recall of {', '.join(others)} on validation, keeping the recall {kept}"
            else:
                floor_idx = {card.classes.index(c): r for c, r in floors.items()}
                bias, objective = choose_logit_bias(val_logits, labels["val"], min_recall=floor_idx)
                aim = "macro-F1 on validation" + (f", keeping the recall {kept}" if floors else "")
        except ValueError as exc:
            why = f"no offsets on the grid keep the validation recall {kept}" if floors else str(exc)
            raise EvaluationError(why) from None
        card.decision_rule = {
            "kind": "argmax of logits + per-class offsets chosen on the validation split",
            "logit_bias": bias,
            "objective": f"{aim} (ties: smallest offsets)",
            "validation_objective": round(objective, 5),
        }
    measure_splits(served, images, labels, ids, n_boot, card.training.get("seed", 42))
    card.save(model_files(name, weights_dir)[1])
    return card


def reference_recall(name: str, weights_dir: Path, classes: Sequence[str]) -> dict[str, float]:
    """``{class: recall}`` on validation of ``name`` in ``weights_dir``, from its card (--keep-recall-of)."""
    card = ModelCard.load(model_files(name, weights_dir)[1])
    if unknown := [c for c in classes if c not in card.classes]:
        raise EvaluationError(
            f"--keep-class: {', '.join(unknown)} is not a class of {name} ({', '.join(card.classes)})"
        )
    try:
        return {c: float(card.metrics["val"]["per_class"][c]["recall"]) for c in classes}
    except (KeyError, TypeError):
        raise EvaluationError(
            f"the {name} card in {weights_dir} has no validation recall per class: measure it first "
            "(python -m core.evaluate --refresh-card)"
        ) from None


def model_training_ids(
    card: ModelCard, ids: Sequence[int], split_file: Path, weights_dir: Path | None = None
) -> set[int] | None:
    """The training ids of the split ``card``'s model was trained on: ``split_file`` when its
    fingerprint is the card's, else the split file beside the weights or the shipped one; None
    when none of them is the model's split (then nobody can tell which images it learnt from)."""
    fingerprints = [card.data[k] for k in ("split_fingerprint", "split_file_fingerprint") if card.data.get(k)]
    name = card.data.get("split_file", DEFAULT_SPLIT_FILE.name)
    beside = [Path(weights_dir) / name] if weights_dir is not None else []
    found = find_split(fingerprints, [Path(split_file), *beside, DEFAULT_SPLIT_FILE], ids)
    return None if found is None else set(found["train"])


def evaluate_model(
    name: str,
    data_dir: Path,
    split_name: str = "test",
    weights_dir: Path | None = None,
    split_file: Path = DEFAULT_SPLIT_FILE,
    n_boot: int = 1000,
    seed: int = 42,
) -> dict:
    """Metrics of the shipped ``name`` (with its decision rule) on one split or ``all``."""
    served = ServedModel.load(name, weights_dir)
    card = served.card
    catalog = load_styles(data_dir, card.classes, card.data.get("label_column", DEFAULT_LABEL_COLUMN))
    if split_name == "all":
        ids = list(catalog.ids)
    else:
        ids = list(get_or_make_split(catalog, split_file, seed)[split_name])
        if not ids:
            raise EvaluationError(
                f"none of the {len(catalog.ids):,} usable images in {data_dir} is in the saved {split_name} "
                f"split ({split_file}); to score every image of this copy use --split all"
            )
    trained_on = model_training_ids(card, catalog.ids, split_file, weights_dir)
    n_seen = None if trained_on is None else len(set(ids) & trained_on)
    if trained_on is None:
        log.warning(
            "%s was not trained on the split in %s (its card's split fingerprint is %s) and its own split file "
            "was not found: some of these images may be ones it learnt from, which would overstate its scores "
            "(evaluate with the split file it was trained on, e.g. --split-file weights/split.json)",
            name,
            split_file,
            card.data.get("split_fingerprint", "missing"),
        )
    elif n_seen:
        log.warning(
            "%d of these %d images are in %s's training split: the model learnt from them, so these "
            "numbers overstate how it does on new photos (use --split test, or a copy with other products)",
            n_seen,
            len(ids),
            name,
        )
    unreadable: list[int] = []
    images = load_native_images(catalog, ids, unreadable=unreadable)
    if unreadable:
        log.warning("%d unreadable images are left out: %s", len(unreadable), ", ".join(map(str, unreadable[:20])))
        bad = set(unreadable)
        keep = np.array([i not in bad for i in ids])
        ids, images = [i for i, k in zip(ids, keep) if k], images[keep]
    if not ids:
        raise EvaluationError(f"no readable image to score in {data_dir}")
    label_of = catalog.label_of()
    y = np.array([label_of[i] for i in ids], dtype=np.int64)
    pred = served.predict(images).argmax(1)  # the card's decision rule
    report = classification_report(y, pred, card.classes, n_boot=n_boot, seed=seed)
    report["model"] = name
    report["split"] = split_name
    report["decision_rule"] = card.decision_rule
    report["majority_class_reference"] = majority_baseline(y, card.classes)
    report["ids"] = {
        "n": len(ids),
        "in_training_split": n_seen,  # None: the model's training split is unknown (see the warning)
        "split_is_the_models": trained_on is not None,
        "unreadable": unreadable,
    }
    report["predictions"] = {str(i): card.classes[p] for i, p in zip(ids, pred)}
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(
        prog="python -m core.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, choices=list(REGISTRY), help="registry name of a trained model")
    p.add_argument("--data", type=Path, default=None, help="dataset folder, Kaggle layout (default: auto-detect)")
    p.add_argument(
        "--split",
        choices=["train", "val", "test", "all"],
        default=None,
        help="a split of the saved split file, or all: every usable image in --data, of any size (default test)",
    )
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: weights/)")
    p.add_argument("--split-file", type=Path, default=DEFAULT_SPLIT_FILE, help="saved split (weights/split.json)")
    p.add_argument("--json", type=Path, default=None, help="write the metrics as JSON")
    p.add_argument("--bootstrap", type=non_negative_int, default=1000, help="resamples for the 95%% intervals")
    p.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads (default 2)")
    p.add_argument(
        "--refresh-card", action="store_true", help="re-measure val/test metrics and predictions into the model card"
    )
    p.add_argument(
        "--choose-rule",
        action="store_true",
        help="with --refresh-card: choose the decision rule again on the validation split",
    )
    p.add_argument(
        "--keep-recall-of",
        type=Path,
        default=None,
        metavar="DIR",
        help="with --choose-rule: choose the offsets that keep the validation recall of each --keep-class at least "
        "that of the same model in DIR (its card), for the best mean recall of the other classes, instead of macro-F1",
    )
    p.add_argument(
        "--min-recall",
        action="append",
        default=None,
        metavar="CLASS=RECALL",
        help="with --choose-rule: the best macro-F1 among the offsets keeping this validation recall, e.g. "
        "Casual=0.965 (repeatable)",
    )
    p.add_argument(
        "--keep-class",
        action="append",
        default=None,
        help="a class whose recall --keep-recall-of keeps (repeatable; default Casual)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    if args.choose_rule and not args.refresh_card:
        p.error("--choose-rule only works with --refresh-card")
    if (args.keep_recall_of is not None or args.min_recall) and not args.choose_rule:
        p.error("--keep-recall-of and --min-recall only work with --choose-rule")
    if args.keep_recall_of is not None and args.min_recall:
        p.error("--keep-recall-of and --min-recall are two ways of choosing the offsets: give one")
    floors = {}
    for item in args.min_recall or []:
        cls, _, value = item.rpartition("=")
        if cls in floors:
            p.error(f"--min-recall {cls} is given twice")
        try:
            floors[cls] = float(value)
        except ValueError:
            p.error(f"--min-recall {item!r}: expected CLASS=RECALL, e.g. Casual=0.965")
        if not cls or not 0.0 <= floors[cls] <= 1.0:
            p.error(f"--min-recall {item!r}: expected CLASS=RECALL with a recall from 0 to 1, e.g. Casual=0.965")
    if args.refresh_card and (args.json is not None or args.split is not None):
        p.error("--refresh-card re-measures val and test into the card; it takes neither --split nor --json")
    args.split = args.split or "test"
    data = args.data or find_default_data_dir()
    if data is None:
        p.error("no --data given and no dataset found")
    if args.json is not None and args.json.is_dir():
        p.error(f"--json {args.json} is a folder; give a file name, e.g. {args.json / 'metrics.json'}")
    try:
        if args.refresh_card:
            keep = (
                None
                if args.keep_recall_of is None
                else reference_recall(args.model, args.keep_recall_of, args.keep_class or ["Casual"])
            )
            refresh_card(
                args.model, data, args.weights, args.bootstrap, args.split_file, args.choose_rule, keep, floors
            )
            return 0
        report = evaluate_model(args.model, data, args.split, args.weights, args.split_file, args.bootstrap)
    except (EvaluationError, WeightsError, FileNotFoundError) as exc:
        p.exit(2, f"{p.prog}: error: {exc}\n")
    print(format_report(report, f"== {args.model} on {args.split} ({data}) =="))  # noqa: T201 - CLI output
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
