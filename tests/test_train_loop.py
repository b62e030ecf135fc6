"""core.training.loop.train_one_epoch: the backbone's BatchNorm statistics move only when they should."""

from __future__ import annotations

import argparse
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from core.data.catalog import Catalog
from core.images.augment import AugmentParams
from core.models.networks import DressCodeNet, Preprocessing, dense_head
from core.training.auxiliary import IGNORE, Auxiliary, WithAuxiliary, auxiliary_labels
from core.training.loop import (
    Progress,
    restore_progress,
    save_checkpoint,
    set_backbone_trainable,
    train_one_epoch,
)


def small_net() -> DressCodeNet:
    torch.manual_seed(0)
    backbone = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 8, 3, padding=1), bn=nn.BatchNorm2d(8), relu=nn.ReLU()))
    return DressCodeNet(Preprocessing(), backbone, dense_head(8, 3, hidden=8))


@pytest.mark.parametrize(
    ("frozen", "freeze_bn", "stats_move", "weights_move"),
    [
        (True, False, False, False),  # frozen backbone: nothing in it changes
        (False, True, False, True),  # fine-tuning with frozen BN: weights learn, statistics stay
        (False, False, True, True),  # plain fine-tuning: both move
    ],
)
def test_batchnorm_statistics(frozen: bool, freeze_bn: bool, stats_move: bool, weights_move: bool) -> None:
    model = small_net()
    set_backbone_trainable(model, not frozen)
    bn, conv = model.backbone.bn, model.backbone.conv
    mean0, w0 = bn.running_mean.clone(), conv.weight.detach().clone()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (16, 80, 60, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, 16)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    args = argparse.Namespace(
        batch_size=8, bf16=False, channels_last=False, label_smoothing=0.0, freeze_bn=freeze_bn, mixup=0.0
    )
    train_one_epoch(
        model, images, labels, np.arange(16), opt, sched, args, False, AugmentParams(), None, frozen, float("inf")
    )
    assert (not torch.equal(bn.running_mean, mean0)) == stats_move
    assert (not torch.equal(conv.weight, w0)) == weights_move


def test_mixup_blends_images_and_losses() -> None:
    """With --mixup the model sees blends of two images and the loss mixes both labels."""
    model = small_net()
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda _m, inp: seen.append(inp[0].detach().clone()))
    images = np.stack([np.full((80, 60, 3), v, np.uint8) for v in (0, 255, 0, 255)])
    labels = np.array([0, 1, 0, 1])
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    common = dict(batch_size=4, bf16=False, channels_last=False, label_smoothing=0.0, freeze_bn=False)
    torch.manual_seed(3)
    plain = train_one_epoch(
        model, images, labels, np.arange(4), opt, sched, argparse.Namespace(**common, mixup=0.0), False,
        AugmentParams(), None, False, float("inf"),
    )  # fmt: skip
    assert set(seen[-1].unique().tolist()) <= {0.0, 1.0}  # plain: every image is all black or all white
    torch.manual_seed(3)
    mixed = train_one_epoch(
        model, images, labels, np.arange(4), opt, sched, argparse.Namespace(**common, mixup=0.4), False,
        AugmentParams(), None, False, float("inf"),
    )  # fmt: skip
    assert any(0.0 < v < 1.0 for v in seen[-1].unique().tolist())  # blends of black and white
    assert mixed["train_loss"] != pytest.approx(plain["train_loss"])


def _aux_run(model: DressCodeNet, aux: Auxiliary | None, lr: float) -> dict:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 80, 60, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    params = list(model.parameters()) + ([] if aux is None else list(aux.net.head.parameters()))
    opt = torch.optim.SGD(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    args = argparse.Namespace(
        batch_size=8, bf16=False, channels_last=False, label_smoothing=0.0, freeze_bn=False, mixup=0.0
    )
    torch.manual_seed(5)  # the same dropout masks in every run
    return train_one_epoch(
        model, images, labels, np.arange(8), opt, sched, args, False, AugmentParams(), None, False, float("inf"),
        aux=aux,
    )  # fmt: skip


def test_auxiliary_head_adds_its_loss_and_learns() -> None:
    """--aux-column: the type's cross-entropy joins the loss (none for ignored images) and its head learns."""
    model = small_net()
    types = np.array([0, 1, 0, 1, 0, 1, 0, 1])

    def aux(labels: np.ndarray) -> Auxiliary:
        return Auxiliary(WithAuxiliary(model, 2, (80, 60)), labels, ["a", "b"], "articleType", 1.0)

    plain = _aux_run(model, None, lr=0.0)
    assert _aux_run(model, aux(types), lr=0.0)["train_loss"] > plain["train_loss"] + 0.1  # about ln 2 more
    assert _aux_run(model, aux(np.full(8, IGNORE)), lr=0.0)["train_loss"] == pytest.approx(plain["train_loss"])
    grads = {}
    for name, joined in (("plain", None), ("aux", aux(types))):  # one step: the head's loss reaches the backbone
        model.zero_grad()
        _aux_run(model, joined, lr=0.0)
        grads[name] = model.backbone.conv.weight.grad.clone()
    assert not torch.allclose(grads["plain"], grads["aux"])
    learner = aux(types)
    head0 = learner.net.head.weight.detach().clone()
    stats = _aux_run(model, learner, lr=0.5)
    assert not torch.equal(learner.net.head.weight, head0)
    assert 0 < stats["train_aux_loss"] < stats["train_loss"]


def test_auxiliary_loss_mixes_both_types_under_mixup() -> None:
    joined = Auxiliary(WithAuxiliary(small_net(), 2, (80, 60)), np.array([0, 1, IGNORE]), ["a", "b"], "t", 1.0)
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    idx, perm = np.arange(3), torch.tensor([1, 0, 2])
    right = float(joined.loss(logits, idx, None, 1.0))
    swapped = float(joined.loss(logits, idx[[1, 0, 2]], None, 1.0))
    assert float(joined.loss(logits, idx, perm, 0.25)) == pytest.approx(0.25 * right + 0.75 * swapped)


def test_a_resumed_run_gets_its_auxiliary_head_back(tmp_path: Path) -> None:
    model = small_net()
    joined = Auxiliary(WithAuxiliary(model, 2, (80, 60)), np.zeros(4, np.int64), ["a", "b"], "articleType", 1.0)
    opt = torch.optim.SGD([*model.parameters(), *joined.net.head.parameters()], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    progress = Progress(started=0.0)
    save_checkpoint(tmp_path / "last.pt", model, opt, sched, 0, progress, {}, "fp", joined)
    ck = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=False)
    fresh = Auxiliary(WithAuxiliary(model, 2, (80, 60)), np.zeros(4, np.int64), ["a", "b"], "articleType", 1.0)
    assert not torch.equal(fresh.net.head.weight, joined.net.head.weight)
    restore_progress(ck, tmp_path / "last.pt", model, opt, sched, 0.0, fresh)
    assert torch.equal(fresh.net.head.weight, joined.net.head.weight)
    other = Auxiliary(WithAuxiliary(model, 2, (80, 60)), np.zeros(4, np.int64), ["a", "c"], "articleType", 1.0)
    with pytest.raises(SystemExit, match="other articleType values"):
        restore_progress(ck, tmp_path / "last.pt", model, opt, sched, 0.0, other)
    with pytest.raises(SystemExit, match="without the auxiliary head"):
        restore_progress({**ck, "aux": None}, tmp_path / "last.pt", model, opt, sched, 0.0, fresh)


def test_auxiliary_labels_leave_rare_values_out() -> None:
    rows = {i: {"articleType": t} for i, t in enumerate(["Shirts"] * 3 + ["Ties"] * 2 + ["Socks", ""])}
    catalog = Catalog(Path("."), ("Casual",), "usage", list(rows), [0] * len(rows), rows)
    labels, names = auxiliary_labels(catalog, list(rows), "articleType", min_count=2)
    assert names == ["Shirts", "Ties"]
    assert labels.tolist() == [0, 0, 0, 1, 1, IGNORE, IGNORE]
    with pytest.raises(ValueError, match="no column"):
        auxiliary_labels(catalog, list(rows), "colour", min_count=2)
    with pytest.raises(ValueError, match="fewer than two"):
        auxiliary_labels(catalog, list(rows), "articleType", min_count=3)
