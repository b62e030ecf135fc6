"""core.train under torchrun: two CPU processes (gloo) train the baseline on the tiny fixture with
DistributedDataParallel; the ranks end with the same weights, rank 0 alone writes the checkpoint and the card,
and the card is a card like any other. Plus the sharding of the class-balanced epoch among ranks."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import train
from core.models.card import ModelCard, load_model
from core.training.distributed import SINGLE, World, state_digest

ROOT = Path(__file__).resolve().parent.parent


def test_every_global_batch_is_split_among_the_ranks() -> None:
    order = np.random.default_rng(0).permutation(1000)
    args = argparse.Namespace(batch_size=64, lr=1e-3)
    shards = [World(rank=r, size=3).shard(order, args) for r in range(3)]
    per_rank = {a.batch_size for _, a in shards}
    assert per_rank == {21} and args.batch_size == 64  # the caller's settings stay as they were
    steps = {len(o) // 21 for o, _ in shards}
    assert steps == {1000 // 63} and all(len(o) % 21 == 0 for o, _ in shards)  # same number of whole steps
    for step in range(1000 // 63):  # a step's three shares are one global batch of the single-process order
        share = np.concatenate([o[step * 21 : (step + 1) * 21] for o, _ in shards])
        assert sorted(share) == sorted(order[step * 63 : (step + 1) * 63])
    assert SINGLE.shard(order, args) == (order, args)
    with pytest.raises(SystemExit):
        World(rank=0, size=40).shard(order, args)


@pytest.mark.distributed  # about 25 s: two processes on the tiny fixture
def test_torchrun_two_cpu_ranks(tiny_dataset: Path, tmp_path: Path) -> None:
    out, runs = tmp_path / "weights", tmp_path / "runs"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "core.train", "--model", "baseline", "--data", str(tiny_dataset), "--out", str(out),
        "--split-file", str(tmp_path / "split.json"), "--runs", str(runs), "--epochs", "1", "--max-train", "48",
        "--epoch-size", "128", "--batch-size", "32", "--bootstrap", "0", "--threads", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    card = ModelCard.load(out / "baseline.json")
    dist = card.training["distributed"]
    assert dist["world_size"] == 2 and dist["backend"] == "gloo" and dist["batch_per_rank"] == 16
    digests = dist["rank_weight_digests"]
    assert len(digests) == 2 and dist["ranks_agree"] and digests[0] == digests[1]
    model, _ = load_model("baseline", out)  # the weights rank 0 saved are every rank's weights
    assert state_digest(model.state_dict()) == digests[0]
    assert card.training["command"].startswith("torchrun --nnodes=1 --nproc_per_node=2 -m core.train")
    assert card.training["epochs_run"] == 1 and card.history[0]["train_images"] == 128  # 4 global batches of 32
    assert card.metrics["test"]["accuracy"] >= 0  # measured from the saved file, as a single-process run does
    wrote = [line for line in log.splitlines() if " wrote " in line and "baseline.json" in line]
    assert len(wrote) == 1 and "[rank 0]" in wrote[0], wrote  # the card is written once, by rank 0
    split_made = [line for line in log.splitlines() if "wrote new split" in line]
    assert len(split_made) == 1 and "[rank 0]" in split_made[0]  # the absent split file too, before rank 1 reads it
    assert "[rank 1]" in log  # rank 1 did train
    assert sorted(p.name for p in out.iterdir()) == ["baseline.json", "baseline.safetensors"]
    assert [p.name for p in (runs / "baseline").iterdir()] == ["last.pt"]
    # the same card as a single-process run's, field for field, plus training.distributed
    single = tmp_path / "single"
    assert train.main([*cmd[cmd.index("--model") :], "--out", str(single), "--runs", str(single / "runs")]) == 0
    alone = ModelCard.load(single / "baseline.json")
    assert set(vars(alone)) == set(vars(card)) and set(alone.metrics) == set(card.metrics)
    assert set(card.training) == set(alone.training) | {"distributed"}
    assert set(card.metrics["test"]) == set(alone.metrics["test"])
