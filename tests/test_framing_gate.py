"""The framing retrain gate (bench/framing_gate.py) on small hand-made runs and cards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.framing_gate import judge, main

FRAMINGS = ["as in the dataset", "white square", "warm light"]
STEP = {"version": 4, "white_balance_lightness": 80.0}


def _run(casual: list[float], formal: list[float], found: list[int], ids: list[int] | None = None) -> dict:
    rows = {
        f: {
            "casual_recall": c,
            "formal_recall": r,
            "formal_recall_ratio": r / formal[0] if formal[0] else None,
            "smart_casual_found": s,
        }
        for f, c, r, s in zip(FRAMINGS, casual, formal, found)
    }
    return {"split": "val", "ids": ids or [1, 2, 3], "framing_params": {"p": 1}, "models": {"m": rows}}


def _card(ba: float, f1: float, formal: float, lower: tuple[float, float] = (0.5, 0.5)) -> dict:
    return {
        "data": {"framing_normalisation": STEP},
        "metrics": {
            "val": {
                "balanced_accuracy": ba,
                "macro_f1": f1,
                "ci95": {"balanced_accuracy": [lower[0], 0.9], "macro_f1": [lower[1], 0.9]},
                "per_class": {"Formal": {"recall": formal}},
            }
        },
    }


SHIPPED = _run([0.93, 0.92, 0.91], [0.64, 0.62, 0.60], [4, 4, 4])
SHIPPED_CARD = _card(0.67, 0.54, 0.64)


def test_a_candidate_meeting_every_bar_passes() -> None:
    cand = _run([0.97, 0.96, 0.951], [0.60, 0.55, 0.541], [2, 2, 2])
    result = judge("m", SHIPPED, cand, SHIPPED_CARD, _card(0.62, 0.55, 0.60))
    assert result["passed"], result
    assert result["criteria"]["1_casual_recall"]["min"] == 0.951
    assert result["criteria"]["3_smart_casual_found"] == {"shipped": 12, "candidate": 6, "bar": 6.0, "held": True}


@pytest.mark.parametrize(
    ("cand", "card", "failed"),
    [
        (_run([0.97, 0.949, 0.96], [0.6, 0.6, 0.6], [4, 4, 4]), _card(0.6, 0.55, 0.6), "1_casual_recall"),
        (_run([0.97, 0.96, 0.96], [0.6, 0.6, 0.53], [4, 4, 4]), _card(0.6, 0.55, 0.6), "2_formal_ratio"),
        (_run([0.97, 0.96, 0.96], [0.6, 0.6, 0.6], [2, 2, 1]), _card(0.6, 0.55, 0.6), "3_smart_casual_found"),
        (_run([0.97, 0.96, 0.96], [0.6, 0.6, 0.6], [4, 4, 4]), _card(0.6, 0.49, 0.6), "4_unframed_val"),
    ],
)
def test_each_criterion_can_fail_on_its_own(cand: dict, card: dict, failed: str) -> None:
    result = judge("m", SHIPPED, cand, SHIPPED_CARD, card)
    assert not result["passed"]
    assert [k for k, c in result["criteria"].items() if not c["held"]] == [failed]


def test_baseline_has_the_issue_s_lower_ratio_bar_and_criterion_five_asks_for_more() -> None:
    cand = _run([0.97, 0.96, 0.96], [0.6, 0.6, 0.5], [4, 4, 4])  # ratio 0.83: under 0.9, over 0.8
    shipped = {**SHIPPED, "models": {"baseline": SHIPPED["models"]["m"]}}
    cand = {**cand, "models": {"baseline": cand["models"]["m"]}}
    assert judge("baseline", shipped, cand, SHIPPED_CARD, _card(0.6, 0.55, 0.6))["passed"]
    assert not judge("m", SHIPPED, {**cand, "models": {"m": cand["models"]["baseline"]}}, SHIPPED_CARD, SHIPPED_CARD)[
        "passed"
    ]
    better = judge("baseline", shipped, cand, SHIPPED_CARD, _card(0.6, 0.55, 0.6), better_than_shipped=True)
    assert not better["passed"]  # macro-F1 higher, Formal recall lower than the shipped card's
    assert better["criteria"]["5_better_than_shipped"]["formal_recall"] == {"candidate": 0.6, "shipped": 0.64}
    assert judge("baseline", shipped, cand, SHIPPED_CARD, _card(0.6, 0.55, 0.65), better_than_shipped=True)["passed"]


def test_runs_of_other_images_steps_or_splits_are_refused() -> None:
    cand = _run([0.97, 0.96, 0.96], [0.6, 0.6, 0.6], [4, 4, 4], ids=[1, 2, 4])
    with pytest.raises(SystemExit, match="different images"):
        judge("m", SHIPPED, cand, SHIPPED_CARD, SHIPPED_CARD)
    with pytest.raises(SystemExit, match="different framing steps"):
        judge("m", SHIPPED, {**SHIPPED, "framing_params": {"p": 2}}, SHIPPED_CARD, SHIPPED_CARD)
    old_step = {**SHIPPED_CARD, "data": {"framing_normalisation": {"version": 3}}}
    with pytest.raises(SystemExit, match="cards were measured through different"):
        judge("m", SHIPPED, SHIPPED, SHIPPED_CARD, old_step)
    with pytest.raises(SystemExit, match="judged on val"):
        judge("m", SHIPPED, {**SHIPPED, "split": "test"}, SHIPPED_CARD, SHIPPED_CARD)
    with pytest.raises(SystemExit, match="no 'other'"):
        judge("other", SHIPPED, SHIPPED, SHIPPED_CARD, SHIPPED_CARD)


def test_the_cli_writes_the_verdict_and_exits_by_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = {
        "shipped": SHIPPED,
        "pass": _run([0.97, 0.96, 0.96], [0.6, 0.6, 0.6], [4, 4, 4]),
        "fail": _run([0.97, 0.90, 0.96], [0.6, 0.6, 0.6], [4, 4, 4]),
        "card": SHIPPED_CARD,
    }
    for name, data in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    args = ["--model", "m", "--shipped", str(tmp_path / "shipped.json"), "--shipped-card", str(tmp_path / "card.json")]
    args += ["--candidate-card", str(tmp_path / "card.json"), "--json", str(tmp_path / "gate.json")]
    caplog.set_level("INFO")
    assert main([*args, "--candidate", str(tmp_path / "pass.json")]) == 0
    assert json.loads((tmp_path / "gate.json").read_text())["passed"] is True
    assert "m: PASSES the gate" in caplog.text
    assert main([*args, "--candidate", str(tmp_path / "fail.json")]) == 1
    assert json.loads((tmp_path / "gate.json").read_text())["passed"] is False
    assert "1 ✗ Casual recall min 0.900" in caplog.text
    assert main([*args, "--candidate", str(tmp_path / "missing.json")]) == 2
    assert "--candidate: cannot read" in caplog.text
