"""The benchmark and reliability scripts run end to end (quick mode, tiny fixture data).

They measure nothing here: timings are never asserted in tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.models.registry import REGISTRY, get_spec

pytestmark = pytest.mark.skipif(
    not all(s.weights_file.is_file() for s in REGISTRY.values()), reason="shipped weights are not present"
)

KEYS = [
    "explain_one_ms",
    "ratio_vs_pytorch_grad_cam",
    "ratio_vs_torchcam",
    "map_correlation_min",
    "strip_over_single",
    "batch_images_per_s",
    "startup_s",
    "rss_mb",
]


@pytest.mark.slow  # the whole benchmark, peers and training included: 136 s on 2 idle cores
def test_bench_runs_on_the_tiny_fixture(tiny_dataset: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    pytest.importorskip("pytorch_grad_cam")
    pytest.importorskip("torchcam")
    from bench.__main__ import main

    monkeypatch.setenv("DRESSCODE_DATA", str(tiny_dataset))
    out = tmp_path / "bench.json"
    assert main(["--json", str(out), "--quick"]) == 0
    res = json.loads(out.read_text())
    for key in KEYS:
        assert isinstance(res[key], float) and res[key] > 0, key
    assert res["peers"]["layer"] == get_spec("resnet50").default_cam_layer.path
    assert res["strip"]["strip_maps_equal_single_calls"] is True
    assert set(res["training"]) == set(REGISTRY)
    # the app's fast batch path gives the plain fp32 path's classes
    assert res["batch"]["argmax_differences_fast_vs_fp32"] == {"baseline": 0, "resnet50": 0}
    assert "skipped" in res["batch"]["splits"]  # the fixture holds none of the cards' split images
    printed = capsys.readouterr().out
    assert "| benchmark | result | target |" in printed and "Checks:" in printed
    from importlib.util import find_spec

    from core.images.preprocess import ALLOWED_FORMATS

    encoder = find_spec("pillow_heif") is not None  # the benchmark's HEIC encoder (requirements-dev.txt)
    if encoder and "HEIF" in ALLOWED_FORMATS:
        assert "iPhone HEIC" in printed and res["explain_heic"]["median_ms"] > 0  # the decode path phones send
    else:
        assert "explain_heic" not in res


def test_reliability_script_runs_without_the_browser_part(tmp_path: Path) -> None:
    from bench.reliability import main

    out = tmp_path / "RELIABILITY.md"
    assert main(["--no-load", "--fuzz", "60", "--out", str(out), "--json", str(tmp_path / "r.json")]) == 0
    text = out.read_text()
    assert "| what was tried | times | what happened | what was lost |" in text
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["fuzz"]["exceptions"] == 0
    assert res["hostile"]["unexpected"] == 0
    assert all(f["disabled_with_message"] and f["others_ok"] for f in res["faults"])
    assert res["interrupts"]["lock_free_after"] == res["interrupts"]["interrupts"]
    assert res["interrupts"]["threads_with_own_correct_result"] == res["interrupts"]["threads"]
    assert res["batches"]["errors"] == 0 and res["batches"]["class_mismatches"] == 0
    assert res["batches"]["calls"] >= 2 * res["batches"]["threads"]


OCCLUSION_ARGV = ["--images", "1", "--class", "Casual", "--split", "train", "--models", "baseline"]


def test_occlusion_table_measures_an_unregistered_module_too(tiny_dataset: Path, monkeypatch, capsys) -> None:
    from bench.occlusion import main

    monkeypatch.setenv("DRESSCODE_DATA", str(tiny_dataset))
    assert main([*OCCLUSION_ARGV, "--also", "baseline:backbone.conv2"]) == 0
    printed = capsys.readouterr().out
    assert "| `resnet50`" not in printed and "| `effnet_lite0`" not in printed  # --models baseline
    rows = [r for r in printed.splitlines() if r.startswith("| `baseline`")]
    assert [r.split("|")[2].strip() for r in rows] == [
        "`backbone.relu1`",
        "`backbone.conv2`",
        "`backbone.relu2` (default)",
    ]
    assert "not registered" in rows[1]


def test_occlusion_keeps_the_default_mark_on_the_registered_default(tiny_dataset: Path, monkeypatch, capsys) -> None:
    from bench.occlusion import main

    monkeypatch.setenv("DRESSCODE_DATA", str(tiny_dataset))
    argv = [*OCCLUSION_ARGV, "--also", "baseline:backbone.pool2"]
    assert main([*argv, "--also", "baseline:backbone.pool2"]) == 0  # named twice, measured once
    rows = [r.split("|")[2].strip() for r in capsys.readouterr().out.splitlines() if r.startswith("| `baseline`")]
    assert rows == ["`backbone.relu1`", "`backbone.relu2` (default)", "`backbone.pool2`"]


@pytest.mark.parametrize(
    ("also", "message"),
    [
        ("baseline", "expected MODEL:MODULE"),
        ("nosuch:x", "expected MODEL:MODULE"),
        ("resnet50:backbone.layer1", "expected MODEL:MODULE"),  # a model left out by --models
        ("baseline:backbone.nope", "no module"),
        ("baseline:head.4", "not a feature map"),
    ],
)
def test_occlusion_refuses_a_bad_also(tiny_dataset: Path, monkeypatch, capsys, also: str, message: str) -> None:
    from bench.occlusion import main

    monkeypatch.setenv("DRESSCODE_DATA", str(tiny_dataset))
    with pytest.raises(SystemExit) as exc:
        main([*OCCLUSION_ARGV, "--also", also])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_readme_benchmark_table_is_the_committed_run(tmp_path: Path) -> None:
    """The README's Benchmarks block is exactly what ``bench/results.json`` renders to (the layer names included)."""
    from bench.__main__ import ROOT, short, write_readme

    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    res = json.loads((ROOT / "bench" / "results.json").read_text())
    write_readme(res, readme)
    assert readme.read_text() == (ROOT / "README.md").read_text()
    assert f"ResNet50 {short(res['peers']['layer'])} (default layer)" in readme.read_text()
    assert res["peers"]["layer"] == get_spec("resnet50").default_cam_layer.path  # measured at today's default
