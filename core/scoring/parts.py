"""The resumable output of ``python -m core.score``: rows go to ``PATH.parts/`` in Parquet parts, each written
to a temporary name and renamed (a part is whole or absent, whatever stops the run), then merged into ``PATH``.

``PATH.parts/meta.json`` holds what the rows depend on (models and their weights' sha256, classes, path,
calibration, ensemble): a rerun with the same settings skips every id a part holds and scores the rest; a
rerun with other settings is refused unless told to start over. The merge keeps one row per input id, in
the input's order.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

META_FILE = "meta.json"
METADATA_KEY = b"dresscode.score"  # the Parquet output's schema metadata: the run's settings


class SettingsChanged(RuntimeError):
    """The parts on disk were written with other settings than this run's."""


def parts_dir_of(out: Path) -> Path:
    """Where the parts of output ``out`` go: ``OUT.parts`` beside it."""
    return out.with_name(out.name + ".parts")


def _atomic_write(path: Path, write) -> None:  # noqa: ANN001 - write(tmp_path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class PartStore:
    """The parts of one output: which ids are done, new parts written atomically every ``part_size`` rows."""

    def __init__(self, out: Path, settings: dict, schema: pa.Schema, part_size: int = 1024, restart: bool = False):
        self.out = Path(out)
        self.dir = parts_dir_of(self.out)
        self.settings = settings
        self.schema = schema
        self.part_size = part_size
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self.written = 0  # rows written by this run
        if restart and self.dir.exists():
            log.info("--restart: removing %s", self.dir)
            shutil.rmtree(self.dir)
        meta = self.dir / META_FILE
        if meta.is_file():
            old = json.loads(meta.read_text())
            if old.get("settings") != settings:
                raise SettingsChanged(
                    f"{self.dir} holds rows scored with other settings ({_diff(old.get('settings', {}), settings)}); "
                    "pass the same ones, or --restart to score everything again"
                )
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            _atomic_write(meta, lambda p: p.write_text(json.dumps({"settings": settings}, indent=1)))
        for stale in self.dir.glob(".*.tmp"):  # a run killed while writing leaves only these: never a half part
            stale.unlink(missing_ok=True)

    def parts(self) -> list[Path]:
        """The parts written so far, oldest first."""
        return sorted(self.dir.glob("part-*.parquet"))

    def done_ids(self) -> set[str]:
        """Every id some part holds."""
        done: set[str] = set()
        for part in self.parts():
            done.update(pq.read_table(part, columns=["id"]).column("id").to_pylist())
        return done

    def add(self, table: pa.Table) -> None:
        """Rows to write; a part is written once ``part_size`` rows are waiting."""
        if table.num_rows:
            self._buffer.append(table.select(self.schema.names).cast(self.schema))
            self._buffered += table.num_rows
        if self._buffered >= self.part_size:
            self.flush()

    def flush(self) -> None:
        """Write the waiting rows as one part (temporary name, then renamed)."""
        if not self._buffered:
            return
        table = pa.concat_tables(self._buffer)
        n = len(self.parts())
        path = self.dir / f"part-{n:06d}-{uuid.uuid4().hex[:8]}.parquet"
        _atomic_write(path, lambda p: pq.write_table(table, p))
        self.written += table.num_rows
        self._buffer, self._buffered = [], 0

    def merge(self, ids: Sequence[str]) -> tuple[int, list[str]]:
        """Write ``OUT`` (Parquet, or CSV when it ends in ``.csv``) from the parts: one row per id of ``ids``,
        in that order. Returns the rows written and the ids no part holds (none after a complete run)."""
        self.flush()
        position = {i: k for k, i in enumerate(ids)}
        tables = [pq.read_table(p).select(self.schema.names).cast(self.schema) for p in self.parts()]
        table = pa.concat_tables(tables) if tables else self.schema.empty_table()
        first: dict[str, int] = {}
        for row, i in enumerate(table.column("id").to_pylist()):
            if i in position and i not in first:
                first[i] = row
        order = sorted(first, key=position.__getitem__)
        merged = table.take(pa.array([first[i] for i in order], type=pa.int64()))
        missing = [i for i in ids if i not in first]
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if self.out.suffix.lower() == ".csv":
            _atomic_write(self.out, lambda p: pacsv.write_csv(merged, p))
        else:
            meta = {METADATA_KEY: json.dumps(self.settings).encode()}
            _atomic_write(self.out, lambda p: pq.write_table(merged.replace_schema_metadata(meta), p))
        return merged.num_rows, missing


def _diff(old: dict, new: dict) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "; ".join(f"{k}: {old.get(k)!r} then, {new.get(k)!r} now" for k in keys)
