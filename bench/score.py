"""Catalogue scoring throughput: ``python -m core.score`` with two models (``--models``, core.score's default
pair, exactly those two: ``--no-ensemble``) on the saved test split, the local engine against Ray with 1 and 2
workers — images/s (decoding, framing, both models and the Parquet parts included) and each worker's peak
memory; then more local rows (``--also``): a cheaper pair, a heavier one, and the default pair with the ensemble
column (which runs every member model, three in all).

    python -m bench.score --json bench/score-results.json --readme README.md

Each configuration is a fresh ``python -m core.score`` process on the same list of files, writing to a fresh
output. Before the timed runs one short untimed run fills Inductor's on-disk cache, so every timed process
compiles its backbones from that cache (a few seconds, counted in its start-up). "Steady" rates leave out the
start-up (the time until the first rows come back: workers or actors starting, models loading and compiling);
"whole run" rates do not. The rows of every configuration are compared with the local engine's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd
import torch

from core.config import DEFAULT_SPLIT_FILE, ROOT, find_default_data_dir
from core.data.catalog import Catalog, load_styles
from core.data.split import load_split

CONFIGS = {"local": ("local", 2), "ray1": ("ray", 1), "ray2": ("ray", 2)}
TARGET_LOCAL = 250.0  # images/s with two models on 2 cores
TARGET_RAY_GAP = 0.15  # Ray within 15% of local on one machine
MARKERS = ("<!-- score:start -->", "<!-- score:end -->")


def test_files(data: Path, split_file: Path, split: str, limit: int | None) -> list[Path]:
    """The image files of the saved split (all of it unless ``limit``)."""
    catalog: Catalog = load_styles(data)
    ids = load_split(split_file)[split]
    ids = ids[:limit] if limit else ids
    return [catalog.image_path(i) for i in ids]


def run_score(
    listing: Path, out: Path, engine: str, workers: int, models: str, extra: list[str], ensemble: bool = False
) -> dict:
    """One ``python -m core.score`` process; its statistics and wall time. ``ensemble``: with the ensemble's
    column (every member model runs), else exactly ``models``."""
    stats = out.with_suffix(".stats.json")
    cmd = [sys.executable, "-m", "core.score", str(listing), "--out", str(out), "--models", models]
    cmd += ["--ensemble" if ensemble else "--no-ensemble"]
    cmd += ["--engine", engine, "--workers", str(workers), "--quiet", "--stats-json", str(stats), *extra]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return {**json.loads(stats.read_text()), "command_wall_s": round(wall, 2), "models": models, "ensemble": ensemble}


def class_differences(a: Path, b: Path, models: list[str]) -> int:
    """Rows whose class differs between two outputs (same ids, any model)."""
    x, y = pd.read_parquet(a).set_index("id"), pd.read_parquet(b).set_index("id")
    y = y.loc[x.index]
    return int(sum((x[f"{m}_class"].fillna("") != y[f"{m}_class"].fillna("")).sum() for m in models))


def workers(peak_mb: dict[str, dict[str, float]]) -> list[tuple[str, dict[str, float]]]:
    """The workers' memory under short names: Ray's actors (one per process, restarts included) as actor 1, 2 …."""
    out, actors = [], 0
    for name, mb in peak_mb.items():
        if name.startswith("ray "):
            actors += 1
            name = f"actor {actors}"
        out.append((name, mb))
    return out


def table(res: dict) -> str:
    """The README table."""
    rows = [
        "| models | engine | workers | images | images/s, steady | images/s, whole run | start-up to first rows | "
        "command wall | peak memory per process, MB: resident (private) | classes ≠ local |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["runs"].values():
        mem = "; ".join(f"{name} {mb['rss']:.0f} ({mb['private']:.0f})" for name, mb in workers(r["peak_mb"]))
        shown = ", ".join(f"`{m}`" for m in r.get("models", res["models"]).split(","))
        shown += " + ensemble (all members)" if r.get("ensemble") else ""
        rows.append(
            f"| {shown} | {r['engine']} | {r['workers']} | {r['scored']} | **{r['steady_images_per_s']:.0f}** | "
            f"{r['images_per_s']:.0f} | {r['first_batch_s']:.1f} s | {r['command_wall_s']:.1f} s | {mem} | "
            f"{r.get('class_differences_vs_local', 0 if r is res['runs'].get('local') else '—')} |"
        )
    return "\n".join(rows)


def verdicts(res: dict) -> list[str]:
    """The targets, met or not."""
    runs = res["runs"]
    out = []
    if "local" in runs:
        local = runs["local"]["steady_images_per_s"]
        met = "met" if local >= TARGET_LOCAL else "**not met**"
        pair = runs["local"].get("models", res["models"])
        out.append(f"local ≥ {TARGET_LOCAL:.0f} images/s with two models ({pair}): {local:.0f} ({met})")
        for name in ("ray1", "ray2"):
            if name in runs:
                ratio = runs[name]["steady_images_per_s"] / local
                met = "met" if ratio >= 1 - TARGET_RAY_GAP else "**not met**"
                out.append(f"Ray, {runs[name]['workers']} worker(s), within 15% of local: {ratio:.2f}× local ({met})")
    return out


def write_readme(path: Path, res: dict) -> None:
    """Replace the block between the score markers."""
    a, b = MARKERS
    body = path.read_text()
    block = (
        f"{a}\nMeasured {res['date']} on {res['machine']}, {res['images']} images of the saved {res['split']} split, "
        f"models {res['models']} (`python -m bench.score --json bench/score-results.json --readme README.md`):\n\n"
        f"{table(res)}\n\nTargets: "
        + "; ".join(verdicts(res))
        + "."
        + (f" {res['note']}" if res.get("note") else "")
        + f"\n{b}"
    )
    if a not in body:
        raise SystemExit(f"{path} has no {a} … {b} block")
    path.write_text(body[: body.index(a)] + block + body[body.index(b) + len(b) :])


def main(argv: list[str] | None = None) -> int:
    """Run the configurations, print the table, write JSON (and the README block)."""
    ap = argparse.ArgumentParser(prog="python -m bench.score", description=__doc__)
    ap.add_argument("--json", type=Path, required=True, help="write every measurement here")
    ap.add_argument("--readme", type=Path, default=None, help="rewrite this README's score block")
    ap.add_argument(
        "--models", default="baseline,resnet50", help="comma-separated: core.score's default pair (baseline,resnet50)"
    )
    ap.add_argument(
        "--also",
        default="baseline,effnet_lite0;effnet_lite0,resnet50;ensemble",
        help="more local-engine rows, ';'-separated: a model list, or 'ensemble' for --models with the ensemble",
    )
    ap.add_argument("--configs", default="local,ray1,ray2", help=f"of {', '.join(CONFIGS)}")
    ap.add_argument("--split", default="test", help="split of the saved split file (test)")
    ap.add_argument("--split-file", type=Path, default=DEFAULT_SPLIT_FILE)
    ap.add_argument("--limit", type=int, default=None, help="only the first N images (smoke test)")
    ap.add_argument("--extra", default="", help="more core.score options for every run, e.g. '--no-compile'")
    args = ap.parse_args(argv)
    data = find_default_data_dir()
    if data is None:
        raise SystemExit("no dataset found ($DRESSCODE_DATA or ../shared/data/fashion-small)")
    files = test_files(data, args.split_file, args.split, args.limit)
    models = args.models.split(",")
    extra = args.extra.split()
    res: dict = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "split": args.split,
        "images": len(files),
        "models": args.models,
        "runs": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        listing = Path(tmp) / "files.txt"
        listing.write_text("".join(f"{p}\n" for p in files))
        warm = Path(tmp) / "warm.txt"
        warm.write_text("".join(f"{p}\n" for p in files[:64]))
        alsos = [a.strip() for a in args.also.split(";") if a.strip()]
        every = ",".join(dict.fromkeys([*models, *(m for a in alsos if a != "ensemble" for m in a.split(","))]))
        # fills Inductor's cache for every model measured (with the ensemble: all of its members)
        run_score(warm, Path(tmp) / "warm.parquet", "local", 0, every, extra, ensemble="ensemble" in alsos)
        outs = {}
        for name in args.configs.split(","):
            engine, workers = CONFIGS[name]
            outs[name] = Path(tmp) / f"{name}.parquet"
            print(f"{name}: {engine} engine, {workers} worker(s) on {len(files)} images …", file=sys.stderr)
            res["runs"][name] = run_score(listing, outs[name], engine, workers, args.models, extra)
            if name != "local" and "local" in outs:
                res["runs"][name]["class_differences_vs_local"] = class_differences(outs["local"], outs[name], models)
        for k, also in enumerate(alsos):
            ensemble = also == "ensemble"
            chosen = args.models if ensemble else also
            print(f"also: local engine, {chosen}{' + ensemble' if ensemble else ''} …", file=sys.stderr)
            out = Path(tmp) / f"also{k}.parquet"
            res["runs"][f"also{k}"] = run_score(listing, out, "local", 2, chosen, extra, ensemble)
    text = table(res)
    print(f"\n{text}\n\n" + "\n".join(verdicts(res)))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1))
    if args.readme:
        write_readme(args.readme, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
