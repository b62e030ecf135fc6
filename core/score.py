"""Score a whole catalogue: one row per image with every chosen model's class and probabilities.

    python -m core.score ../shared/data/fashion-small/styles.csv --out scores.parquet
    python -m core.score photos/ --out scores.csv --models effnet_lite0,resnet50 --overlays cams/
    python -m core.score list.txt --out scores.parquet --engine ray --workers 2
    python -m core.score list.txt --out scores.parquet --engine ray --address HEAD:6379

INPUT is a folder of images (recursively), a styles.csv-style table (id → images/<id>.jpg beside it) or a
text file of paths (one a line, relative to the file's folder). Each image is decoded and framed as the app
does an upload and classified on the app's multi-photo path, so every class is the app's. A row holds the
id and path, per model its class and per-class probabilities (calibrated where weights/calibration.json
fits the weights), the ensemble's where weights/ensemble.json exists, whether the models agree, the framing
step's note, and for a file that cannot be read its reason (and no classes).

Rows are written in parts to OUT.parts/ as they come (each part atomically) and merged into OUT at the end:
an interrupted run continues from the last part written, and a rerun on the same input skips every image
already scored. --restart scores everything again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from core.cli import non_negative_int, positive_int
from core.config import COMPILE_ENV_VAR, compile_enabled, weights_dir

if TYPE_CHECKING:
    from core.scoring.engines import RunStats

# Everything heavy (torch, the models, pyarrow) is imported where it is used: the local engine's spawned
# decoding workers import this module again (as their __main__) and need none of it.
log = logging.getLogger(__name__)

DEFAULT_MODELS = ("baseline", "resnet50")  # the app's default pair (the brief's baseline and improved model)
COMPILE_WAIT_S = 180.0  # the longest wait for the compiled graphs (a few seconds once Inductor's cache holds them)


def model_list(text: str) -> list[str]:
    """argparse type: comma-separated registry names."""
    from core.models.registry import REGISTRY

    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in REGISTRY]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown model(s) {unknown or text!r}; choose from {', '.join(REGISTRY)}")
    return list(dict.fromkeys(names))


def get_args_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m core.score", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("input", type=Path, help="a folder of images, a styles.csv-style table or a text file of paths")
    p.add_argument("--out", type=Path, required=True, help="output: Parquet, or CSV when it ends in .csv")
    p.add_argument(
        "--models", type=model_list, default=list(DEFAULT_MODELS), help="comma-separated (baseline,resnet50)"
    )
    p.add_argument("--engine", choices=["local", "ray"], default="local", help="local DataLoader (default) or Ray Data")
    p.add_argument(
        "--workers",
        type=non_negative_int,
        default=2,
        help="local: decoding processes (0: in the main process); ray: model actors (default 2)",
    )
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (local: 2; ray: CPUs per actor)")
    p.add_argument("--address", default=None, help="ray: an existing cluster (e.g. HEAD:6379 or auto)")
    p.add_argument("--cpus", type=positive_int, default=None, help="ray: CPUs of the local Ray started for the run")
    p.add_argument("--overlays", type=Path, default=None, help="also write a Grad-CAM overlay PNG per image here")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images decoded and scored together (64)")
    p.add_argument("--part-size", type=positive_int, default=1024, help="rows per part written to OUT.parts/ (1024)")
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default weights/ or $DRESSCODE_WEIGHTS)")
    p.add_argument(
        "--fp32", action="store_true", help="the plain fp32 path instead of the app's fast path (same classes, slower)"
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compile the fast path's backbones before scoring (default on unless DRESSCODE_COMPILE=0)",
    )
    p.add_argument(
        "--ensemble",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the ensemble's column where weights/ensemble.json exists (it runs every member model; default on)",
    )
    p.add_argument("--restart", action="store_true", help="drop OUT.parts/ and score everything again")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--stats-json", type=Path, default=None, help="also write the run's statistics here (bench/)")
    return p


def run(args: argparse.Namespace, crash_once: tuple[str, str] | None = None) -> tuple[RunStats, int, list[str]]:
    """Score ``args.input`` into ``args.out``; returns the run's statistics, the rows written and the ids
    without a row (none unless the run was cut short). ``crash_once``: the Ray engine's test hook."""
    import torch

    from core.prediction.inference import BATCH_FAST
    from core.scoring.catalogue import CatalogueScorer
    from core.scoring.engines import memory_mb, progress_bar, score_local
    from core.scoring.inputs import list_inputs
    from core.scoring.parts import PartStore

    items, left_out = list_inputs(args.input)
    weights = args.weights or weights_dir()
    compile_backbones = compile_enabled() if args.compile is None else args.compile
    if args.workers == 0 and args.engine == "ray":
        raise SystemExit("--engine ray needs at least one --workers")
    if args.engine == "local":
        os.environ[COMPILE_ENV_VAR] = "1" if compile_backbones else "0"  # read where the fast path is built
        torch.set_num_threads(args.threads or 2)
    fast = BATCH_FAST and not args.fp32
    # the driver loads the models too: their sha256, classes and calibration are the parts' settings
    scorer = CatalogueScorer(args.models, weights, fast, None, args.overlays, args.ensemble)
    store = PartStore(args.out, scorer.signature(), scorer.schema(), args.part_size, args.restart)
    done = store.done_ids()
    todo = [it for it in items if it.id not in done]
    log.info(
        "%d images in %s (%d entries left out); %d already scored, %d to score with %s on the %s engine",
        len(items), args.input, left_out, len(items) - len(todo), len(todo), ", ".join(args.models), args.engine,
    )  # fmt: skip
    bar = progress_bar(len(items), len(items) - len(todo), show=not args.quiet)
    try:
        if args.engine == "local":

            def compiled() -> None:  # the compiled graphs serve the whole run (workers start meanwhile)
                for m in scorer.models.values():
                    m.fast_predictor.wait_compiled(COMPILE_WAIT_S)

            warm_up = compiled if fast and compile_backbones else None
            stats = score_local(scorer, todo, store, args.workers, args.batch_size, bar, warm_up)
        else:
            from core.scoring.ray_engine import score_ray

            del scorer  # the actors hold the models
            kwargs = {
                "names": args.models,
                "weights": str(weights),
                "fast": fast,
                "compile_backbones": compile_backbones,
                "overlays": None if args.overlays is None else str(args.overlays.resolve()),
                "ensemble": args.ensemble,
            }
            where = {"address": args.address, "cpus": args.cpus, "bar": bar, "crash_once": crash_once}
            stats = score_ray(kwargs, todo, store, args.workers, args.batch_size, args.threads, **where)
            stats.note_worker("driver", memory_mb())
    finally:
        bar.close()
    rows, missing = store.merge([it.id for it in items])
    return stats, rows, missing


def main(argv: Sequence[str] | None = None) -> int:
    """The command: 0 when every input image has its row in OUT (a file that could not be read has its reason)."""
    from core.models.card import WeightsError
    from core.scoring.parts import SettingsChanged

    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    t0 = time.perf_counter()
    try:
        stats, rows, missing = run(args)
    except (SettingsChanged, WeightsError, FileNotFoundError, KeyError, ValueError) as exc:
        print(f"core.score: {exc}", file=sys.stderr)  # noqa: T201 - CLI output
        return 2
    wall = time.perf_counter() - t0
    print(  # noqa: T201 - CLI output
        f"{args.out}: {rows} rows; scored {stats.scored} images now ({stats.errors} unreadable) in "
        f"{stats.seconds:.1f} s ({stats.images_per_s:.0f} images/s), {wall:.1f} s in all"
    )
    if args.stats_json:
        record = {**stats.to_dict(), "rows": rows, "missing": len(missing), "wall_s": round(wall, 3)}
        args.stats_json.write_text(json.dumps({**record, "engine": args.engine, "workers": args.workers}, indent=1))
    if missing:
        print(f"core.score: {len(missing)} images have no row, e.g. {missing[:3]}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
