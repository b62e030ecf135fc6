"""The Ray engine of ``python -m core.score``: the same scoring as Ray Data — the paths from
``ray.data.from_items``, then ``map_batches`` on a fixed pool of actors that each hold the models
(:class:`ScoreActor`: read and decode the batch's files as the app does, predict, return the rows).

The driver streams the actors' rows (``iter_batches``: a few hundred bytes an image, never the pixels)
into the same atomic Parquet parts as the local engine (:class:`core.scoring.parts.PartStore`), so a run
stopped anywhere continues where it stopped, on either engine. An actor that dies is restarted and its
batch retried (Ray Data's actor pools default to ``max_restarts=-1`` and ``max_task_retries=-1``): a batch's
rows reach the driver only once it is done, so nothing is lost and nothing is written twice.

Ray is optional (``pip install -r requirements-scale.txt``): it is imported only here, only for ``--engine ray``.
On a cluster (``--address``) every node needs the project at the same path (and the input files and
``--overlays`` on a shared filesystem).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import torch
from tqdm import tqdm

from core.config import COMPILE_ENV_VAR, ROOT
from core.scoring.catalogue import CatalogueScorer
from core.scoring.engines import RunStats, memory_mb
from core.scoring.inputs import Item, decode_item
from core.scoring.parts import PartStore

log = logging.getLogger(__name__)

WORKER_COLUMNS = ("_worker", "_rss_mb", "_private_mb")  # added by the actors for the run's statistics, never written
COMPILE_WAIT_S = 180.0  # how long an actor waits for its compiled graphs before serving with the traced ones
OBJECT_STORE_MB = 256  # a local Ray's object store: rows and paths only
# batches an actor works on at once, in threads: one is decoded while another is on the models (their locks
# serialise the forward passes), as the local engine's decoding workers overlap with its models
CALLS_PER_ACTOR = 2


class ScoreActor:
    """One Ray worker: the models loaded once, then batches of ``{"id", "path"}`` → rows.

    ``crash_once`` (tests only): ``(id, marker file)`` — the first actor to meet ``id`` writes the marker
    and exits the process at once, as a killed worker would.
    """

    def __init__(
        self,
        names: Sequence[str],
        weights: str,
        fast: bool,
        compile_backbones: bool,
        overlays: str | None,
        threads: int,
        crash_once: tuple[str, str] | None = None,
        ensemble: bool = True,
    ) -> None:
        os.environ[COMPILE_ENV_VAR] = "1" if compile_backbones else "0"
        torch.set_num_threads(threads)
        wait = COMPILE_WAIT_S if (fast and compile_backbones) else None
        shown = None if overlays is None else Path(overlays)
        self.scorer = CatalogueScorer(names, Path(weights), fast, wait, shown, ensemble)
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None  # decoding releases the GIL for most of it
        self.crash_once = crash_once
        self.worker = f"ray {socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict) -> pa.Table:
        items = [Item(str(i), str(p)) for i, p in zip(batch["id"], batch["path"])]
        if self.crash_once is not None:
            crash_id, marker = self.crash_once
            if any(it.id == crash_id for it in items) and not os.path.exists(marker):
                Path(marker).write_text(str(os.getpid()))
                os._exit(1)
        decoded = list(self.pool.map(decode_item, items)) if self.pool else [decode_item(it) for it in items]
        table = self.scorer.score(decoded)
        n, (rss, private) = table.num_rows, memory_mb()
        table = table.append_column(WORKER_COLUMNS[0], pa.array([self.worker] * n, pa.string()))
        table = table.append_column(WORKER_COLUMNS[1], pa.array([rss] * n, pa.float64()))
        return table.append_column(WORKER_COLUMNS[2], pa.array([private] * n, pa.float64()))


def _start_ray(address: str | None, cpus: int | None) -> bool:
    """Connect to the cluster at ``address``, or start a local Ray with ``cpus`` CPUs; False if one was running."""
    import ray

    if ray.is_initialized():
        return False
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path, COMPILE_ENV_VAR: os.environ.get(COMPILE_ENV_VAR, "1")}
    kwargs: dict = {"runtime_env": {"env_vars": env}, "include_dashboard": False, "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=cpus or os.cpu_count(), object_store_memory=OBJECT_STORE_MB * 2**20, **kwargs)
    return True


def score_ray(
    scorer_kwargs: dict,
    items: Sequence[Item],
    store: PartStore,
    workers: int = 2,
    batch_size: int = 64,
    threads: int | None = None,
    address: str | None = None,
    cpus: int | None = None,
    bar: tqdm | None = None,
    crash_once: tuple[str, str] | None = None,
) -> RunStats:
    """Score ``items`` (none of them done yet) into ``store`` on ``workers`` actors of ``threads`` torch threads
    each (default: the local CPUs shared among them); ``scorer_kwargs``: ``names``, ``weights``, ``fast``,
    ``compile_backbones``, ``overlays``, ``ensemble`` (:class:`ScoreActor`). A local Ray is started (and stopped) unless
    one is running or ``address`` names a cluster."""
    import ray

    stats = RunStats()
    if not items:
        return stats
    cpus = cpus or os.cpu_count() or 1
    threads = threads or max(1, cpus // workers)
    started = _start_ray(address, cpus)
    t0 = time.perf_counter()
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the run's own bar counts images
        ctx.print_on_execution_start = False
        rows = [{"id": it.id, "path": it.path} for it in items]
        ds = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / batch_size)))
        ds = ds.map_batches(
            ScoreActor,
            fn_constructor_kwargs={**scorer_kwargs, "threads": threads, "crash_once": crash_once},
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(
                size=workers, max_concurrent_calls_per_actor=CALLS_PER_ACTOR, enable_true_multi_threading=True
            ),
            num_cpus=threads,
        )
        for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            for worker, rss, private in set(zip(*(table.column(c).to_pylist() for c in WORKER_COLUMNS))):
                stats.note_worker(worker, (rss, private))
            table = table.drop_columns(list(WORKER_COLUMNS))
            store.add(table)
            stats.add(table.num_rows, table.num_rows - table.column("error").null_count, time.perf_counter() - t0)
            if bar is not None:
                bar.update(table.num_rows)
    finally:
        store.flush()
        stats.seconds = time.perf_counter() - t0
        if started:
            ray.shutdown()
    return stats
