"""bench.score runs end to end on the tiny fixture (local engine only, a few images): it measures nothing here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.data.catalog import load_styles
from core.data.split import get_or_make_split


@pytest.mark.slow  # the scoring benchmark end to end (decode workers, README block): 72 s; core.score has its own tests
def test_bench_score_local_on_the_fixture(tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.score import main

    monkeypatch.setenv("DRESSCODE_DATA", str(tiny_dataset))
    split = tmp_path / "split.json"
    get_or_make_split(load_styles(tiny_dataset), split)
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- score:start -->\nold\n<!-- score:end -->\nafter\n")
    out = tmp_path / "score.json"
    argv = ["--json", str(out), "--readme", str(readme), "--configs", "local", "--split-file", str(split)]
    # one --also row (the same model again: cheap) runs the extra-rows loop
    assert (
        main([*argv, "--models", "baseline", "--also", "baseline", "--limit", "12", "--extra=--no-compile --threads 1"])
        == 0
    )
    res = json.loads(out.read_text())
    run = res["runs"]["local"]
    assert run["scored"] == res["images"] > 0 and run["missing"] == 0
    assert "main (models)" in run["peak_mb"] and any(w.startswith("decode-") for w in run["peak_mb"])
    body = readme.read_text()
    assert body.startswith("before\n<!-- score:start -->\nMeasured") and body.endswith("<!-- score:end -->\nafter\n")
    assert "| `baseline` | local | 2 |" in body and run["ensemble"] is False
    also = res["runs"]["also0"]
    assert also["scored"] == run["scored"] and also["models"] == "baseline" and also["ensemble"] is False
    assert body.count("| `baseline` | local | 2 |") == 2 and "| — |" in body  # an extra row is not compared
