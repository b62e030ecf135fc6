"""core.training.loop.train_one_epoch: the backbone's BatchNorm statistics move only when they should."""

from __future__ import annotations

import argparse
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from core.images.augment import AugmentParams
from core.models.networks import DressCodeNet, Preprocessing, dense_head
from core.training.loop import set_backbone_trainable, train_one_epoch


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
