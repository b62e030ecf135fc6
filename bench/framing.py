"""Do the models keep their answer when a photo is framed the way people frame it?

    python -m bench.framing --split val|test [--json PATH] [--readme README.md] [--casual-sample N]
                            [--no-normalise] [--models A,B] [--weights DIR] [--limit N]
    python -m bench.framing --compare BEFORE.json AFTER.json [--json PATH]
    python -m bench.framing --split val|test --held-out [--json PATH] [--readme README.md]

Each image of the saved split is enlarged to upload-like size (3×, as an upload would be) and
framed in every way of :data:`core.images.framings.FRAMINGS` (white square, landscape, zoomed out,
stretched, off-centre, on textured surfaces, warm light, a slight tilt, a drop shadow…). Each
framed photo then takes the app's own path (framing normalisation, the native canvas; with
``--no-normalise`` the step is skipped, as before it existed) and every chosen model scores it
with its card's decision rule. Per model and framing: Formal recall, Casual recall, Smart
Casual found, balanced accuracy, macro-F1 (scikit-learn), each recall as a ratio to the
unframed one, and the framing step's actions. ``--held-out`` scores the same way a second set of
framings (:data:`core.images.framings.HELD_OUT_FRAMINGS`: a dark or pastel backdrop, a 9:16 phone
frame, a small product, the other tilt, a hard shadow, cool light, a forwarded JPEG) on which nothing
was chosen: how far the benchmark's results carry over to framings it does not hold.

All Formal and Smart Casual images of the split are used; Casual images are sampled
(``--casual-sample``, default 800, fixed seed) and weighted by their sampling rate, so that
balanced accuracy and macro-F1 estimate the whole split's (``--casual-sample 0``: all of them).
Thresholds and augmentation strengths are chosen with ``--split val``; test is only reported.

The ``--json`` file keeps each image's predicted class, so two runs on the same images (the shipped
models and candidates, or the step with and without a part) can be compared pair by pair:
``--compare BEFORE AFTER`` counts, per model, framing and class, the images one run gets right and the
other wrong, and tells a loss beyond noise (exact McNemar test, Benjamini–Hochberg over the framings and
classes) from one that one or two images make.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Collection
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score

from core.config import DEFAULT_SPLIT_FILE, find_default_data_dir
from core.data.catalog import load_styles
from core.data.split import get_or_make_split
from core.images.framing import DEFAULT_PARAMS, FramingParams
from core.images.framings import FRAMING_SETS, enlarge
from core.images.preprocess import frame_and_fit, open_image, to_native
from core.prediction.served import ServedModel

log = logging.getLogger("bench.framing")
SHIPPED = ("effnet_lite0", "resnet50", "baseline")
README_START, README_END = "<!-- framing:start -->", "<!-- framing:end -->"
HELD_OUT_START, HELD_OUT_END = "<!-- framing-held-out:start -->", "<!-- framing-held-out:end -->"


def pick_images(
    labels: dict[int, int],
    ids: list[int],
    classes: list[str],
    samples: dict[str, int],
    seed: int = 0,
    exclude: Collection[int] = (),
    only: Collection[int] | None = None,
) -> tuple[list[int], np.ndarray]:
    """Every image of the split, except that a class named in ``samples`` is sampled down to that
    many (fixed seed; 0 = all); each image is weighted by the inverse of its class's sampling rate,
    so that the weighted metrics estimate the whole split's. A sampled class is drawn from its images
    not in ``exclude`` (a fresh draw beside an earlier run's; still a random sample of the class).
    ``only`` (an earlier run's ids) replaces the draw: exactly those images, weighted the same way."""
    chosen: list[int] = []
    rate: dict[int, float] = {}
    rng = np.random.default_rng(seed)
    exclude = set(exclude)
    if only is not None:
        only = set(only)
        if not only or not only <= set(ids):
            raise SystemExit("--same-images: the earlier run's images are not all in this split")
    for k, name in enumerate(classes):
        pool = [i for i in ids if labels[i] == k]
        n = samples.get(name, 0)
        if only is not None:
            take = [i for i in pool if i in only]
        elif n > 0 and exclude:
            left = [i for i in pool if i not in exclude]
            if len(left) == len(pool):
                raise SystemExit(
                    f"the earlier runs used none of this split's {name} images: nothing to draw apart from"
                )
            if len(left) < n:
                raise SystemExit(
                    f"a fresh draw of {n} {name} images needs {n} not used before; only {len(left)} are left"
                )
            take = rng.choice(left, n, replace=False).tolist()
        else:
            take = pool if n <= 0 or n >= len(pool) else rng.choice(pool, n, replace=False).tolist()
        chosen += take
        rate[k] = len(pool) / max(len(take), 1)
    chosen.sort()
    return chosen, np.array([rate[labels[i]] for i in chosen])


def frame_one(args: tuple[bytes, int, bool, FramingParams, str]) -> tuple[list[np.ndarray], list[str]]:
    """One image in every framing of a set → native canvases and the framing step's actions."""
    data, pid, normalise, params, framing_set = args
    base = enlarge(open_image(data).image)
    canvases, actions = [], []
    for build in FRAMING_SETS[framing_set].values():
        photo = build(base, pid)
        if normalise:
            native = frame_and_fit(photo, params)
            canvases.append(np.asarray(native.image))
            actions.append(native.framing.action)
        else:
            canvases.append(np.asarray(to_native(photo)))
            actions.append("none")
    return canvases, actions


def build_canvases(
    paths: list[Path],
    ids: list[int],
    normalise: bool,
    workers: int,
    params: FramingParams = DEFAULT_PARAMS,
    framing_set: str = "benchmark",
) -> tuple[np.ndarray, list[list[str]]]:
    """F×N×80×60×3 canvases (framing-major) and the actions per framing of ``framing_set``."""
    jobs = [(p.read_bytes(), pid, normalise, params, framing_set) for p, pid in zip(paths, ids)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(frame_one, jobs, chunksize=16))
    n_f = len(FRAMING_SETS[framing_set])
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
    samples: dict[str, int],
    normalise: bool,
    weights_dir: Path | None,
    limit: int | None,
    workers: int,
    params: FramingParams = DEFAULT_PARAMS,
    exclude: Collection[int] = (),
    only: Collection[int] | None = None,
    framing_set: str = "benchmark",
) -> dict:
    """Score every model on every framing of ``framing_set`` (a key of
    :data:`core.images.framings.FRAMING_SETS`); the JSON-ready result (``exclude``, ``only``: see
    :func:`pick_images`)."""
    framings = FRAMING_SETS[framing_set]
    data = find_default_data_dir()
    if data is None:
        raise SystemExit("no dataset found (set DRESSCODE_DATA or put it at ../shared/data/fashion-small)")
    loaded = {m: ServedModel.load(m, weights_dir) for m in models}
    classes = list(next(iter(loaded.values())).classes)
    if len(classes) > 10:
        raise SystemExit(f"the benchmark keeps one digit per answer: {len(classes)} classes are too many")
    catalog = load_styles(data, classes)
    split = get_or_make_split(catalog, DEFAULT_SPLIT_FILE)
    labels = catalog.label_of()
    ids, weights = pick_images(labels, split[split_name], classes, samples, exclude=exclude, only=only)
    if limit:
        ids, weights = ids[:limit], weights[:limit]
    y = np.array([labels[i] for i in ids])
    t0 = time.perf_counter()
    paths = [catalog.image_path(i) for i in ids]
    canvases, actions = build_canvases(paths, ids, normalise, workers, params, framing_set)
    log.info("framed %d images × %d framings in %.0f s", len(ids), len(framings), time.perf_counter() - t0)
    out: dict = {
        "split": split_name,
        "normalised": normalise,
        "framing_params": params.to_dict() if normalise else None,
        "images": len(ids),
        "sampled": samples,
        # per sampled class, how many of its images earlier runs used and this draw left out (--fresh-draw)
        "sampled_apart_from": {
            name: sum(1 for i in split[split_name] if labels[i] == classes.index(name) and i in exclude)
            for name, n in samples.items()
            if n > 0 and exclude
        },
        "framing_set": framing_set,
        "framings": list(framings),
        "framing_actions": {f: dict(Counter(a)) for f, a in zip(framings, actions)},
        "classes": classes,
        "ids": [int(i) for i in ids],
        "labels": y.tolist(),
        "models": {},
        # per model and framing, each image's predicted class as one digit per image, in ``ids`` order
        # (for paired comparisons; a string keeps the JSON file small)
        "predictions": {},
        # which weights and decision rule each model's rows come from (a gate checks them against the card)
        "model_weights": {
            name: {"sha256": served.card.weights["sha256"] if served.card else None, "logit_bias": served.logit_bias}
            for name, served in loaded.items()
        },
    }
    for name, served in loaded.items():
        rows, preds = {}, {}
        for f, framing in enumerate(framings):
            pred = served.predict(canvases[f]).argmax(1)  # the card's decision rule
            rows[framing] = score(y, pred, weights, classes)
            preds[framing] = "".join(map(str, pred.tolist()))  # one digit per image: at most 10 classes
        base = rows[next(iter(framings))]
        for r in rows.values():
            r["formal_recall_ratio"] = r["formal_recall"] / base["formal_recall"] if base["formal_recall"] else None
            r["casual_recall_ratio"] = r["casual_recall"] / base["casual_recall"] if base["casual_recall"] else None
        out["models"][name] = rows
        out["predictions"][name] = preds
        log.info("%s scored", name)
    return out


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


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
                f"| {f} | {r['formal_recall']:.2f} | {_ratio(r['formal_recall_ratio'])} | {r['casual_recall']:.2f} | "
                f"{_ratio(r['casual_recall_ratio'])} | {r['smart_casual_found']} of {r['smart_casual_total']} | "
                f"{r['balanced_accuracy']:.2f} | {r['macro_f1']:.2f} |"
            )
        out.append("")
    return "\n".join(out).rstrip()


SUMMARY_START, SUMMARY_END = "<!-- framing-summary:start -->", "<!-- framing-summary:end -->"


def summary_table(before: dict, after: dict) -> str:
    """Formal recall per model and framing, before → after (after's ratio to its unframed value),
    and the smallest Casual recall after; two results of the same split."""
    models = [m for m in after["models"] if m in before["models"]]
    head = "| framing | " + " | ".join(f"`{m}` Formal recall: before → after (ratio)" for m in models) + " |"
    lines = [head, "|---|" + "---|" * len(models)]
    for f in after["framings"]:
        cells = []
        for m in models:
            b, a = before["models"][m][f], after["models"][m][f]
            cells.append(f"{b['formal_recall']:.2f} → **{a['formal_recall']:.2f}** ({a['formal_recall_ratio']:.2f})")
        lines.append(f"| {f} | " + " | ".join(cells) + " |")
    casual = " · ".join(f"`{m}` {min(r['casual_recall'] for r in after['models'][m].values()):.2f}" for m in models)
    return "\n".join(lines) + f"\n\nLowest Casual recall over the framings, after: {casual}."


SPLITS_START, SPLITS_END = "<!-- framing-held-out-summary:start -->", "<!-- framing-held-out-summary:end -->"


def splits_table(val: dict, test: dict) -> str:
    """Formal recall per model and framing on val and on test (each with its ratio to the split's unframed
    value, the ratios under 0.9 in bold) and the smallest Casual recall per split; two runs of one framing set."""
    if val["framings"] != test["framings"] or (val["split"], test["split"]) != ("val", "test"):
        raise ValueError("--splits takes a val run and a test run of the same framings")
    models = [m for m in val["models"] if m in test["models"]]

    def cell(r: dict) -> str:
        ratio = r["formal_recall_ratio"]
        text = f"{r['formal_recall']:.2f} ({_ratio(ratio)})"
        return f"**{text}**" if ratio is not None and ratio < 0.9 else text

    head = "| framing | " + " | ".join(f"`{m}` val | `{m}` test" for m in models) + " |"
    lines = [head, "|---|" + "---|---|" * len(models)]
    for f in val["framings"]:
        cells = [cell(run["models"][m][f]) for m in models for run in (val, test)]
        lines.append(f"| {f} | " + " | ".join(cells) + " |")
    casual = " · ".join(
        f"`{m}` {min(r['casual_recall'] for r in val['models'][m].values()):.2f} (val), "
        f"{min(r['casual_recall'] for r in test['models'][m].values()):.2f} (test)"
        for m in models
    )
    return "\n".join(lines) + f"\n\nLowest Casual recall over these framings: {casual}."


def _digits(predictions: str, n: int) -> np.ndarray:
    """A result's per-image predictions ("0120…", one digit per image) as class indices; ValueError
    unless it holds exactly ``n`` digits."""
    if len(predictions) != n or not predictions.isdigit():
        raise ValueError(f"a predictions entry holds {len(predictions)} characters for {n} images (or not digits)")
    return np.frombuffer(predictions.encode(), np.uint8).astype(np.int64) - ord("0")


def compare(before: dict, after: dict, alpha: float = 0.05) -> dict:
    """Paired comparison of two results on the same images (paired by id; images in one result only are
    left out and counted): per model, framing and class, the images of that class one side gets right and
    the other wrong, and

    - an exact McNemar test on them (scipy's two-sided binomial test), its p-value adjusted over the model's
      framings and classes (Benjamini–Hochberg): ``worse`` / ``better`` mark a change beyond noise;
    - the net loss, (lost − gained) / images of the class, with the upper end of its 95% interval (Wald, paired
      proportions): a gate can ask that a loss be *shown small* (non-inferiority), not only not shown.

    Needs results that kept their predictions (``predictions``); ValueError when they cannot be paired."""
    from scipy.stats import binomtest, false_discovery_control

    if "predictions" not in before or "predictions" not in after:
        raise ValueError("both results need per-image predictions: rerun python -m bench.framing (--json)")
    if before["framings"] != after["framings"] or before["classes"] != after["classes"]:
        raise ValueError("the two results have different framings or classes: compare runs of the same code")
    models = [m for m in after["predictions"] if m in before["predictions"]]
    if not models:
        raise ValueError("the two results share no model")
    common = sorted(set(before["ids"]) & set(after["ids"]))
    if not common:
        raise ValueError("the two results share no image: compare runs of the same split and sample")
    pos_b = {i: k for k, i in enumerate(before["ids"])}
    pos_a = {i: k for k, i in enumerate(after["ids"])}
    ib, ia = np.array([pos_b[i] for i in common]), np.array([pos_a[i] for i in common])
    y = np.asarray(before["labels"])[ib]
    if not np.array_equal(y, np.asarray(after["labels"])[ia]):
        raise ValueError("the two results label the same images differently")
    classes = before["classes"]
    for k, c in enumerate(classes):
        if (k in before["labels"] or k in after["labels"]) and not (y == k).any():
            raise ValueError(
                f"no {c} image is in both results: they drew different images (give both runs the same "
                "--fresh-draw files, or none)"
            )
    out: dict = {
        "images": len(common),
        "left_out": {"before": len(before["ids"]) - len(common), "after": len(after["ids"]) - len(common)},
        "alpha": alpha,
        "models": {},
    }
    for m in models:
        rows: dict = {}
        for f in after["framings"]:
            right_b = _digits(before["predictions"][m][f], len(before["ids"]))[ib] == y
            right_a = _digits(after["predictions"][m][f], len(after["ids"]))[ia] == y
            for k, c in enumerate(classes):
                mask = y == k
                n = int(mask.sum())
                lost, gained = int((right_b & ~right_a & mask).sum()), int((~right_b & right_a & mask).sum())
                p = binomtest(lost, lost + gained).pvalue if lost + gained else 1.0
                net = (lost - gained) / n if n else 0.0
                se = np.sqrt(max(lost + gained - (lost - gained) ** 2 / n, 0.0)) / n if n else 0.0
                rows.setdefault(f, {})[c] = {
                    "images": n,
                    "lost": lost,
                    "gained": gained,
                    "p": float(p),
                    "net_loss": float(net),
                    "net_loss_upper95": float(net + 1.96 * se),
                }
        cells = [cell for by_class in rows.values() for cell in by_class.values()]
        for cell, q in zip(cells, false_discovery_control([c["p"] for c in cells])):
            cell["p_adjusted"] = float(q)
            cell["worse"] = bool(cell["lost"] > cell["gained"] and q < alpha)
            cell["better"] = bool(cell["gained"] > cell["lost"] and q < alpha)
        out["models"][m] = rows
    return out


def compare_table(res: dict) -> str:
    """Markdown: per model and framing, lost / gained images per class with the net loss's upper 95% bound;
    a change beyond noise marked."""
    left = res["left_out"]
    out = [f"{res['images']} images paired ({left['before']} only before, {left['after']} only after).", ""]
    for m, rows in res["models"].items():
        classes = list(next(iter(rows.values())))
        out += [f"**`{m}`** (lost = right before and wrong after; net loss's upper 95% bound in brackets)\n",
                "| framing | " + " | ".join(f"{c}: lost / gained" for c in classes) + " |",
                "|---|" + "---|" * len(classes)]  # fmt: skip
        for f, by_class in rows.items():
            cells = []
            for c in classes:
                x = by_class[c]
                cell = f"{x['lost']} / {x['gained']} [{x['net_loss_upper95']:+.3f}]"
                mark = " **worse**" if x["worse"] else " **better**" if x["better"] else ""
                cells.append(cell + (f"{mark} (q={x['p_adjusted']:.3f})" if mark else ""))
            out.append(f"| {f} | " + " | ".join(cells) + " |")
        worse = sum(x["worse"] for by_class in rows.values() for x in by_class.values())
        better = sum(x["better"] for by_class in rows.values() for x in by_class.values())
        out += ["", f"Beyond noise (adjusted p < {res['alpha']}): {worse} worse, {better} better.", ""]
    return "\n".join(out).rstrip()


CHANGE_START, CHANGE_END = "<!-- framing-change:start -->", "<!-- framing-change:end -->"


def _change_one(path: Path) -> tuple[str, float, float]:
    image = open_image(path.read_bytes()).image
    fitted = frame_and_fit(image)
    diff = np.abs(np.asarray(fitted.image, np.float32) - np.asarray(to_native(image), np.float32))
    return fitted.framing.action, float(diff.mean()), float((diff.max(axis=2) > 32).mean())


def dataset_change(workers: int) -> dict:
    """How much the framing step changes the dataset's own images (every usable image of every split):
    what it did, and the mean absolute change of the native canvas in grey levels."""
    data = find_default_data_dir()
    if data is None:
        raise SystemExit("no dataset found (set DRESSCODE_DATA or put it at ../shared/data/fashion-small)")
    catalog = load_styles(data)
    ids = catalog.ids
    with ProcessPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(_change_one, [catalog.image_path(i) for i in ids], chunksize=64))
    actions = Counter(r[0] for r in rows)
    changed = [r for r in rows if r[0] == "reframed"]
    return {
        "images": len(rows),
        "actions": dict(actions),
        "mean_abs_change_all": float(np.mean([r[1] for r in rows])),
        "mean_abs_change_reframed": float(np.mean([r[1] for r in changed])) if changed else 0.0,
        "share_of_pixels_changed_over_32_levels": float(np.mean([r[2] for r in rows])),
    }


def change_text(res: dict) -> str:
    """One paragraph for the README."""
    n, a = res["images"], res["actions"]

    def share(k: str) -> str:
        return f"{a.get(k, 0):,} ({a.get(k, 0) / n:.1%})"

    return (
        f"Of the dataset's {n:,} usable images, the framing step keeps {share('kept')} exactly as they are, "
        f"reframes {share('reframed')} (mostly model shots on a plain coloured backdrop and small products "
        f"such as watches, now cropped to the product), flags {share('busy')} as busy and finds no product in "
        f"{share('no_product')}. The native canvas changes by {res['mean_abs_change_all']:.2f} grey levels on "
        f"average over all images ({res['mean_abs_change_reframed']:.1f} over the reframed ones); "
        f"{res['share_of_pixels_changed_over_32_levels']:.1%} of all pixels move by more than 32 levels "
        "(`python -m bench.framing --dataset-change`)."
    )


COST_START, COST_END = "<!-- framing-cost:start -->", "<!-- framing-cost:end -->"


def cost(reps: int) -> dict:
    """The framing step's own cost on a dataset image and on a 12 MP phone photo, and one photo
    explained end to end by the app's two default models with and without it (interleaved)."""
    from bench.__main__ import DEFAULT_MODELS, big_photo, sample_images, timed_side_by_side
    from core.prediction.service import load_served

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
    served = [load_served(n).served for n in DEFAULT_MODELS]

    def explain(data: bytes, framing: bool) -> None:
        image = open_image(data).image
        native = np.asarray(frame_and_fit(image).image if framing else to_native(image))
        for ex in served:
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


def _report(
    res: dict, text: str, json_path: Path | None, readme: Path | None, marks: tuple[str, str], intro: str
) -> None:
    """Print ``text``; write ``res`` as JSON and ``intro + text`` between ``marks`` in the README when asked."""
    print(text)
    if json_path:
        json_path.write_text(json.dumps(res, indent=1))
    if readme:
        _rewrite(readme, *marks, intro + text)


def framing_params(settings: list[str]) -> FramingParams:
    """The default framing parameters with ``NAME=VALUE`` overrides (numbers; on/off for a switch),
    checked by name."""
    fields = DEFAULT_PARAMS.to_dict()
    changes = {}
    switch = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}
    for item in settings:
        name, sep, value = item.partition("=")
        if not sep or name not in fields:
            raise SystemExit(f"--set takes NAME=VALUE with NAME one of {', '.join(fields)}; got {item!r}")
        if isinstance(fields[name], bool):
            if value.strip().lower() not in switch:
                raise SystemExit(f"--set {name}: {value!r} is not on or off")
            changes[name] = switch[value.strip().lower()]
            continue
        try:
            changes[name] = type(fields[name])(float(value)) if isinstance(fields[name], int) else float(value)
        except ValueError:
            raise SystemExit(f"--set {name}: {value!r} is not a number") from None
    return dataclasses.replace(DEFAULT_PARAMS, **changes)


def _earlier_run(path: Path, split: str, flag: str) -> dict:
    """An earlier ``--json`` run of ``split`` (for ``flag``); a clear message when it cannot be read, has no image
    ids or is of another split (it would leave nothing out, and a draw beside it would not be fresh)."""
    try:
        earlier = json.loads(path.read_text())
        earlier["ids"] = [int(i) for i in earlier["ids"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SystemExit(f"{flag}: {path} is not a framing result with image ids ({err!s})") from None
    if earlier.get("split") != split:
        raise SystemExit(f"{flag}: {path} is a run of the {earlier.get('split')} split, not of {split}")
    return earlier


def _earlier_ids(paths: list[Path], split: str) -> set[int]:
    """The image ids of earlier ``--json`` runs of ``split`` (``--fresh-draw``), each checked by ``_earlier_run``."""
    return {i for path in paths for i in _earlier_run(path, split, "--fresh-draw")["ids"]}


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
    p.add_argument(
        "--summary", nargs=2, type=Path, metavar=("BEFORE", "AFTER"), help="before → after table of two --json files"
    )
    p.add_argument(
        "--splits",
        nargs=2,
        type=Path,
        metavar=("VAL", "TEST"),
        help="Formal recall of two --json runs of the same framings, val beside test (--readme: the held-out "
        "framings' summary block)",
    )
    p.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("BEFORE", "AFTER"),
        help="paired test of two --json files of the same split (per framing and class: images lost and gained)",
    )
    p.add_argument(
        "--held-out",
        action="store_true",
        help="score the held-out framings (core.images.framings.HELD_OUT_FRAMINGS) instead of the benchmark's",
    )
    p.add_argument("--dataset-change", action="store_true", help="measure how much the step changes the dataset")
    p.add_argument(
        "--fresh-draw",
        type=Path,
        action="append",
        default=[],
        metavar="EARLIER.json",
        help="draw the sampled Casual images among those this earlier --json run did not use (a second look on "
        "images no earlier decision saw); repeatable",
    )
    p.add_argument(
        "--same-images",
        type=Path,
        default=None,
        metavar="EARLIER.json",
        help="score exactly the images of this earlier --json run of the same split, weighted as it was (a paired "
        "comparison with it; replaces the draw: --casual-sample and --fresh-draw do not apply)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a framing parameter for this run (e.g. shadow_chroma=0 turns the shadow step off); repeatable",
    )
    args = p.parse_args(argv)
    params = framing_params(args.set)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.summary:
        before, after = (json.loads(p.read_text()) for p in args.summary)
        intro = (
            f"Formal recall on the **{after['split']}** split ({after['images']} images), shipped models before the "
            "framing step (`--no-normalise`) and the shipped models with it:\n\n"
        )
        _report(after, summary_table(before, after), None, args.readme, (SUMMARY_START, SUMMARY_END), intro)
        return 0
    if args.splits:
        try:
            val, test = (json.loads(path.read_text()) for path in args.splits)
            text = splits_table(val, test)
        except (OSError, ValueError, KeyError) as err:
            raise SystemExit(f"--splits: {err!s}") from None
        intro = f"Formal recall (its ratio to unframed), val ({val['images']} images), test ({test['images']}):\n\n"
        _report(val, text, None, args.readme, (SPLITS_START, SPLITS_END), intro)
        return 0
    if args.compare:
        try:
            res = compare(*(json.loads(path.read_text()) for path in args.compare))
        except (OSError, ValueError, KeyError) as err:  # KeyError: a result missing a field or a framing
            raise SystemExit(f"--compare: {err!s}") from None
        _report(res, compare_table(res), args.json, None, ("", ""), "")
        return 0
    if args.dataset_change:
        res = dataset_change(args.workers)
        _report(res, change_text(res), args.json, args.readme, (CHANGE_START, CHANGE_END), "")
        return 0
    import torch

    torch.set_num_threads(2)
    if args.cost:
        res = cost(args.reps)
        intro = "`python -m bench.framing --cost` (2 threads):\n\n"
        _report(res, cost_table(res), args.json, args.readme, (COST_START, COST_END), intro)
        return 0
    samples, only = {"Casual": args.casual_sample}, None
    if args.same_images:
        if args.fresh_draw:
            raise SystemExit("--same-images repeats an earlier run's images; --fresh-draw draws new ones: give one")
        earlier = _earlier_run(args.same_images, args.split, "--same-images")
        only, samples = set(earlier["ids"]), earlier.get("sampled", samples)
    result = run(
        args.split,
        [m.strip() for m in args.models.split(",") if m.strip()],
        samples,
        not args.no_normalise,
        args.weights,
        args.limit,
        args.workers,
        params,
        _earlier_ids(args.fresh_draw, args.split),
        only,
        "held-out" if args.held_out else "benchmark",
    )
    if args.fresh_draw:
        result["fresh_draw_from"] = [str(path) for path in args.fresh_draw]
    if args.same_images:
        result["same_images_as"] = str(args.same_images)
    held = " --held-out" if args.held_out else ""
    intro = (
        f"{'Held-out framings' if held else 'Framing benchmark'}, **{result['split']}** split, "
        f"{'with' if result['normalised'] else 'without'} framing normalisation "
        f"(`python -m bench.framing --split {result['split']}{held}`; {result['images']} images):\n\n"
    )
    marks = (HELD_OUT_START, HELD_OUT_END) if held else (README_START, README_END)
    _report(result, table(result), args.json, args.readme, marks, intro)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
