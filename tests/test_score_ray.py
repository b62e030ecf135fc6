"""python -m core.score --engine ray: a local Ray on 2 CPUs scores a generated folder like the local engine,
with a corrupt file and a worker killed in the middle of the run (its batch is retried: nothing lost,
nothing written twice). Skipped when Ray is not installed (``pip install -r requirements-scale.txt``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from test_score import make_folder

from core import score
from core.scoring.parts import parts_dir_of

pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_ray_engine_with_a_killed_worker_matches_local(tmp_path: Path) -> None:
    photos = make_folder(tmp_path / "photos", n=40)
    base = [str(photos), "--models", "baseline", "--batch-size", "6", "--part-size", "8", "--quiet", "--no-compile"]
    local_out, ray_out = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    assert score.main([*base, "--out", str(local_out), "--workers", "0", "--threads", "1"]) == 0
    marker = tmp_path / "crashed"
    args = score.get_args_parser().parse_args(
        [*base, "--out", str(ray_out), "--engine", "ray", "--workers", "2", "--cpus", "2"]
    )
    stats, rows, missing = score.run(args, crash_once=("p021.jpg", str(marker)))
    assert marker.exists()  # a worker did die on the batch holding p021.jpg …
    assert (stats.scored, rows, missing) == (42, 42, [])  # … and its batch was retried: every image once
    ids = [i for p in sorted(parts_dir_of(ray_out).glob("part-*.parquet")) for i in pq.read_table(p)["id"].to_pylist()]
    assert len(ids) == len(set(ids)) == 42  # nothing written twice
    assert len([w for w in stats.peak_mb if w.startswith("ray")]) >= 2  # two actors (and the restarted one)
    local, remote = pd.read_parquet(local_out), pd.read_parquet(ray_out)
    pd.testing.assert_frame_equal(remote, local, atol=1e-6)  # same rows, same order, same classes
    assert remote.set_index("id").loc["broken.jpg", "error"]
