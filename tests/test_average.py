"""core.training.average: weight averaging of fine-tunes with their start (WiSE-FT of a soup)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_card import write_baseline

from core.models.card import ModelCard, load_model
from core.training.average import average_states, average_weights, main


def test_average_states_interpolates_floats_and_keeps_integers() -> None:
    base = {"w": torch.tensor([0.0, 4.0], dtype=torch.float16), "n": torch.tensor(7)}
    tunes = [
        {"w": torch.tensor([2.0, 0.0]), "n": torch.tensor(1)},
        {"w": torch.tensor([4.0, 2.0]), "n": torch.tensor(2)},
    ]
    out = average_states(base, tunes, alpha=0.5)
    # mean of the fine-tunes [3, 1]; halfway from the base [0, 4]
    assert out["w"].tolist() == [1.5, 2.5] and out["w"].dtype == torch.float16
    assert out["n"].item() == 7
    assert average_states(base, tunes, alpha=0.0)["w"].tolist() == [0.0, 4.0]
    assert average_states(base, tunes, alpha=1.0)["w"].tolist() == [3.0, 1.0]


@pytest.mark.parametrize(
    ("tunes", "alpha", "message"),
    [
        ([], 0.5, "no fine-tuned"),
        ([{"w": torch.zeros(2)}], 1.5, "alpha"),
        ([{"v": torch.zeros(2)}], 0.5, "other tensors"),
        ([{"w": torch.zeros(3)}], 0.5, "shape"),
    ],
)
def test_average_states_refuses_what_does_not_match(tunes: list, alpha: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        average_states({"w": torch.zeros(2)}, tunes, alpha)


def test_average_weights_writes_a_loadable_model_with_the_base_rule(tmp_path: Path) -> None:
    dirs = [tmp_path / name for name in ("base", "t1", "t2")]
    models = []
    for seed, d in enumerate(dirs):
        d.mkdir()
        models.append(write_baseline(d, seed=seed)[0])
    base_card = ModelCard.load(dirs[0] / "baseline.json")
    card = average_weights("baseline", dirs[0], dirs[1:], 0.25, tmp_path / "out", command="python -m x")

    model, loaded = load_model("baseline", tmp_path / "out")  # sha256 checked, fits the architecture
    assert loaded == card
    assert card.decision_rule["logit_bias"] == base_card.decision_rule["logit_bias"]
    assert [t["sha256"] for t in card.training["fine_tunes"]] == [
        ModelCard.load(d / "baseline.json").weights["sha256"] for d in dirs[1:]
    ]
    assert card.training["base"]["sha256"] == base_card.weights["sha256"] and card.training["alpha"] == 0.25
    assert card.metrics == {} and card.predictions == {}  # the base's numbers are not this model's
    state = dict(model.state_dict())
    sources = [m.state_dict() for m in models]
    for key, value in state.items():
        expected = 0.75 * sources[0][key] + 0.25 * (sources[1][key] + sources[2][key]) / 2
        torch.testing.assert_close(value, expected)
    assert set(load_file(str(tmp_path / "out" / "baseline.safetensors"))) == set(state)


def test_average_weights_checks_every_source(tmp_path: Path) -> None:
    base, tune = tmp_path / "base", tmp_path / "tune"
    for seed, d in enumerate((base, tune)):
        d.mkdir()
        write_baseline(d, seed=seed)
    (tune / "baseline.safetensors").write_bytes(b"not the file the card hashed")
    with pytest.raises(SystemExit) as exc:
        main(["--model", "baseline", "--base", str(base), "--finetuned", str(tune), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert not (tmp_path / "o" / "baseline.safetensors").exists()
