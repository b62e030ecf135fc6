"""core.train and core.evaluate command lines, run in-process on the tiny generated dataset."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from core import evaluate, train
from core.data.cache import load_native_images
from core.data.catalog import load_styles
from core.data.split import SPLITS, get_or_make_split, load_split, make_split, save_split, split_fingerprint
from core.models.card import ModelCard, load_model, sha256_file
from core.models.networks import build_baseline
from core.prediction.served import ServedModel
from core.training import prepare

CLASSES = ["Casual", "Formal", "Smart Casual"]
METRIC_KEYS = ("accuracy", "balanced_accuracy", "macro_f1")


@dataclass
class TrainedRun:
    """Where one tiny training run wrote its outputs."""

    data: Path
    out: Path
    split_file: Path
    runs: Path
    stdout: str


def train_argv(data: Path, base: Path, *extra: str) -> list[str]:
    """Arguments for a small, fast baseline run writing everything under ``base``."""
    return [
        "--model",
        "baseline",
        "--data",
        str(data),
        "--out",
        str(base / "weights"),
        "--split-file",
        str(base / "split.json"),
        "--runs",
        str(base / "runs"),
        "--batch-size",
        "32",
        "--epoch-size",
        "160",
        "--bootstrap",
        "20",
        "--threads",
        "1",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """One baseline training run (3 short epochs, training set capped at 60 images)."""
    base = tmp_path_factory.mktemp("train-run")
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(base / "cache"))  # module scope: the autouse per-test one is not active yet
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            assert train.main(train_argv(tiny_dataset, base, "--epochs", "3", "--max-train", "60")) == 0
    finally:
        mp.undo()
    return TrainedRun(tiny_dataset, base / "weights", base / "split.json", base / "runs", buf.getvalue())


def run_evaluate(run: TrainedRun, split: str, json_path: Path, *extra: str) -> dict:
    """``core.evaluate.main`` on the run's weights; returns the JSON it wrote."""
    argv = [
        "--model",
        "baseline",
        "--data",
        str(run.data),
        "--weights",
        str(run.out),
        "--split-file",
        str(run.split_file),
        "--split",
        split,
        "--json",
        str(json_path),
        "--bootstrap",
        "20",
        "--threads",
        "1",
        *extra,
    ]
    assert evaluate.main(argv) == 0
    return json.loads(json_path.read_text())


def check_report_shape(rep: dict, n: int) -> None:
    """The documented keys of an evaluation report, and their consistency."""
    for key in METRIC_KEYS:
        assert 0.0 <= rep[key] <= 1.0
    assert set(rep["per_class"]) == set(CLASSES)
    for c in CLASSES:
        assert set(rep["per_class"][c]) == {"precision", "recall", "f1", "support"}
    cm = rep["confusion_matrix"]
    assert len(cm) == 3 and all(len(row) == 3 for row in cm)
    assert sum(map(sum, cm)) == rep["n"] == n
    assert [sum(row) for row in cm] == [rep["per_class"][c]["support"] for c in CLASSES]
    assert rep["accuracy"] == pytest.approx(sum(cm[i][i] for i in range(3)) / n)


def test_train_writes_weights_card_split_checkpoint(trained: TrainedRun) -> None:
    weights = trained.out / "baseline.safetensors"
    card_path = trained.out / "baseline.json"
    assert weights.is_file() and card_path.is_file() and trained.split_file.is_file()
    assert (trained.runs / "baseline" / "last.pt").is_file()
    card = ModelCard.load(card_path)
    assert card.name == "baseline" and card.classes == CLASSES
    assert card.weights["sha256"] == sha256_file(weights)
    assert card.weights["dtype"] == "float32"
    # history: one row per epoch
    assert [row["epoch"] for row in card.history] == [1, 2, 3]
    for row in card.history:
        assert {"train_loss", "val_loss", "val_macro_f1", "val_balanced_acc", "lr"} <= set(row)
    assert 1 <= card.training["best_epoch"] <= 3 and card.training["epochs_run"] == 3
    # decision rule chosen on validation
    rule = card.decision_rule
    assert len(rule["logit_bias"]) == 3 and rule["logit_bias"][0] == 0.0
    assert 0.0 <= rule["validation_objective"] <= 1.0
    # data provenance
    split = load_split(trained.split_file)
    assert card.data["split_fingerprint"] == split_fingerprint(split)
    assert sum(card.data["trained_on_counts"].values()) == 60  # --max-train
    assert card.data["split_counts"]["train"] == load_styles(trained.data).counts(split["train"])
    assert card.data["split_counts"]["test"] == load_styles(trained.data).counts(split["test"])
    assert card.data["skipped_rows"]["no_image"] == 1
    assert card.preprocessing["native_size"] == [60, 80]
    # metrics of val and test, measured from the saved file, with intervals
    for s in ("val", "test"):
        rep = card.metrics[s]
        check_report_shape(rep, len(split[s]))
        assert set(rep["ci95"]) == set(METRIC_KEYS)
        assert "majority_class_reference" in rep and "argmax_without_rule" in rep
        assert card.predictions[s]["ids"] == split[s]
        assert len(card.predictions[s]["pred"]) == len(split[s])
    assert "== baseline on test ==" in trained.stdout


def test_tiny_model_learns_the_fixture(trained: TrainedRun) -> None:
    card = ModelCard.load(trained.out / "baseline.json")
    assert card.metrics["val"]["balanced_accuracy"] >= 0.7  # the classes look different: it must learn
    assert (
        card.metrics["val"]["balanced_accuracy"] > card.metrics["val"]["majority_class_reference"]["balanced_accuracy"]
    )


def test_evaluate_test_split_reproduces_card(
    trained: TrainedRun, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    rep = run_evaluate(trained, "test", tmp_path / "deep" / "test.json")
    out = capsys.readouterr().out
    split = load_split(trained.split_file)
    check_report_shape(rep, len(split["test"]))
    assert set(rep["ci95"]) == set(METRIC_KEYS)
    card = ModelCard.load(trained.out / "baseline.json")
    for key in METRIC_KEYS:
        assert rep[key] == card.metrics["test"][key]
    assert rep["confusion_matrix"] == card.metrics["test"]["confusion_matrix"]
    assert rep["decision_rule"] == card.decision_rule
    assert rep["model"] == "baseline" and rep["split"] == "test"
    # per-image predictions agree with the card's
    card_pred = dict(zip(card.predictions["test"]["ids"], card.predictions["test"]["pred"]))
    assert {int(i): CLASSES.index(c) for i, c in rep["predictions"].items()} == {
        i: int(p) for i, p in card_pred.items()
    }
    assert "== baseline on test" in out and "confusion matrix" in out


def test_evaluate_all_split(trained: TrainedRun, tmp_path: Path) -> None:
    rep = run_evaluate(trained, "all", tmp_path / "all.json", "--bootstrap", "0")
    check_report_shape(rep, 3 * 36)
    assert [rep["per_class"][c]["support"] for c in CLASSES] == [36, 36, 36]
    assert rep["ci95"] == {}
    assert rep["split"] == "all"


def test_evaluate_refuses_tampered_weights(
    trained: TrainedRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wdir = tmp_path / "w"
    shutil.copytree(trained.out, wdir)
    p = wdir / "baseline.safetensors"
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(SystemExit) as stop:
        evaluate.main(
            [
                "--model",
                "baseline",
                "--data",
                str(trained.data),
                "--weights",
                str(wdir),
                "--split-file",
                str(trained.split_file),
                "--threads",
                "1",
            ]
        )
    assert stop.value.code == 2
    assert "sha256" in capsys.readouterr().err  # the reason, without a traceback


def test_refresh_card_uses_given_split_file(
    trained: TrainedRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wdir = tmp_path / "w"
    shutil.copytree(trained.out, wdir)
    real = evaluate.get_or_make_split

    def guarded(catalog: object, split_file: Path | None = None, seed: int = 42) -> dict:
        # never let a test touch the repository's weights/split.json
        assert split_file is not None and Path(split_file) == trained.split_file, split_file
        return real(catalog, split_file, seed)

    monkeypatch.setattr(evaluate, "get_or_make_split", guarded)
    argv = [
        "--model",
        "baseline",
        "--data",
        str(trained.data),
        "--weights",
        str(wdir),
        "--split-file",
        str(trained.split_file),
        "--refresh-card",
        "--bootstrap",
        "0",
        "--threads",
        "1",
    ]
    assert evaluate.main(argv) == 0
    card = ModelCard.load(wdir / "baseline.json")
    assert card.metrics["test"]["n"] == len(load_split(trained.split_file)["test"])


def test_a_rule_can_be_chosen_at_another_model_s_operating_point(
    trained: TrainedRun, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    wdir = tmp_path / "w"
    shutil.copytree(trained.out, wdir)
    per_class = ModelCard.load(trained.out / "baseline.json").metrics["val"]["per_class"]
    reference, reference_sc = per_class["Casual"]["recall"], per_class["Smart Casual"]["recall"]
    common = ["--model", "baseline", "--data", str(trained.data), "--weights", str(wdir)]
    common += ["--split-file", str(trained.split_file), "--bootstrap", "0", "--threads", "1", "--refresh-card"]
    keep = ["--keep-class", "Casual", "--keep-class", "Smart Casual"]
    assert evaluate.main([*common, "--choose-rule", "--keep-recall-of", str(trained.out), *keep]) == 0
    card = ModelCard.load(wdir / "baseline.json")
    assert card.metrics["val"]["per_class"]["Casual"]["recall"] >= reference
    assert card.metrics["val"]["per_class"]["Smart Casual"]["recall"] >= reference_sc
    assert card.decision_rule["objective"].startswith(
        f"mean recall of Formal on validation, keeping the recall Casual ≥ {reference:.4f}, Smart Casual ≥"
    )
    assert evaluate.main([*common, "--choose-rule", "--keep-recall-of", str(trained.out)]) == 0  # Casual alone
    card = ModelCard.load(wdir / "baseline.json")
    assert card.metrics["val"]["per_class"]["Casual"]["recall"] >= reference
    assert card.decision_rule["objective"].startswith(
        f"mean recall of Formal, Smart Casual on validation, keeping the recall Casual ≥ {reference:.4f}"
    )
    with pytest.raises(SystemExit) as stop:
        evaluate.main([*common, "--keep-recall-of", str(trained.out)])
    assert stop.value.code == 2 and "only work with --choose-rule" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        evaluate.main([*common, "--choose-rule", "--keep-recall-of", str(trained.out), "--keep-class", "Sporty"])
    assert stop.value.code == 2 and "--keep-class: Sporty is not a class of baseline" in capsys.readouterr().err


def test_a_rule_can_be_chosen_for_macro_f1_above_a_recall_floor(
    trained: TrainedRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # the tiny model is perfect on its validation images, so no floor binds there: what is checked here is that the
    # floor reaches the chooser (whose choice under a floor tests/test_metrics.py checks by brute force), the card
    # records it, and bad or unreachable floors get a clear message
    wdir = tmp_path / "w"
    shutil.copytree(trained.out, wdir)
    common = ["--model", "baseline", "--data", str(trained.data), "--weights", str(wdir)]
    common += ["--split-file", str(trained.split_file), "--bootstrap", "0", "--threads", "1", "--refresh-card"]
    seen: list[dict | None] = []
    real = evaluate.choose_logit_bias

    def recording(logits: np.ndarray, y: np.ndarray, **kw: object) -> tuple[list[float], float]:
        seen.append(kw.get("min_recall"))  # type: ignore[arg-type]
        return real(logits, y, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(evaluate, "choose_logit_bias", recording)
    assert evaluate.main([*common, "--choose-rule", "--min-recall", "Casual=0.965", "--min-recall", "Formal=0.5"]) == 0
    assert seen == [{0: 0.965, 1: 0.5}]
    card = ModelCard.load(wdir / "baseline.json")
    assert card.metrics["val"]["per_class"]["Casual"]["recall"] >= 0.965
    assert card.decision_rule["objective"] == (
        "macro-F1 on validation, keeping the recall Casual ≥ 0.9650, Formal ≥ 0.5000 (ties: smallest offsets)"
    )
    assert card.decision_rule["validation_objective"] == pytest.approx(card.metrics["val"]["macro_f1"], abs=1e-4)
    for bad, said in [
        (["--min-recall", "Sporty=0.9"], "--min-recall: Sporty is not a class of baseline"),
        (["--min-recall", "Casual"], "expected CLASS=RECALL"),
        (["--min-recall", "Casual=1.5"], "with a recall from 0 to 1"),
        (["--min-recall", "Casual=0.9", "--keep-recall-of", str(trained.out)], "give one"),
        (["--min-recall", "Casual=0.9", "--min-recall", "Casual=0.95"], "--min-recall Casual is given twice"),
    ]:
        with pytest.raises(SystemExit) as stop:
            evaluate.main([*common, "--choose-rule", *bad])
        assert stop.value.code == 2 and said in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        evaluate.main([*common, "--min-recall", "Casual=0.9"])
    assert stop.value.code == 2 and "only work with --choose-rule" in capsys.readouterr().err

    def unreachable(logits: np.ndarray, y: np.ndarray, **kw: object) -> None:
        raise ValueError("no offsets on the grid keep the recalls {0: 0.99} on these images")

    monkeypatch.setattr(evaluate, "choose_logit_bias", unreachable)
    with pytest.raises(SystemExit) as stop:
        evaluate.main([*common, "--choose-rule", "--min-recall", "Casual=0.99"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "no offsets on the grid keep the validation recall Casual ≥ 0.9900" in err


def test_decision_rule_is_chosen_on_the_weights_as_saved(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """With half-precision storage the rule sees the fp16-rounded model that ships, not the fp32 one."""
    import torch

    monkeypatch.setitem(train.SAVE_DTYPE, "baseline", torch.float16)
    seen = []
    real = train.choose_logit_bias
    monkeypatch.setattr(train, "choose_logit_bias", lambda logits, y: seen.append(logits) or real(logits, y))
    assert train.main(train_argv(tiny_dataset, tmp_path, "--epochs", "1", "--max-train", "40")) == 0
    shipped = ServedModel.load("baseline", tmp_path / "weights")
    assert shipped.card.weights["dtype"] == "float16"
    split = load_split(tmp_path / "split.json")
    images = load_native_images(load_styles(tiny_dataset), split["val"])
    assert np.array_equal(seen[0], shipped.logits(images))
    capsys.readouterr()


def test_resume_continues_history(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert train.main(train_argv(tiny_dataset, tmp_path, "--epochs", "1", "--max-train", "40")) == 0
    # a resumed run must keep the checkpoint's schedule and training images
    for changed in (
        ("--epochs", "2", "--max-train", "40", "--lr", "0.01"),
        ("--epochs", "2", "--max-train", "30"),
        ("--epochs", "2", "--max-train", "40", "--label-smoothing", "0.3"),
        ("--epochs", "2", "--max-train", "40", "--fill-mode", "reflect"),
    ):
        with pytest.raises(SystemExit, match="was trained with other settings"):
            train.main(train_argv(tiny_dataset, tmp_path, *changed, "--resume"))
    other = tmp_path / "other-split.json"  # same settings, other images: refused before any image is loaded
    save_split(make_split(load_styles(tiny_dataset), seed=7), other)
    with pytest.raises(SystemExit, match="other training/validation images"):
        train.main(
            [
                *train_argv(tiny_dataset, tmp_path, "--epochs", "2", "--max-train", "40", "--resume"),
                "--split-file",
                str(other),
            ]
        )
    first = ModelCard.load(tmp_path / "weights" / "baseline.json")
    assert len(first.history) == 1
    assert train.main(train_argv(tiny_dataset, tmp_path, "--epochs", "2", "--max-train", "40", "--resume")) == 0
    card = ModelCard.load(tmp_path / "weights" / "baseline.json")
    assert [r["epoch"] for r in card.history] == [1, 2]
    assert card.history[0] == first.history[0]
    capsys.readouterr()


def test_balance_copies_and_distillation(trained: TrainedRun, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = tmp_path
    shutil.copytree(trained.out, base / "weights")  # the teacher
    shutil.copy(trained.split_file, base / "split.json")
    argv = train_argv(
        trained.data,
        base,
        *("--epochs", "1", "--max-train", "40", "--balance", "copies", "--distill-from", "baseline"),
        *("--teacher-dir", str(base / "weights")),
        *("--color-jitter", "0.2", "--hue", "0.05", "--grayscale", "0.5"),
    )
    assert train.main(argv) == 0
    card = ModelCard.load(base / "weights" / "baseline.json")
    assert card.training["balancing"] == "copies" and card.training["distilled_from"] == "baseline"
    aug = card.training["augmentation"]
    assert (aug["color_jitter"], aug["hue"], aug["grayscale"]) == (0.2, 0.05, 0.5)
    model, _ = load_model("baseline", base / "weights")
    assert model is not None
    capsys.readouterr()


def test_bad_mixup_and_augmentation_options_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="mixup"):
        train.main(train_argv(tmp_path, tmp_path, "--mixup", "0.2", "--distill-from", "baseline"))
    with pytest.raises(SystemExit, match="mixup"):
        train.main(train_argv(tmp_path, tmp_path, "--mixup", "-1"))
    with pytest.raises(SystemExit, match="bad augmentation option"):
        train.main(train_argv(tmp_path, tmp_path, "--grayscale", "2"))


def test_split_file_made_once_and_reused(trained: TrainedRun) -> None:
    doc = json.loads(trained.split_file.read_text())
    assert doc["meta"]["seed"] == 42 and doc["meta"]["classes"] == CLASSES
    assert sorted(i for s in SPLITS for i in doc[s]) == sorted(load_styles(trained.data).ids)


def test_average_last_epochs(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import torch
    from safetensors.torch import load_file

    argv = train_argv(tiny_dataset, tmp_path, "--epochs", "3", "--max-train", "40", "--average-last", "2")
    assert train.main(argv) == 0
    card = ModelCard.load(tmp_path / "weights" / "baseline.json")
    assert [r.get("average_of_last") for r in card.history] == [None, 1, 2]
    assert all(0.0 <= r["average_val_macro_f1"] <= 1.0 for r in card.history[1:])
    ck = torch.load(tmp_path / "runs" / "baseline" / "last.pt", map_location="cpu", weights_only=False)
    assert int(ck["averaged"]["n_averaged"]) == 2
    shipped = load_file(tmp_path / "weights" / "baseline.safetensors")
    averaged = {k.removeprefix("module."): v for k, v in ck["averaged"].items() if k.startswith("module.")}
    same = all(torch.equal(shipped[k].float(), averaged[k].float()) for k in shipped)
    # the average is shipped exactly when its validation macro-F1 beat every single epoch's
    assert same == (card.training["best_is_average_of_last_epochs"] == 2)
    single_best = max(r["val_macro_f1"] for r in card.history)
    best_avg = max(r["average_val_macro_f1"] for r in card.history[1:])
    assert same == (best_avg > single_best)
    capsys.readouterr()


def test_evaluate_a_copy_with_unreadable_images_and_training_images(
    trained: TrainedRun, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """--split all on a user's copy: unreadable files are left out and named; training images are flagged."""
    copy = tmp_path / "copy"
    shutil.copytree(trained.data, copy)
    train_ids = load_split(trained.split_file)["train"]
    (copy / "images" / f"{train_ids[0]}.jpg").write_bytes(b"not a jpeg")
    run = TrainedRun(copy, trained.out, trained.split_file, trained.runs, "")
    with caplog.at_level("WARNING"):
        rep = run_evaluate(run, "all", tmp_path / "all.json", "--bootstrap", "0")
    assert rep["ids"]["unreadable"] == [train_ids[0]] and rep["n"] == 3 * 36 - 1
    assert rep["ids"]["in_training_split"] == len(train_ids)
    assert str(train_ids[0]) not in rep["predictions"]
    assert "in baseline's training split" in caplog.text and "unreadable images are left out" in caplog.text


def test_evaluate_explains_instead_of_crashing(
    trained: TrainedRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def fails(*argv: str) -> str:
        base = ["--model", "baseline", "--weights", str(trained.out), "--split-file", str(trained.split_file)]
        with pytest.raises(SystemExit) as stop:
            evaluate.main([*base, *argv])
        assert stop.value.code == 2
        return capsys.readouterr().err

    # a copy whose products are all new: nothing of it is in the saved test split
    copy = tmp_path / "renamed"
    shutil.copytree(trained.data, copy)
    lines = (copy / "styles.csv").read_text().splitlines()
    renamed = [lines[0]] + [("9" + ln) if ln[:1].isdigit() else ln for ln in lines[1:]]
    (copy / "styles.csv").write_text("\n".join(renamed) + "\n")
    for img in (copy / "images").glob("*.jpg"):
        img.rename(img.with_name("9" + img.name))
    assert "--split all" in fails("--data", str(copy), "--split", "test", "--threads", "1")
    card_before = (trained.out / "baseline.json").read_bytes()
    assert "saved val or test split" in fails("--data", str(copy), "--refresh-card", "--threads", "1")
    assert (trained.out / "baseline.json").read_bytes() == card_before  # refused, not refreshed with nothing
    assert "at least 1" in fails("--data", str(trained.data), "--threads", "0")
    assert "0 or more" in fails("--data", str(trained.data), "--bootstrap", "-5")
    assert "is a folder" in fails("--data", str(trained.data), "--json", str(tmp_path))
    assert "looked in" in fails("--data", str(trained.data), "--weights", str(tmp_path / "nowhere"))
    assert "only works with --refresh-card" in fails("--data", str(trained.data), "--choose-rule")
    assert "neither --split nor --json" in fails("--data", str(trained.data), "--refresh-card", "--split", "val")
    assert "neither --split nor --json" in fails("--refresh-card", "--split", "test")  # before looking for data


def test_evaluate_train_split_says_the_model_learnt_from_it(
    trained: TrainedRun, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING"):
        rep = run_evaluate(trained, "train", tmp_path / "train.json", "--bootstrap", "0")
    assert rep["ids"]["in_training_split"] == rep["n"] == len(load_split(trained.split_file)["train"])
    assert "in baseline's training split" in caplog.text


def test_evaluate_on_a_split_the_model_was_not_trained_on_says_so(
    trained: TrainedRun, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another split file's "test" holds images the model trained on: never scored as if it were new."""
    card = json.loads((trained.out / "baseline.json").read_text())
    assert card["data"]["split_file_fingerprint"] == json.loads(trained.split_file.read_text())["fingerprint"]
    other = tmp_path / "other" / "split.json"
    save_split(make_split(load_styles(trained.data), seed=7), other)
    ours = set(load_split(trained.split_file)["train"])
    assert set(load_split(other)["test"]) & ours  # the other "test" has training images of this model
    run = TrainedRun(trained.data, trained.out, other, trained.runs, "")
    with caplog.at_level("WARNING"):
        rep = run_evaluate(run, "test", tmp_path / "other.json", "--bootstrap", "0")
    assert rep["ids"]["in_training_split"] is None and rep["ids"]["split_is_the_models"] is False
    assert "was not trained on the split in" in caplog.text

    beside = tmp_path / "weights"  # the model's own split file beside its weights is found and used
    shutil.copytree(trained.out, beside)
    shutil.copy(trained.split_file, beside / "split.json")
    caplog.clear()
    with caplog.at_level("WARNING"):
        rep = run_evaluate(
            TrainedRun(trained.data, beside, other, trained.runs, ""), "test", tmp_path / "o2.json", "--bootstrap", "0"
        )
    assert rep["ids"]["split_is_the_models"] is True
    assert rep["ids"]["in_training_split"] == len(set(load_split(other)["test"]) & ours) > 0
    assert "in baseline's training split" in caplog.text


def test_train_refuses_bad_numbers_and_a_missing_teacher_before_loading_images(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(prepare, "load_native_images", lambda *a, **k: pytest.fail("images loaded"))
    for bad in (("--epochs", "0"), ("--max-train", "0"), ("--threads", "0")):
        with pytest.raises(SystemExit):
            train.main(train_argv(tiny_dataset, tmp_path, *bad))
        assert "at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no trained teacher in"):
        train.main(train_argv(tiny_dataset, tmp_path, "--distill-from", "resnet50", "--teacher-dir", str(tmp_path)))
    with pytest.raises(SystemExit, match="--pretrained imagenet: the baseline CNN has no pretrained weights"):
        train.main(train_argv(tiny_dataset, tmp_path, "--pretrained", "imagenet"))
    with pytest.raises(SystemExit, match="pretrained weights file not found"):
        train.main(train_argv(tiny_dataset, tmp_path, "--model", "resnet50", "--pretrained", str(tmp_path / "no.pth")))
    with pytest.raises(SystemExit, match="no styles.csv"):
        train.main(train_argv(tmp_path / "nowhere", tmp_path))
    with pytest.raises(SystemExit, match=r"no usable usage rows for \['Nope'\]"):
        train.main(train_argv(tiny_dataset, tmp_path, "--classes", "Casual", "Nope"))
    with pytest.raises(SystemExit, match="with --pretrained none there are none"):
        train.main(train_argv(tiny_dataset, tmp_path, "--model", "effnet_lite0", "--pretrained", "none", "--freeze-bn"))


def test_effnet_defaults_keep_batchnorm_statistics_only_when_pretrained() -> None:
    parse = train.get_args_parser().parse_args
    assert train._fill_defaults(parse(["--model", "effnet_lite0"])).freeze_bn is True
    assert train._fill_defaults(parse(["--model", "effnet_lite0", "--pretrained", "none"])).freeze_bn is False
    assert train._fill_defaults(parse(["--model", "effnet_lite0", "--no-freeze-bn"])).freeze_bn is False


@pytest.mark.parametrize("hardware", [True, False])
def test_bf16_is_the_training_default_only_where_the_cpu_runs_it(
    monkeypatch: pytest.MonkeyPatch, hardware: bool
) -> None:
    """Emulated bfloat16 (an AVX2-only CPU) is several times slower than fp32: fp32 there unless asked."""
    monkeypatch.setattr(train, "bf16_is_fast", lambda: hardware)
    parse = train.get_args_parser().parse_args
    assert train._fill_defaults(parse(["--model", "resnet50"])).bf16 is hardware
    assert train._fill_defaults(parse(["--model", "resnet50", "--bf16"])).bf16 is True
    assert train._fill_defaults(parse(["--model", "resnet50", "--no-bf16"])).bf16 is False


@pytest.mark.parametrize("bf16", [True, False])
def test_the_teacher_runs_in_the_precision_of_the_run(monkeypatch: pytest.MonkeyPatch, bf16: bool) -> None:
    asked: list[bool] = []
    monkeypatch.setattr(prepare, "predict_logits", lambda model, images, bf16: asked.append(bf16) or np.zeros((2, 3)))
    assert prepare.teacher_soft_targets(None, np.zeros((2, 80, 60, 3), np.uint8), "t", bf16).dtype == np.float32
    assert asked == [bf16]


def test_leave_out_val_twins(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    split_file = tmp_path / "split.json"
    cat = load_styles(data)
    split = get_or_make_split(cat, split_file)
    label_of = cat.label_of()
    val_sc = next(i for i in split["val"] if label_of[i] == 2)
    train_sc = [i for i in split["train"] if label_of[i] == 2][:2]
    train_casual = next(i for i in split["train"] if label_of[i] == 0)
    # a colour variant of a validation Smart Casual product in train, plus the same name as Casual
    names = {val_sc: "Brand Men Red Shirt", train_sc[0]: "Brand Men Blue Shirt", train_casual: "Brand Men Shirt"}
    lines = (data / "styles.csv").read_text().splitlines()
    for k, line in enumerate(lines):
        pid = line.split(",")[0]
        if pid.isdigit() and int(pid) in names:
            lines[k] = ",".join([*line.split(",")[:9], names[int(pid)]])
    (data / "styles.csv").write_text("\n".join(lines) + "\n")

    assert train.main(train_argv(data, tmp_path, "--epochs", "1", "--leave-out-val-twins", "Smart Casual")) == 0
    card = ModelCard.load(tmp_path / "weights" / "baseline.json")
    assert card.data["left_out_of_training"]["ids"] == [train_sc[0]]  # not the Casual one
    assert card.data["trained_on_counts"]["Smart Casual"] == cat.counts(split["train"])["Smart Casual"] - 1
    assert card.data["split_counts"]["train"] == cat.counts(split["train"])
    assert card.data["split_fingerprint"] == split_fingerprint(split)  # the saved split itself is unchanged
    with pytest.raises(SystemExit, match="unknown classes"):
        train.main(train_argv(data, tmp_path, "--leave-out-val-twins", "Smart"))
    capsys.readouterr()


def test_auxiliary_head_trains_and_is_not_shipped(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """--aux-column: recorded in the card, kept in the checkpoint for --resume, absent from the saved weights."""
    import torch
    from safetensors.torch import load_file

    aux = ("--aux-column", "masterCategory", "--aux-min-count", "2")
    assert train.main(train_argv(tiny_dataset, tmp_path, "--epochs", "1", "--max-train", "40", *aux)) == 0
    card = ModelCard.load(tmp_path / "weights" / "baseline.json")
    assert card.training["auxiliary"]["values"] == ["Apparel", "Footwear"]
    assert card.training["auxiliary"]["shipped"] is False
    plain = build_baseline(3).state_dict()
    assert set(load_file(tmp_path / "weights" / "baseline.safetensors")) == set(plain)
    ck = torch.load(tmp_path / "runs" / "baseline" / "last.pt", map_location="cpu", weights_only=False)
    assert ck["aux"]["weight"].shape[0] == 2 and ck["aux_names"] == ["Apparel", "Footwear"]
    first = card.history[0]
    with pytest.raises(SystemExit, match="was trained with other settings"):
        train.main(
            train_argv(
                tiny_dataset, tmp_path, "--epochs", "2", "--max-train", "40", *aux, "--aux-weight", "1", "--resume"
            )
        )
    assert train.main(train_argv(tiny_dataset, tmp_path, "--epochs", "2", "--max-train", "40", *aux, "--resume")) == 0
    resumed = ModelCard.load(tmp_path / "weights" / "baseline.json").history
    assert [r["epoch"] for r in resumed] == [1, 2] and resumed[0] == first  # continued, not trained afresh
    assert "train_aux_loss" in resumed[1]
    with pytest.raises(SystemExit, match="--aux-column"):
        train.main(train_argv(tiny_dataset, tmp_path, "--aux-column", "nosuchcolumn", "--epochs", "1"))
    with pytest.raises(SystemExit, match="--aux-column needs"):
        train.main(train_argv(tiny_dataset, tmp_path, *aux, "--balance", "copies"))
    capsys.readouterr()
