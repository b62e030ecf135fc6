"""Do the models keep their answer when a photo is framed the way people frame it?

    python -m bench.framing --split val|test [--json PATH] [--readme README.md] [--casual-sample N]
                            [--no-normalise] [--models A,B] [--weights DIR] [--limit N]

Each image of the saved split is enlarged to upload-like size (3×, as an upload would be) and
framed in every way of :data:`core.framings.FRAMINGS` (white square, landscape, zoomed out,
stretched, off-centre, on textured surfaces, warm light, a slight tilt, a drop shadow…). Each
framed photo then takes the app's own path (framing normalisation, the native canvas; with
``--no-normalise`` the step is skipped, as before it existed) and every chosen model scores it
with its card's decision rule. Per model and framing: Formal recall, Casual recall, Smart
Casual found, balanced accuracy, macro-F1 (scikit-learn), each recall as a ratio to the
unframed one, and the framing step's actions.

All Formal and Smart Casual images of the split are used; Casual images are sampled
(``--casual-sample``, default 800, fixed seed) and weighted by their sampling rate, so that
balanced accuracy and macro-F1 estimate the whole split's (``--casual-sample 0``: all of them).
Thresholds and augmentation strengths are chosen with ``--split val``; test is only reported.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score

from core.card import load_model
from core.data import DEFAULT_SPLIT_FILE, find_default_data_dir, get_or_make_split, load_styles
from core.framings import FRAMINGS, enlarge
from core.inference import apply_decision_rule, predict_logits
from core.preprocess import frame_and_fit, open_image, to_native

log = logging.getLogger("bench.framing")
SHIPPED = ("effnet_lite0", "resnet50", "baseline")
README_START, README_END = "<!-- framing:start -->", "<!-- framing:end -->"


def pick_images(
    labels: dict[int, int], ids: list[int], classes: list[str], casual_sample: int, seed: int = 0
) -> tuple[list[int], np.ndarray]:
    """All non-Casual ids and a fixed sample of the Casual ones, with each image's weight (the
    inverse of its class's sampling rate)."""
    casual = classes.index("Casual")
    rest = [i for i in ids if labels[i] != casual]
    pool = [i for i in ids if labels[i] == casual]
    take = (
        pool
        if casual_sample <= 0 or casual_sample >= len(pool)
        else sorted(np.random.default_rng(seed).choice(pool, casual_sample, replace=False).tolist())
    )
    chosen = sorted(rest + take)
    rate = len(pool) / max(len(take), 1)
    weights = np.array([rate if labels[i] == casual else 1.0 for i in chosen])
    return chosen, weights


def frame_one(args: tuple[bytes, int, bool]) -> tuple[list[np.ndarray], list[str]]:
    """One image in every framing → native canvases and the framing step's actions."""
    data, pid, normalise = args
    base = enlarge(open_image(data).image)
    canvases, actions = [], []
    for build in FRAMINGS.values():
        photo = build(base, pid)
        if normalise:
            native = frame_and_fit(photo)
            canvases.append(np.asarray(native.image))
            actions.append(native.framing.action)
        else:
            canvases.append(np.asarray(to_native(photo)))
            actions.append("none")
    return canvases, actions


def build_canvases(
    paths: list[Path], ids: list[int], normalise: bool, workers: int
) -> tuple[np.ndarray, list[list[str]]]:
    """F×N×80×60×3 canvases (framing-major) and the actions per framing."""
    jobs = [(p.read_bytes(), pid, normalise) for p, pid in zip(paths, ids)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(frame_one, jobs, chunksize=16))
    n_f = len(FRAMINGS)
    canvases = np.stack([np.stack([r[0][f] for r in results]) for f in range(n_f)])
    actions = [[r[1][f] for r in results] for f in range(n_f)]
    return canvases, actions


def score(y: np.ndarray, pred: np.ndarray, weights: np.ndarray, classes: list[str]) -> dict:
    """The benchmark's numbers for one model and framing (weighted as in :func:`pick_images`)."""
    labels = list(range(len(classes)))
    recall = recall_score(y, pred, labels=labels, average=None, sample_weight=weights, zero_division=0)
    sc = classes.index("Smart Casual")
    return {
        "formal_recall": float(recall[classes.index("Formal")]),
        "casual_recall": float(recall[classes.index("Casual")]),
        "smart_casual_found": int(((y == sc) & (pred == sc)).sum()),
        "smart_casual_total": int((y == sc).sum()),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred, sample_weight=weights)),
        "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", sample_weight=weights, zero_division=0)),
    }


def run(
    split_name: str,
    models: list[str],
    casual_sample: int,
    normalise: bool,
    weights_dir: Path | None,
    limit: int | None,
    workers: int,
) -> dict:
    """Score every model on every framing; the JSON-ready result."""
    data = find_default_data_dir()
    if data is None:
        raise SystemExit("no dataset found (set DRESSCODE_DATA or put it at ../shared/data/fashion-small)")
    loaded = {m: load_model(m, weights_dir) for m in models}
    classes = list(next(iter(loaded.values()))[1].classes)
    catalog = load_styles(data, classes)
    split = get_or_make_split(catalog, DEFAULT_SPLIT_FILE)
    labels = catalog.label_of()
    ids, weights = pick_images(labels, split[split_name], classes, casual_sample)
    if limit:
        ids, weights = ids[:limit], weights[:limit]
    y = np.array([labels[i] for i in ids])
    t0 = time.perf_counter()
    canvases, actions = build_canvases([catalog.image_path(i) for i in ids], ids, normalise, workers)
    log.info("framed %d images × %d framings in %.0f s", len(ids), len(FRAMINGS), time.perf_counter() - t0)
    out: dict = {
        "split": split_name,
        "normalised": normalise,
        "images": len(ids),
        "casual_sample": casual_sample,
        "framings": list(FRAMINGS),
        "framing_actions": {f: dict(Counter(a)) for f, a in zip(FRAMINGS, actions)},
        "models": {},
    }
    for name, (model, card) in loaded.items():
        rows = {}
        for f, framing in enumerate(FRAMINGS):
            logits = predict_logits(model, canvases[f])
            pred = apply_decision_rule(logits, card.logit_bias).argmax(1)
            rows[framing] = score(y, pred, weights, classes)
        base = rows[next(iter(FRAMINGS))]
        for r in rows.values():
            r["formal_recall_ratio"] = r["formal_recall"] / base["formal_recall"] if base["formal_recall"] else None
            r["casual_recall_ratio"] = r["casual_recall"] / base["casual_recall"] if base["casual_recall"] else None
        out["models"][name] = rows
        log.info("%s scored", name)
    return out


def table(result: dict) -> str:
    """Markdown: one table per model, a row per framing."""
    out = []
    for m, rows in result["models"].items():
        out += [
            f"**`{m}`**\n",
            "| framing | Formal recall | ratio | Casual recall | ratio | SC found | balanced acc. | macro-F1 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for f in result["framings"]:
            r = rows[f]
            out.append(
                f"| {f} | {r['formal_recall']:.2f} | {r['formal_recall_ratio']:.2f} | {r['casual_recall']:.2f} | "
                f"{r['casual_recall_ratio']:.2f} | {r['smart_casual_found']} of {r['smart_casual_total']} | "
                f"{r['balanced_accuracy']:.2f} | {r['macro_f1']:.2f} |"
            )
        out.append("")
    return "\n".join(out).rstrip()


COST_START, COST_END = "<!-- framing-cost:start -->", "<!-- framing-cost:end -->"


def cost(reps: int) -> dict:
    """The framing step's own cost on a dataset image and on a 12 MP phone photo, and one photo
    explained end to end by the app's two default models with and without it (interleaved)."""
    from bench.__main__ import DEFAULT_MODELS, big_photo, sample_images, timed_side_by_side
    from core.service import load_explainer

    small = sample_images(1)[0][1]
    big = big_photo()
    out: dict = {}
    for label, data in (("dataset image (60×80)", small), ("3000×4000 JPEG phone photo", big)):
        decoded = open_image(data).image
        framed = {
            "framing step": lambda d=decoded: frame_and_fit(d),
            "fit only (no framing)": lambda d=decoded: to_native(d),
        }
        out[label] = timed_side_by_side(framed, reps)
    explainers = [load_explainer(n).explainer for n in DEFAULT_MODELS]

    def explain(data: bytes, framing: bool) -> None:
        image = open_image(data).image
        native = np.asarray(frame_and_fit(image).image if framing else to_native(image))
        for ex in explainers:
            ex.explain(native)

    out["explain one photo"] = timed_side_by_side(
        {"with framing": lambda: explain(small, True), "without framing": lambda: explain(small, False)}, reps
    )
    out["explain 12 MP photo"] = timed_side_by_side(
        {"with framing": lambda: explain(big, True), "without framing": lambda: explain(big, False)},
        max(3, reps // 3),
    )
    return out


def cost_table(res: dict) -> str:
    """Markdown rows of :func:`cost`."""
    lines = ["| measured | with the framing step | without | the step's cost |", "|---|---|---|---|"]
    for label in ("dataset image (60×80)", "3000×4000 JPEG phone photo"):
        a, b = res[label]["framing step"]["median_ms"], res[label]["fit only (no framing)"]["median_ms"]
        lines.append(f"| framing + fit, {label} (decoded) | {a:.1f} ms | {b:.1f} ms | {a - b:.1f} ms |")
    for label in ("explain one photo", "explain 12 MP photo"):
        a, b = res[label]["with framing"]["median_ms"], res[label]["without framing"]["median_ms"]
        lines.append(
            f"| {label} end to end (decode + 2 models + Grad-CAM) | {a:.0f} ms | {b:.0f} ms | {a - b:.0f} ms |"
        )
    return "\n".join(lines)


def _rewrite(readme: Path, start: str, end: str, block: str) -> None:
    text = readme.read_text()
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    body = f"{start}\n{block}\n{end}"
    readme.write_text(pattern.sub(lambda _m: body, text) if pattern.search(text) else text + "\n" + body + "\n")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(
        prog="python -m bench.framing", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--split", choices=("val", "test"), default="val")
    p.add_argument("--json", type=Path, default=None, help="write the full result here")
    p.add_argument("--models", default=",".join(SHIPPED), help="comma-separated registry names")
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default weights/)")
    p.add_argument("--casual-sample", type=int, default=800, help="Casual images sampled (0 = all)")
    p.add_argument("--no-normalise", action="store_true", help="skip the framing step (the state before it)")
    p.add_argument("--limit", type=int, default=None, help="first N chosen images only (smoke tests)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes building framings")
    p.add_argument("--readme", type=Path, default=None, help="rewrite the framing table in this README")
    p.add_argument("--cost", action="store_true", help="time the framing step instead (and the README's cost table)")
    p.add_argument("--reps", type=int, default=30, help="repetitions per contender with --cost")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    torch.set_num_threads(2)
    if args.cost:
        res = cost(args.reps)
        text = cost_table(res)
        print(text)
        if args.json:
            args.json.write_text(json.dumps(res, indent=1))
        if args.readme:
            _rewrite(args.readme, COST_START, COST_END, f"`python -m bench.framing --cost` (2 threads):\n\n{text}")
        return 0
    result = run(
        args.split,
        [m.strip() for m in args.models.split(",") if m.strip()],
        args.casual_sample,
        not args.no_normalise,
        args.weights,
        args.limit,
        args.workers,
    )
    text = table(result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.readme:
        block = (
            f"Framing benchmark, **{result['split']}** split, "
            f"{'with' if result['normalised'] else 'without'} framing normalisation "
            f"(`python -m bench.framing --split {result['split']}`; {result['images']} images):\n\n{text}"
        )
        _rewrite(args.readme, README_START, README_END, block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
