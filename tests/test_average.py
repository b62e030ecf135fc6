"""core.training.average: weight averaging of fine-tunes with their start (WiSE-FT of a soup)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_card import write_baseline

from core.models.card import ModelCard, WeightsError, load_model
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


def _sources(tmp_path: Path, n: int = 3, dtype: torch.dtype = torch.float32) -> list[Path]:
    dirs = []
    for seed in range(n):
        d = tmp_path / f"source{seed}"
        d.mkdir()
        write_baseline(d, dtype=dtype, seed=seed)
        dirs.append(d)
    return dirs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_average_weights_writes_a_loadable_model_with_the_base_rule(tmp_path: Path, dtype: torch.dtype) -> None:
    dirs = _sources(tmp_path, dtype=dtype)
    sources = [load_file(str(d / "baseline.safetensors")) for d in dirs]
    base_card = ModelCard.load(dirs[0] / "baseline.json")
    card = average_weights("baseline", dirs[0], dirs[1:], 0.25, tmp_path / "out", command="python -m x")

    model, loaded = load_model("baseline", tmp_path / "out")  # sha256 checked, fits the architecture
    assert loaded == card
    assert card.decision_rule["logit_bias"] == base_card.decision_rule["logit_bias"] and card.decision_rule["kept_from"]
    assert [t["sha256"] for t in card.training["fine_tunes"]] == [
        ModelCard.load(d / "baseline.json").weights["sha256"] for d in dirs[1:]
    ]
    assert card.training["base"]["sha256"] == base_card.weights["sha256"] and card.training["alpha"] == 0.25
    assert card.training["commands"][-1] == "python -m x" and card.training["seed"] == 42
    assert card.metrics == {} and card.predictions == {}  # the base's numbers are not this model's
    saved = load_file(str(tmp_path / "out" / "baseline.safetensors"))
    assert set(saved) == set(sources[0]) and {v.dtype for v in saved.values()} == {dtype}
    assert card.weights["dtype"] == str(dtype).removeprefix("torch.")
    for key, value in saved.items():
        expected = 0.75 * sources[0][key].float() + 0.25 * (sources[1][key].float() + sources[2][key].float()) / 2
        torch.testing.assert_close(value, expected.to(dtype))
    torch.testing.assert_close(
        dict(model.state_dict())["backbone.conv1.weight"], saved["backbone.conv1.weight"].float()
    )


def test_a_kept_rule_does_not_carry_the_base_score(tmp_path: Path) -> None:
    dirs = _sources(tmp_path, 2)
    base = ModelCard.load(dirs[0] / "baseline.json")
    base.decision_rule["validation_objective"] = 0.6
    base.save(dirs[0] / "baseline.json")
    card = average_weights("baseline", dirs[0], dirs[1:], 0.5, tmp_path / "out")
    assert "validation_objective" not in card.decision_rule and card.decision_rule["base_validation_objective"] == 0.6


def test_average_weights_checks_every_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, tune = _sources(tmp_path, 2)
    # a valid weights file, but not the one its card hashed (another seed's)
    write_baseline(tmp_path, seed=7)
    (tune / "baseline.safetensors").write_bytes((tmp_path / "baseline.safetensors").read_bytes())
    with pytest.raises(SystemExit) as exc:
        main(["--model", "baseline", "--base", str(base), "--finetuned", str(tune), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2 and "does not match its model card's sha256" in capsys.readouterr().err
    assert not (tmp_path / "o" / "baseline.safetensors").exists()


def test_average_weights_refuses_what_cannot_be_averaged(tmp_path: Path) -> None:
    base, tune, other = _sources(tmp_path, 3)
    with pytest.raises(WeightsError, match="one of the folders averaged"):
        average_weights("baseline", base, [tune], 0.5, base)
    with pytest.raises(WeightsError, match="given twice"):
        average_weights("baseline", base, [tune, tune], 0.5, tmp_path / "out")
    card = ModelCard.load(other / "baseline.json")
    card.data["split_fingerprint"] = "another split"
    card.save(other / "baseline.json")
    with pytest.raises(WeightsError, match="differ in split"):
        average_weights("baseline", base, [tune, other], 0.5, tmp_path / "out")
    assert not (tmp_path / "out").exists()
