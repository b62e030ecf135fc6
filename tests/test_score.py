"""python -m core.score on the local engine: inputs, one row per image (a bad file is a row with its reason),
the app's classes on every image, resumable parts, CSV, overlays and the ensemble hook."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from fixtures import jpeg_bytes, render

from core import score
from core.images.upload import read_upload
from core.prediction.inference import BATCH_FAST, BATCH_SIZE
from core.prediction.served import ServedModel
from core.scoring import catalogue
from core.scoring.inputs import list_inputs
from core.scoring.parts import METADATA_KEY, parts_dir_of

MODELS = "baseline,resnet50"
ROOT = Path(__file__).resolve().parent.parent


def make_folder(root: Path, n: int = 30) -> Path:
    """``n`` generated product photos (some in a subfolder, one large and square), a corrupt JPEG, an empty
    file, a text file (not scored) and a hidden file (not scored)."""
    rng = np.random.default_rng(1)
    (root / "sub").mkdir(parents=True)
    labels = ("Casual", "Formal", "Smart Casual")
    for k in range(n):
        size = (300, 300) if k == 3 else (60, 80)
        where = root / "sub" if k % 4 == 0 else root
        (where / f"p{k:03d}.jpg").write_bytes(jpeg_bytes(render(labels[k % 3], rng, size)))
    (root / "broken.jpg").write_bytes(jpeg_bytes(render("Casual", rng))[:200])
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not a photo")
    (root / ".hidden.jpg").write_bytes(b"x")
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(tmp_path_factory.mktemp("photos"))


def argv(src: Path, out: Path, *extra: str) -> list[str]:
    return [str(src), "--out", str(out), "--models", MODELS, "--workers", "0", "--threads", "1", "--quiet", *extra]


@pytest.fixture(scope="module")
def scored(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("scored") / "scores.parquet"
    assert score.main(argv(photos, out, "--batch-size", "8", "--part-size", "10")) == 0
    return pd.read_parquet(out)


def test_inputs_folder_table_and_list(photos: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    items, left_out = list_inputs(photos)
    ids = [it.id for it in items]
    assert len(ids) == 32 and left_out == 1  # 30 photos + broken + empty; notes.txt left out, .hidden unseen
    assert "sub/p000.jpg" in ids and "notes.txt" not in ids and ".hidden.jpg" not in ids
    table, _ = list_inputs(tiny_dataset / "styles.csv")
    by_id = {it.id: it.path for it in table}
    assert by_id["10001"] == str((tiny_dataset / "images" / "10001.jpg").resolve())
    assert "9005" in by_id  # a row whose image is missing is still an item (its row will say so)
    listing = tmp_path / "list.txt"
    listing.write_text(f"# a comment\n{photos / 'p001.jpg'}\n\n../nowhere.jpg\n{photos / 'p001.jpg'}\n")
    listed, dropped = list_inputs(listing)
    assert [it.id for it in listed] == [str(photos / "p001.jpg"), "../nowhere.jpg"] and dropped == 1
    assert listed[1].path == str((tmp_path.parent / "nowhere.jpg").resolve())


def test_one_row_per_image_bad_files_have_reasons(scored: pd.DataFrame, photos: Path) -> None:
    items, _ = list_inputs(photos)
    assert scored["id"].tolist() == [it.id for it in items]  # every image, once, in the input's order
    bad = scored.set_index("id").loc[["broken.jpg", "empty.png"]]
    assert bad["error"].str.len().gt(0).all() and bad["baseline_class"].isna().all()
    assert "empty" in bad.loc["empty.png", "error"]
    good = scored[scored["error"].isna()]
    assert len(good) == 30 and good["framing"].notna().all()
    probs = good[[c for c in good if c.startswith("resnet50_p_")]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    square = good.set_index("id").loc["p003.jpg"]
    assert square["framing"] in {"kept", "reframed", "busy", "no_product"}
    agree = good["baseline_class"] == good["resnet50_class"]
    assert (good["agreement"] == agree).all()


def test_classes_agree_with_the_app_on_every_image(scored: pd.DataFrame, photos: Path) -> None:
    """Each model's class equals what the app's multi-photo table shows for the same file (pages/classify.py
    predict_batch: read_upload, then ServedModel.predict on the fast path in BATCH_SIZE chunks)."""
    good = scored[scored["error"].isna()]
    natives = np.stack([read_upload(Path(p).name, Path(p).read_bytes()).native for p in good["path"]])
    for name in MODELS.split(","):
        served = ServedModel.load(name)
        app = served.predict(natives, batch_size=BATCH_SIZE, fast=BATCH_FAST)
        assert good[f"{name}_class"].tolist() == [served.classes[i] for i in app.argmax(1)]
        fp32 = served.predict(natives)  # and the fast path's classes are the fp32 ones
        assert good[f"{name}_class"].tolist() == [served.classes[i] for i in fp32.argmax(1)]
        cols = [f"{name}_p_{catalogue.class_slug(c)}" for c in served.classes]
        np.testing.assert_allclose(good[cols].to_numpy(), app, atol=0.02)


def test_decoding_workers_give_the_same_rows(scored: pd.DataFrame, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "w2.parquet"
    args = argv(photos, out, "--batch-size", "8")
    args[args.index("--workers") + 1] = "2"
    assert score.main(args) == 0
    again = pd.read_parquet(out)
    pd.testing.assert_frame_equal(
        again.drop(columns=[c for c in again if "_p_" in c]), scored.drop(columns=[c for c in scored if "_p_" in c])
    )


def test_interrupted_run_continues_and_rerun_skips(
    scored: pd.DataFrame, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "scores.parquet"
    real = catalogue.CatalogueScorer.score
    calls = {"n": 0}

    def flaky(self, batch):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # stopped in the middle of the third batch
        return real(self, batch)

    monkeypatch.setattr(catalogue.CatalogueScorer, "score", flaky)
    with pytest.raises(KeyboardInterrupt):
        score.main(argv(photos, out, "--batch-size", "8", "--part-size", "4"))
    parts = sorted(parts_dir_of(out).glob("part-*.parquet"))
    assert sum(pq.read_metadata(p).num_rows for p in parts) == 16 and not out.exists()
    assert not list(parts_dir_of(out).glob(".*"))  # no temporary file left behind
    monkeypatch.setattr(catalogue.CatalogueScorer, "score", real)
    args = score.get_args_parser().parse_args(argv(photos, out, "--batch-size", "8"))
    stats, rows, missing = score.run(args)
    assert (stats.scored, rows, missing) == (32 - 16, 32, [])
    pd.testing.assert_frame_equal(pd.read_parquet(out), scored, atol=0.02)
    ids = [i for p in sorted(parts_dir_of(out).glob("part-*.parquet")) for i in pq.read_table(p)["id"].to_pylist()]
    assert sorted(ids) == sorted(scored["id"]) and len(ids) == len(set(ids))  # nothing lost, nothing twice
    stats, rows, _ = score.run(args)  # a rerun on the same input scores nothing
    assert (stats.scored, rows) == (0, 32)
    meta = pq.read_schema(out).metadata[METADATA_KEY]
    assert json.loads(meta)["models"].keys() == {"baseline", "resnet50"}


def test_other_settings_refused_unless_restart(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "s.csv"
    base = [str(photos), "--out", str(out), "--workers", "0", "--threads", "1", "--quiet"]
    assert score.main([*base, "--models", "baseline"]) == 0
    csv = pd.read_csv(out)
    assert len(csv) == 32 and list(csv.columns[:3]) == ["id", "path", "error"]
    assert score.main([*base, "--models", "baseline,resnet50"]) == 2
    assert "--restart" in capsys.readouterr().err
    assert score.main([*base, "--models", "baseline,resnet50", "--restart"]) == 0
    assert "resnet50_class" in pd.read_csv(out).columns


def test_overlays(photos: Path, tmp_path: Path) -> None:
    listing = tmp_path / "two.txt"
    listing.write_text(f"{photos / 'p001.jpg'}\n{photos / 'broken.jpg'}\n")
    out, cams = tmp_path / "o.parquet", tmp_path / "cams"
    assert score.main(argv(listing, out, "--overlays", str(cams))) == 0
    rows = pd.read_parquet(out)
    assert rows["overlay"].isna().tolist() == [False, True]
    png = Path(rows["overlay"][0])
    assert png.parent == cams and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ensemble_column_where_ensemble_json_exists(photos: Path, tmp_path: Path) -> None:
    pytest.importorskip("core.scoring.calibration")
    weights = tmp_path / "weights"
    weights.mkdir()
    for f in ("baseline.json", "baseline.safetensors"):
        shutil.copy(ROOT / "weights" / f, weights)
    listing = tmp_path / "l.txt"
    listing.write_text(f"{photos / 'p001.jpg'}\n{photos / 'p002.jpg'}\n")
    out = tmp_path / "e.parquet"
    assert score.main(argv(listing, out, "--weights", str(weights), "--models", "baseline")) == 0
    assert not any(c.startswith("ensemble") for c in pd.read_parquet(out).columns)  # no ensemble.json: no column
    doc = {"members": ["baseline"], "classes": ["Casual", "Formal", "Smart Casual"]}
    doc |= {"decision_rule": {"logit_bias": [0.0, 0.0, 0.0]}, "temperature": 1.0}
    (weights / "ensemble.json").write_text(json.dumps(doc))
    assert score.main(argv(listing, tmp_path / "e2.parquet", "--weights", str(weights), "--models", "baseline")) == 0
    rows = pd.read_parquet(tmp_path / "e2.parquet")
    assert (rows["ensemble_class"] == rows["baseline_class"]).all()  # one member, no offsets: its classes
    out3 = tmp_path / "e3.parquet"
    assert score.main(argv(listing, out3, "--weights", str(weights), "--models", "baseline", "--no-ensemble")) == 0
    assert not any(c.startswith("ensemble") for c in pd.read_parquet(out3).columns)  # asked without it


def test_no_ensemble_loads_only_the_chosen_models(tmp_path: Path) -> None:
    from core.scoring.catalogue import CatalogueScorer

    weights = tmp_path / "weights"
    weights.mkdir()
    for f in ("baseline.json", "baseline.safetensors"):
        shutil.copy(ROOT / "weights" / f, weights)
    doc = {"members": ["baseline", "resnet50"], "classes": ["Casual", "Formal", "Smart Casual"]}
    doc |= {"decision_rule": {"logit_bias": [0.0, 0.0, 0.0]}, "temperature": 1.0}
    (weights / "ensemble.json").write_text(json.dumps(doc))
    scorer = CatalogueScorer(["baseline"], weights, fast=False, ensemble=False)
    assert list(scorer.models) == ["baseline"] and scorer.ensemble is None  # resnet50 (a member) not loaded
    assert scorer.signature()["ensemble"] is None
