"""The local engine of ``python -m core.score``: a :class:`torch.utils.data.DataLoader` whose worker processes
read, decode and frame the files (:func:`core.scoring.catalogue.decode_item`) while the main process runs the
models (:meth:`core.scoring.catalogue.CatalogueScorer.score`) and writes the parts.

The workers are spawned, not forked: they start from a clean interpreter (no copy of the loaded models, no
threads of the compiling backbone), so their memory is their own. The Ray engine is :mod:`core.scoring.ray_engine`.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from core.scoring.inputs import Decoded, Item, decode_item

if TYPE_CHECKING:  # the decoding workers import this module: the models stay out of it
    from core.scoring.catalogue import CatalogueScorer
    from core.scoring.parts import PartStore

log = logging.getLogger(__name__)

PREFETCH = 4  # batches each worker decodes ahead


def memory_mb() -> tuple[float, float | None]:
    """This process's peak resident memory so far and its private memory now, in MB. Resident memory counts
    the shared libraries' pages in every process (torch's alone are several hundred MB); private memory
    (``Private_Clean + Private_Dirty`` of ``/proc/self/smaps_rollup``) is what this process alone holds."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kB
    try:
        lines = Path("/proc/self/smaps_rollup").read_text().splitlines()
    except OSError:
        return peak, None
    private = sum(int(line.split()[1]) for line in lines if line.startswith(("Private_Clean:", "Private_Dirty:")))
    return peak, private / 1024


@dataclass
class RunStats:
    """What a scoring run did: images scored and failed, seconds spent scoring, each worker's peak memory."""

    scored: int = 0
    errors: int = 0
    seconds: float = 0.0  # from the start of scoring (workers or actors starting included) to the last part
    first_batch: tuple[float, int] | None = None  # (seconds, rows) when the first rows came back
    peak_mb: dict[str, dict[str, float]] = field(default_factory=dict)  # worker → peak {"rss", "private"} MB

    def note_worker(self, worker: str, mb: tuple[float, float | None]) -> None:
        """A worker's :func:`memory_mb` reading; the peaks are kept."""
        old = self.peak_mb.setdefault(worker, {"rss": 0.0, "private": 0.0})
        old["rss"] = max(old["rss"], mb[0])
        old["private"] = max(old["private"], mb[1] or 0.0)

    def add(self, rows: int, errors: int, elapsed: float) -> None:
        """``rows`` more rows (``errors`` of them unreadable files) back ``elapsed`` seconds into the run."""
        if self.first_batch is None:
            self.first_batch = (elapsed, rows)
        self.scored += rows
        self.errors += errors

    @property
    def images_per_s(self) -> float:
        """Images per second over the whole run."""
        return self.scored / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_images_per_s(self) -> float:
        """Images per second after the first batch came back (start-up left out)."""
        if self.first_batch is None or self.seconds <= self.first_batch[0]:
            return 0.0
        return (self.scored - self.first_batch[1]) / (self.seconds - self.first_batch[0])

    def to_dict(self) -> dict:
        """For ``--stats-json``."""
        return {
            "scored": self.scored,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "first_batch_s": None if self.first_batch is None else round(self.first_batch[0], 3),
            "images_per_s": round(self.images_per_s, 1),
            "steady_images_per_s": round(self.steady_images_per_s, 1),
            "peak_mb": {k: {m: round(v, 1) for m, v in d.items()} for k, d in sorted(self.peak_mb.items())},
        }


def progress_bar(total: int, done: int, show: bool = True) -> tqdm:
    """The run's progress bar (images and images/s, on stderr); ``done`` were scored by an earlier run."""
    return tqdm(total=total, initial=done, unit="img", desc="score", smoothing=0.05, file=sys.stderr, disable=not show)


class _Files(Dataset):
    """The files to score, decoded on access."""

    def __init__(self, items: Sequence[Item]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Decoded:
        return decode_item(self.items[i])


def _collate(batch: list[Decoded]) -> tuple[list[Decoded], str, tuple[float, float | None]]:
    """A batch as decoded, with who decoded it and its memory (runs in the worker)."""
    info = torch.utils.data.get_worker_info()
    return batch, ("main" if info is None else f"decode-{info.id}"), memory_mb()


def score_local(
    scorer: CatalogueScorer,
    items: Sequence[Item],
    store: PartStore,
    workers: int = 2,
    batch_size: int = 64,
    bar: tqdm | None = None,
    warm_up: Callable[[], object] | None = None,
) -> RunStats:
    """Score ``items`` (none of them done yet) into ``store``: ``workers`` processes decode (0: the main
    process does), the main process predicts; rows waiting when the run stops are written as a last part.
    ``warm_up`` runs once the workers are starting (e.g. waiting for the compiled graphs)."""
    stats = RunStats()
    if not items:
        return stats
    loader = DataLoader(
        _Files(items),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        prefetch_factor=PREFETCH if workers else None,
        multiprocessing_context="spawn" if workers else None,
        persistent_workers=False,
    )
    t0 = time.perf_counter()
    try:
        batches = iter(loader)  # the workers start decoding now …
        if warm_up is not None:
            warm_up()  # … while the main process gets ready
        for decoded, worker, mb in batches:
            store.add(scorer.score(decoded))
            stats.add(len(decoded), sum(d.error is not None for d in decoded), time.perf_counter() - t0)
            stats.note_worker(worker, mb)
            if bar is not None:
                bar.update(len(decoded))
    finally:
        store.flush()  # what was scored before an interruption is kept
        stats.seconds = time.perf_counter() - t0
        stats.note_worker("main (models)", memory_mb())
    return stats
