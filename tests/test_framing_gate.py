"""The framing retrain gate (bench/framing_gate.py) on small hand-made runs and cards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.framing_gate import judge, main

FRAMINGS = ["as in the dataset", "white square", "warm light"]
STEP = {"version": 4, "white_balance_lightness": 80.0}
RULE = [0.0, -1.0, -1.5]


def _run(
    casual: list[float],
    formal: list[float],
    found: list[int],
    model: str = "m",
    ids: list[int] | None = None,
    sha: str = "cand",
) -> dict:
    rows = {
        f: {
            "casual_recall": c,
            "formal_recall": r,
            "formal_recall_ratio": r / formal[0] if formal[0] else None,
            "smart_casual_found": s,
        }
        for f, c, r, s in zip(FRAMINGS, casual, formal, found)
    }
    return {
        "split": "val",
        "normalised": True,
        "framings": FRAMINGS,
        "ids": ids or [1, 2, 3],
        "framing_params": {"p": 1},
        "models": {model: rows},
        "model_weights": {model: {"sha256": sha, "logit_bias": RULE}},
    }


def _card(ba: float, f1: float, formal: float, lower: tuple[float, float] = (0.1, 0.1), sha: str = "cand") -> dict:
    return {
        "data": {"framing_normalisation": STEP},
        "weights": {"sha256": sha},
        "decision_rule": {"logit_bias": RULE},
        "metrics": {
            "val": {
                "balanced_accuracy": ba,
                "macro_f1": f1,
                "ci95": {"balanced_accuracy": [lower[0], 0.9], "macro_f1": [lower[1], 0.9]},
                "per_class": {"Formal": {"recall": formal}},
            }
        },
    }


# the shipped model's lower ends differ from the candidates' (0.1): criterion 4 must read the shipped card's
SHIPPED = _run([0.93, 0.92, 0.91], [0.64, 0.62, 0.60], [4, 4, 4], sha="shipped")
SHIPPED_CARD = _card(0.67, 0.54, 0.64, lower=(0.56, 0.50), sha="shipped")


def _as(model: str, run: dict) -> dict:
    """The same run with its model named ``model``."""
    return {**run, "models": {model: run["models"]["m"]}, "model_weights": {model: run["model_weights"]["m"]}}


def test_a_candidate_meeting_every_bar_passes_even_at_the_bars() -> None:
    cand = _run([0.97, 0.96, 0.95], [0.60, 0.55, 0.54], [2, 2, 2])  # Casual exactly 0.95, ratio exactly 0.9
    result = judge("m", SHIPPED, cand, SHIPPED_CARD, _card(0.56, 0.50, 0.60))  # exactly the shipped lower ends
    assert result["passed"], result
    assert result["criteria"]["1_casual_recall"]["min"] == 0.95
    assert result["criteria"]["3_smart_casual_found"] == {"shipped": 12, "candidate": 6, "bar": 6.0, "held": True}
    assert "5_better_than_shipped" not in result["criteria"]


@pytest.mark.parametrize(
    ("cand", "card", "failed"),
    [
        (_run([0.97, 0.949, 0.96], [0.6, 0.6, 0.6], [4, 4, 4]), _card(0.6, 0.55, 0.6), "1_casual_recall"),
        (_run([0.97, 0.96, 0.96], [0.6, 0.6, 0.53], [4, 4, 4]), _card(0.6, 0.55, 0.6), "2_formal_ratio"),
        (_run([0.97, 0.96, 0.96], [0.0, 0.6, 0.6], [4, 4, 4]), _card(0.6, 0.55, 0.6), "2_formal_ratio"),  # no ratio
        (_run([0.97, 0.96, 0.96], [0.6, 0.6, 0.6], [2, 2, 1]), _card(0.6, 0.55, 0.6), "3_smart_casual_found"),
        (_run([0.97, 0.96, 0.96], [0.6, 0.6, 0.6], [4, 4, 4]), _card(0.6, 0.49, 0.6), "4_unframed_val"),
        (_run([0.97, 0.96, 0.96], [0.6, 0.6, 0.6], [4, 4, 4]), _card(0.55, 0.55, 0.6), "4_unframed_val"),
    ],
)
def test_each_criterion_can_fail_on_its_own(cand: dict, card: dict, failed: str) -> None:
    result = judge("m", SHIPPED, cand, SHIPPED_CARD, card)
    assert not result["passed"]
    assert [k for k, c in result["criteria"].items() if not c["held"]] == [failed]


def test_baseline_has_the_issue_s_lower_ratio_bar_and_must_also_beat_the_shipped_model() -> None:
    cand = _run([0.97, 0.96, 0.96], [0.6, 0.6, 0.5], [4, 4, 4])  # ratio 0.83: under 0.9, over 0.8
    shipped, as_baseline = _as("baseline", SHIPPED), _as("baseline", cand)
    assert not judge("m", SHIPPED, cand, SHIPPED_CARD, _card(0.6, 0.55, 0.7))["passed"]  # 0.9 for the others
    result = judge("baseline", shipped, as_baseline, SHIPPED_CARD, _card(0.6, 0.55, 0.6))
    assert not result["passed"]  # criterion 5 is on by default: macro-F1 higher, Formal recall lower
    assert result["criteria"]["5_better_than_shipped"]["formal_recall"] == {"candidate": 0.6, "shipped": 0.64}
    assert judge("baseline", shipped, as_baseline, SHIPPED_CARD, _card(0.6, 0.55, 0.6), better_than_shipped=False)[
        "passed"
    ]
    assert judge("baseline", shipped, as_baseline, SHIPPED_CARD, _card(0.6, 0.55, 0.65))["passed"]
    equal = judge("baseline", shipped, as_baseline, SHIPPED_CARD, _card(0.6, 0.54, 0.65))  # macro-F1 equal: not above
    assert not equal["passed"] and not equal["criteria"]["5_better_than_shipped"]["held"]


def test_keep_macro_f1_holds_the_candidate_to_the_shipped_macro_f1() -> None:
    """Criterion 6 (--keep-macro-f1): a Casual-leaning candidate may not pay for its Casual recall in macro-F1."""
    cand = _run([0.97, 0.96, 0.96], [0.5, 0.5, 0.5], [4, 4, 4])
    assert judge("m", SHIPPED, cand, SHIPPED_CARD, _card(0.6, 0.53, 0.5))["passed"]  # off by default
    below = judge("m", SHIPPED, cand, SHIPPED_CARD, _card(0.6, 0.53, 0.5), keep_macro_f1=True)
    assert not below["passed"]
    assert below["criteria"]["6_macro_f1_kept"] == {"candidate": 0.53, "shipped": 0.54, "held": False}
    assert judge("m", SHIPPED, cand, SHIPPED_CARD, _card(0.6, 0.54, 0.5), keep_macro_f1=True)["passed"]  # equal


def test_runs_of_other_images_steps_framings_splits_or_weights_are_refused() -> None:
    good = _run([0.97, 0.96, 0.96], [0.6, 0.6, 0.6], [4, 4, 4])
    card = _card(0.6, 0.55, 0.6)
    with pytest.raises(SystemExit, match="different images"):
        judge("m", SHIPPED, {**good, "ids": [1, 2, 4]}, SHIPPED_CARD, card)
    with pytest.raises(SystemExit, match="different images"):
        judge("m", {**SHIPPED, "ids": []}, {**good, "ids": []}, SHIPPED_CARD, card)
    with pytest.raises(SystemExit, match="different framing steps"):
        judge("m", SHIPPED, {**good, "framing_params": {"p": 2}}, SHIPPED_CARD, card)
    with pytest.raises(SystemExit, match="cards were measured through different"):
        judge("m", SHIPPED, good, SHIPPED_CARD, {**card, "data": {"framing_normalisation": {"version": 3}}})
    with pytest.raises(SystemExit, match="judged on val"):
        judge("m", SHIPPED, {**good, "split": "test"}, SHIPPED_CARD, card)
    with pytest.raises(SystemExit, match="without the framing step"):
        judge("m", SHIPPED, {**good, "normalised": False}, SHIPPED_CARD, card)
    with pytest.raises(SystemExit, match="not scored on every framing"):
        judge("m", SHIPPED, {**good, "framings": [*FRAMINGS, "drop shadow"]}, SHIPPED_CARD, card)
    with pytest.raises(SystemExit, match="no 'other'"):
        judge("other", SHIPPED, good, SHIPPED_CARD, card)
    # the candidate's run scored the shipped weights (a forgotten --weights), or before its rule was chosen
    with pytest.raises(SystemExit, match="other weights or another decision rule"):
        judge("m", SHIPPED, good, SHIPPED_CARD, _card(0.6, 0.55, 0.6, sha="shipped"))
    with pytest.raises(SystemExit, match="other weights or another decision rule"):
        judge("m", SHIPPED, good, SHIPPED_CARD, {**card, "decision_rule": {"logit_bias": [0.0, 0.0, 0.0]}})
    with pytest.raises(SystemExit, match="does not say which weights"):
        judge("m", SHIPPED, {**good, "model_weights": {}}, SHIPPED_CARD, card)
    assert judge("m", {**SHIPPED, "model_weights": {}}, good, SHIPPED_CARD, card)["passed"]  # older shipped runs
    with pytest.raises(SystemExit, match="lacks what the gate reads"):
        judge("m", SHIPPED, good, {**SHIPPED_CARD, "metrics": {"val": {"ci95": {}}}}, card)


def test_the_cli_writes_the_verdict_and_exits_by_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = {
        "shipped": SHIPPED,
        "pass": _run([0.97, 0.96, 0.96], [0.6, 0.6, 0.6], [4, 4, 4]),
        "fail": _run([0.97, 0.90, 0.96], [0.6, 0.6, 0.6], [4, 4, 4]),
        "shipped_card": SHIPPED_CARD,
        "card": _card(0.6, 0.55, 0.6),
    }
    for name, data in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    args = ["--model", "m", "--shipped", str(tmp_path / "shipped.json")]
    args += ["--shipped-card", str(tmp_path / "shipped_card.json"), "--candidate-card", str(tmp_path / "card.json")]
    args += ["--json", str(tmp_path / "gate.json")]
    caplog.set_level("INFO")
    assert main([*args, "--candidate", str(tmp_path / "pass.json")]) == 0
    assert json.loads((tmp_path / "gate.json").read_text())["passed"] is True
    assert "m: PASSES the gate" in caplog.text
    assert main([*args, "--candidate", str(tmp_path / "fail.json")]) == 1
    assert json.loads((tmp_path / "gate.json").read_text())["passed"] is False
    assert "1 ✗ Casual recall min 0.900" in caplog.text
    assert main([*args, "--candidate", str(tmp_path / "pass.json"), "--better-than-shipped"]) == 1  # 0.6 < 0.64
    assert main([*args, "--candidate", str(tmp_path / "missing.json")]) == 2
    assert "--candidate: cannot read" in caplog.text
