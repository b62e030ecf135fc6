"""Can the heatmaps be trusted? Per model and Grad-CAM layer, on a split of the dataset:

    python -m bench.trust --json PATH [--split test] [--limit N] [--readme README.md] [--index-limit M]

- ``randomisation_similarity``: the randomisation cascade (core.explanation.randomisation): the weights
  re-initialised from the head down, block by block, on a copy; per step the Spearman correlation and SSIM
  of the map with the trained model's, averaged over the images;
- ``deletion_auc`` / ``insertion_auc`` (core.explanation.faithfulness): deletion filled by ROAD's noisy
  linear imputation (``--deletion-fill``; white or blur on request), insertion from a blurred copy, in the
  map's order, with the same for a random order (``*_random``) and for the flipped map, least important
  first (``*_flipped``), averaged over the images; ``deletion_gain_vs_random``: the random order's deletion
  AUC minus the map's, per image, its mean and 95% bootstrap interval (above 0: the map beats random);
- the nearest-neighbour index per model (core.explanation.neighbours): build time over the training split
  (or its first M images), whether it came from the disk cache, and the time to find one photo's 6 nearest
  (embedding + search) once built.

The images: ``--limit`` N of the split, the same share of each class where it has enough (the rest
Casual), seeded; each map explains the class the model predicts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from core.config import find_default_data_dir
from core.data.cache import load_native_images
from core.data.catalog import Catalog, load_styles
from core.data.split import SPLITS, get_or_make_split
from core.explanation import faithfulness, neighbours, randomisation
from core.models.registry import REGISTRY, get_spec
from core.prediction.served import ServedModel
from core.prediction.service import load_served

log = logging.getLogger("bench.trust")
START, END = "<!-- trust:start -->", "<!-- trust:end -->"


def sample_ids(catalog: Catalog, ids: list[int], limit: int | None, seed: int = 0) -> list[int]:
    """``limit`` of ``ids``, an equal share per class where the class has enough (the rest from the largest)."""
    if limit is None or limit >= len(ids):
        return sorted(ids)
    rng = np.random.default_rng(seed)
    label_of = catalog.label_of()
    by_class = {c: [i for i in ids if label_of[i] == c] for c in range(len(catalog.classes))}
    share = limit // len(by_class)
    chosen = [i for c, members in by_class.items() for i in rng.permutation(members)[:share].tolist()]
    rest = [i for i in rng.permutation(ids).tolist() if i not in set(chosen)]
    return sorted(chosen + rest[: limit - len(chosen)])


def bootstrap_mean_ci(values: np.ndarray, resamples: int = 2000, seed: int = 0) -> list[float]:
    """95% percentile-bootstrap interval of the mean of ``values`` (images resampled with replacement)."""
    from scipy.stats import bootstrap

    values = np.asarray(values, float)
    if len(values) < 2:  # nothing to resample (``--limit 1``): the interval is the value itself
        mean = float(values.mean()) if len(values) else float("nan")
        return [mean, mean]
    res = bootstrap((values,), np.mean, n_resamples=resamples, method="percentile", random_state=seed)
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def measure_model(served: ServedModel, images: np.ndarray, deletion_fill: str = "road") -> dict[str, dict]:
    """Per layer: the cascade averaged over the images, and the mean deletion/insertion AUCs."""
    layers = served.layer_paths
    start = time.perf_counter()
    cascade = randomisation.cascade(served, images, layers)
    cascade_s = time.perf_counter() - start
    targets = served.predict(images).argmax(1)
    maps = randomisation.gradcam_maps(served, images, targets, layers)
    start = time.perf_counter()
    aucs: dict[str, list[dict[str, float]]] = {layer: [] for layer in layers}
    for img, t, by_layer in zip(images, targets, maps):
        for layer in layers:
            curves = faithfulness.curves(served, img, by_layer[layer], int(t), deletion_fill=deletion_fill)
            aucs[layer].append(curves.summary())
    curves_s = time.perf_counter() - start
    out = {}
    for layer in layers:
        row: dict = {"randomisation_similarity": cascade.mean(layer)}
        for key in aucs[layer][0]:
            row[key] = float(np.mean([a[key] for a in aucs[layer]]))
        gain = np.array([a["deletion_auc_random"] - a["deletion_auc"] for a in aucs[layer]])
        row["deletion_gain_vs_random"] = {"mean": float(gain.mean()), "ci95": bootstrap_mean_ci(gain)}
        out[layer] = row
    log.info("%s: cascade %.1f s, curves %.1f s for %d images", served.spec.name, cascade_s, curves_s, len(images))
    return out


def measure_neighbours(
    served: ServedModel, catalog: Catalog, train: list[int], photos: np.ndarray, rebuild: bool
) -> dict[str, float | int | bool]:
    """Build (or read) the index and time one photo's 6 nearest (embedding + search), photo by photo."""
    index, how = neighbours.build_index(served, catalog, train, use_cache=not rebuild)
    index.nearest(served, photos[:1])  # warm-up
    times, search = [], []
    for img in photos:
        t0 = time.perf_counter()
        vec = neighbours.embed(served, img[None])
        t1 = time.perf_counter()
        index.search(vec)
        t2 = time.perf_counter()
        times.append(t2 - t0)
        search.append(t2 - t1)
    return {
        "indexed_images": len(index),
        "build_s": round(float(how["seconds"]), 2),
        "from_cache": bool(how["cached"]),
        "per_photo_ms_mean": round(1000 * float(np.mean(times)), 2),
        "per_photo_ms_p90": round(1000 * float(np.percentile(times, 90)), 2),
        "search_only_ms_mean": round(1000 * float(np.mean(search)), 2),
    }


def _rows_to_keep(args: argparse.Namespace, ids: list[int]) -> dict[str, dict]:
    """With ``--update``: the existing --json's rows of the models not measured now; refused when that run
    scored other images (another split, limit or dataset), since the rows would not compare."""
    if not args.json.is_file():
        raise SystemExit(f"--update: {args.json} does not exist yet; run without --update first")
    old = json.loads(args.json.read_text())
    if old["meta"]["ids"] != ids or old["meta"]["deletion_fill"] != args.deletion_fill:
        raise SystemExit(f"--update: {args.json} measured other images or another deletion fill; run without --update")
    rows = {n: r for n, r in old["models"].items() if n not in args.models}
    for r in rows.values():
        r.setdefault("date", old["meta"]["date"])
        r.setdefault("machine", old["meta"]["machine"])
    return rows


def table(res: dict) -> str:
    """The markdown tables: checks per model and layer, then the neighbour index."""
    lines = [
        "| model | layer | Spearman / SSIM after the head | … fully randomised | deletion AUC ↓ (random, flipped) "
        "| random − map, 95% interval | insertion AUC ↑ (random, flipped) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in res["models"].items():
        default = get_spec(name).default_cam_layer.path if name in REGISTRY else None
        for layer, r in m["layers"].items():
            g = r.get("deletion_gain_vs_random")
            gain = f"{g['mean']:+.3f} [{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}]" if g else "—"
            shown = f"`{layer}`" + (" (default)" if layer == default else "")
            steps = r["randomisation_similarity"]
            heads = [s for s in steps[1:] if s["step"].startswith("head")]
            h, f = (heads[-1] if heads else steps[1]), steps[-1]  # the whole head new; every block new
            lines.append(
                f"| `{name}` | {shown} | {h['spearman']:.2f} / {h['ssim']:.2f} "
                f"| {f['spearman']:.2f} / {f['ssim']:.2f} "
                f"| {r['deletion_auc']:.2f} ({r['deletion_auc_random']:.2f}, {r['deletion_auc_flipped']:.2f}) "
                f"| {gain} | {r['insertion_auc']:.2f} "
                f"({r['insertion_auc_random']:.2f}, {r['insertion_auc_flipped']:.2f}) |"
            )
    lines += [
        "",
        "| model | neighbour index: images | build (or read from cache) | one photo's 6 nearest (embed + search), "
        "mean / p90 | search alone |",
        "|---|---|---|---|---|",
    ]
    for name, m in res["models"].items():
        n = m.get("neighbours")
        if n:
            built = f"{n['build_s']:.1f} s" + (" (from the disk cache)" if n["from_cache"] else "")
            lines.append(
                f"| `{name}` | {n['indexed_images']:,} | {built} | {n['per_photo_ms_mean']:.1f} / "
                f"{n['per_photo_ms_p90']:.1f} ms | {n['search_only_ms_mean']:.2f} ms |"
            )
    return "\n".join(lines)


def _kept_rows(res: dict) -> str:
    """A sentence naming the rows an ``--update`` run kept from an earlier one (date, machine), if any."""
    m = res["meta"]
    older = [
        f"`{n}` on {r['date']} ({r['machine']})"
        for n, r in res["models"].items()
        if (r.get("date", m["date"]), r.get("machine", m["machine"])) != (m["date"], m["machine"])
    ]
    return f" Rows kept from an earlier run of the same images (`--update`): {', '.join(older)}." if older else ""


def write_readme(path: Path, res: dict) -> None:
    """Replace the text between the trust markers of ``path``."""
    body = path.read_text()
    if START not in body or END not in body:
        raise SystemExit(f"{path} has no {START} … {END} block")
    m = res["meta"]
    intro = (
        f"Measured {m['date']} on {m['machine']}, {m['threads']} threads (`python -m bench.trust --json "
        f"{m['json']} --split {m['split']} --limit {m['limit']} --readme README.md`): {m['images']} {m['split']} "
        f"images ({m['per_class']}), each map explaining the class the model predicts; SSIM/Spearman 1 = the "
        "trained model's map unchanged." + (f" {m['note']}" if m.get("note") else "") + _kept_rows(res) + "\n\n"
    )
    head, rest = body.split(START, 1)
    path.write_text(head + START + "\n" + intro + table(res) + "\n" + END + rest.split(END, 1)[1])


def main(argv: list[str] | None = None) -> int:
    """Measure, write the JSON, print the tables."""
    ap = argparse.ArgumentParser(
        prog="python -m bench.trust", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--json", type=Path, required=True, help="where to write the results")
    ap.add_argument("--split", choices=SPLITS, default="test", help="split the images come from (test)")
    ap.add_argument("--limit", type=int, default=None, help="images of the split, balanced over classes (all)")
    ap.add_argument("--index-limit", type=int, default=None, help="index only the first M training images (all)")
    ap.add_argument("--rebuild-index", action="store_true", help="build the indexes even when cached")
    ap.add_argument("--models", nargs="+", choices=list(REGISTRY), default=list(REGISTRY))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--deletion-fill", choices=faithfulness.FILLS, default="road", help="what deleted pixels become (road)"
    )
    ap.add_argument("--readme", type=Path, default=None, help="write the tables between the trust markers")
    ap.add_argument("--no-measure", action="store_true", help="only print (and --readme write) the --json results")
    ap.add_argument(
        "--update",
        action="store_true",
        help="measure only --models and keep the other models' rows of the existing --json (same images)",
    )
    args = ap.parse_args(argv)
    if args.no_measure:
        res = json.loads(args.json.read_text())
        print(table(res))  # noqa: T201 - the table is the output
        if args.readme:
            write_readme(args.readme, res)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    root = find_default_data_dir()
    if root is None:
        ap.error("no dataset found (set DRESSCODE_DATA)")
    catalog = load_styles(root)
    split = get_or_make_split(catalog)
    ids = sample_ids(catalog, split[args.split], args.limit)
    images = load_native_images(catalog, ids)
    train = split["train"][: args.index_limit] if args.index_limit else split["train"]
    label_of = catalog.label_of()
    counts = {c: sum(label_of[i] == k for i in ids) for k, c in enumerate(catalog.classes)}
    res = {
        "meta": {
            "date": date.today().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "threads": args.threads,
            "split": args.split,
            "limit": args.limit,
            "images": len(ids),
            "per_class": ", ".join(f"{n} {c}" for c, n in counts.items()),
            "ids": ids,
            "json": str(args.json),
            "deletion_fill": args.deletion_fill,
            "insertion_fill": "blur",
            "fractions": list(faithfulness.DEFAULT_FRACTIONS),
        },
        "models": {},
    }
    kept = _rows_to_keep(args, ids) if args.update else {}
    for name in args.models:
        loaded = load_served(name)
        if loaded.served is None:
            log.warning("%s left out: %s", name, loaded.error)
            continue
        row = {"layers": measure_model(loaded.served, images, args.deletion_fill)}
        row["neighbours"] = measure_neighbours(loaded.served, catalog, train, images, args.rebuild_index)
        row["date"], row["machine"] = res["meta"]["date"], res["meta"]["machine"]
        res["models"][name] = row
        if kept:  # the registry's order, the rows kept from the earlier run in their places
            res["models"] = {n: res["models"].get(n) or kept[n] for n in REGISTRY if n in res["models"] or n in kept}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))  # after each model: a long run keeps what it measured
    print(table(res))  # noqa: T201 - the table is the output
    if args.readme:
        write_readme(args.readme, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
