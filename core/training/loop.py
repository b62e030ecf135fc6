"""The epoch loop: one pass over the drawn images (augmented, optionally re-framed, mixed up or
distilled), validation after each epoch, the best weights (or an average of the last epochs) kept,
a checkpoint every epoch, early stopping and the time budget."""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from core.images.augment import (
    AugmentParams,
    FramingAugmentParams,
    augment_batch,
    balanced_sampler_indices,
    make_augmenter,
    reframe_random,
)
from core.models.networks import DressCodeNet
from core.prediction.inference import predict_logits, to_float_batch
from core.scoring.metrics import classification_report
from core.training.auxiliary import Auxiliary
from core.training.distributed import SINGLE, World
from core.training.prepare import TrainingData

log = logging.getLogger(__name__)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher ‖ student) on temperature-softened distributions, scaled by T²."""
    t = temperature
    return F.kl_div(
        F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), log_target=True, reduction="batchmean"
    ) * (t * t)


def set_backbone_trainable(model: DressCodeNet, trainable: bool) -> None:
    """Freeze or unfreeze the backbone (frozen: BN statistics stay fixed too)."""
    for p in model.backbone.parameters():
        p.requires_grad_(trainable)
    model.backbone.train(trainable and model.training)


def train_one_epoch(
    model: DressCodeNet,
    images: np.ndarray,
    labels: np.ndarray,
    order: np.ndarray,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    args: argparse.Namespace,
    augment: bool,
    aug_params: AugmentParams,
    teacher_logits: np.ndarray | None,
    frozen: bool,
    deadline: float,
    framing: FramingAugmentParams | None = None,
    rng: np.random.Generator | None = None,
    forward: torch.nn.Module | None = None,
    aux: Auxiliary | None = None,
) -> dict[str, float]:
    """One pass over ``order``; returns mean loss and accuracy on the (augmented) stream.
    With ``framing`` on, a share of the draws is first re-shot as a user might frame it and
    normalised back (:func:`core.images.augment.reframe_random`), before the usual augmentation.
    ``forward``: what computes the logits, when not ``model`` itself (its DistributedDataParallel wrapper).
    ``aux``: an auxiliary head trained beside (:mod:`core.training.auxiliary`); ``forward`` then wraps ``aux.net``."""
    rng = rng if rng is not None else np.random.default_rng(0)
    model.train()
    if frozen:
        model.backbone.eval()
    elif args.freeze_bn:
        for m in model.backbone.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()  # keep the pretrained statistics: small, class-balanced batches would skew them
    aug = make_augmenter(aug_params, images.shape[1:3])
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else nullcontext()
    total, correct, loss_sum, aux_sum = 0, 0, 0.0, 0.0
    bar = tqdm(range(0, len(order), args.batch_size), desc="train", leave=False, mininterval=5, file=sys.stderr)
    for start in bar:
        idx = order[start : start + args.batch_size]
        if len(idx) < 2:
            continue
        batch = images[idx]
        if augment and framing is not None and framing.probability > 0:
            batch = batch.copy()
            for k in np.flatnonzero(rng.random(len(idx)) < framing.probability):
                batch[k] = reframe_random(batch[k], rng, framing)
        x = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))
        if augment:
            x = augment_batch(x, aug)
        x = to_float_batch(x)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy(labels[idx]).long()
        lam, perm = 1.0, None
        if args.mixup > 0:  # mixup: blend pairs of images and their losses
            lam = float(torch.distributions.Beta(args.mixup, args.mixup).sample())
            perm = torch.randperm(len(idx))
            x = lam * x + (1 - lam) * x[perm]
        aux_logits = None
        with ctx:
            if aux is None:
                logits = (model if forward is None else forward)(x)
            else:
                logits, aux_logits = (aux.net if forward is None else forward)(x)
        logits = logits.float()
        loss = F.cross_entropy(logits, y, label_smoothing=args.label_smoothing)
        if perm is not None:
            loss = lam * loss + (1 - lam) * F.cross_entropy(logits, y[perm], label_smoothing=args.label_smoothing)
            if lam < 0.5:
                y = y[perm]  # accuracy against the dominant label
        if teacher_logits is not None:
            t = torch.from_numpy(teacher_logits[idx]).float()
            loss = (1 - args.distill_alpha) * loss + args.distill_alpha * distillation_loss(
                logits, t, args.distill_temperature
            )
        if aux is not None:
            aux_loss = aux.loss(aux_logits, idx, perm, lam)
            aux_sum += aux_loss.item() * len(idx)
            loss = loss + aux_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += len(idx)
        correct += int((logits.argmax(1) == y).sum())
        loss_sum += loss.item() * len(idx)
        bar.set_postfix(loss=f"{loss_sum / total:.3f}", acc=f"{correct / total:.3f}", refresh=False)
        if time.time() > deadline:
            log.warning("time budget reached inside the epoch; stopping it early")
            break
    stats = {"train_loss": loss_sum / max(total, 1), "train_acc": correct / max(total, 1), "train_images": total}
    if aux is not None:  # train_loss includes it; this is its share, weighted
        stats["train_aux_loss"] = aux_sum / max(total, 1)
    return stats


def evaluate_logits(model: DressCodeNet, images: np.ndarray, bf16: bool) -> np.ndarray:
    """Validation logits (bf16 during training for speed; final metrics use fp32)."""
    return predict_logits(model, images, bf16=bf16)


# ---- the epoch loop
@dataclass
class Progress:
    """What the epoch loop carries from epoch to epoch; all but the throughput is in the checkpoint."""

    started: float  # when the run started (time.time()), earlier invocations included on --resume
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"score": -1.0, "epoch": -1, "state": None})
    averaged: AveragedModel | None = None  # running mean of the last --average-last epochs' weights
    start_epoch: int = 0
    train_time: float = 0.0  # seconds inside train_one_epoch, this invocation
    train_seen: int = 0  # images trained on, this invocation


def restore_progress(
    ck: dict | None,
    path: Path,
    model: DressCodeNet,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    started: float,
    aux: Auxiliary | None = None,
) -> Progress:
    """A fresh start, or the checkpoint ``ck`` (read from ``path``) restored into the model (and ``aux``'s head),
    optimiser and schedule."""
    if ck is None:
        return Progress(started)
    model.load_state_dict(ck["model"])
    if aux is not None:
        if ck.get("aux") is None:
            raise SystemExit(f"--resume: {path} was trained without the auxiliary head; train afresh")
        if ck.get("aux_names", aux.names) != aux.names:  # they come from styles.csv, which no option pins
            raise SystemExit(f"--resume: {path} learnt other {aux.column} values than styles.csv has now; train afresh")
        aux.net.head.load_state_dict(ck["aux"])
    optimizer.load_state_dict(ck["optimizer"])
    scheduler.load_state_dict(ck["scheduler"])
    progress = Progress(started - ck.get("elapsed", 0.0), ck["history"], ck["best"], start_epoch=ck["epoch"] + 1)
    if ck.get("averaged") is not None:
        progress.averaged = AveragedModel(model, use_buffers=True)
        progress.averaged.load_state_dict(ck["averaged"])
    log.info("resumed from %s at epoch %d", path, progress.start_epoch)
    return progress


def epoch_order(labels: np.ndarray, epoch_size: int, balanced: bool, rng: np.random.Generator) -> np.ndarray:
    """One epoch's draws: class-balanced with replacement, or a shuffle of the (copy-balanced) set."""
    if balanced:
        return balanced_sampler_indices(labels, epoch_size, rng)
    return rng.permutation(len(labels))[:epoch_size]


def validate(
    model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, classes: list[str], bf16: bool
) -> tuple[dict, float]:
    """The validation report (without intervals) and cross-entropy loss."""
    logits = evaluate_logits(model, images, bf16)
    loss = float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)))
    return classification_report(labels, logits.argmax(1), classes, n_boot=0), loss


def save_checkpoint(
    path: Path,
    model: DressCodeNet,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    epoch: int,
    progress: Progress,
    settings: dict,
    ids_fingerprint: str,
    aux: Auxiliary | None = None,
) -> None:
    """What --resume continues from: states, history, best so far, the settings and the images' fingerprint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "history": progress.history,
            "best": progress.best,
            "averaged": None if progress.averaged is None else progress.averaged.state_dict(),
            "args": settings,
            "ids_fingerprint": ids_fingerprint,
            "aux": None if aux is None else aux.net.head.state_dict(),
            "aux_names": None if aux is None else aux.names,
            "elapsed": time.time() - progress.started,
        },
        path,
    )


def run_epochs(
    model: DressCodeNet,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    progress: Progress,
    data: TrainingData,
    teacher_logits: np.ndarray | None,
    aug_params: AugmentParams,
    framing_params: FramingAugmentParams,
    args: argparse.Namespace,
    ckpt_path: Path,
    world: World = SINGLE,
    aux: Auxiliary | None = None,
) -> None:
    """Train up to --epochs: after each epoch, validate, keep the best weights (or the average of the last
    --average-last epochs, when better) and checkpoint; stop after --patience epochs without a validation
    macro-F1 gain, or once past --time-budget. Under torchrun (``world``, :mod:`core.training.distributed`)
    each rank trains on its share of every batch, rank 0 validates for all and alone writes checkpoints.
    ``aux``: an auxiliary head trained beside the model (validation and the kept weights are the model's alone)."""
    deadline = progress.started + (args.time_budget * 60 if args.time_budget else float("inf"))
    rng = np.random.default_rng(args.seed + progress.start_epoch)
    val_images, val_labels = data.images["val"], data.labels["val"]
    forward, wrapped_for = None, None  # under torchrun: the DDP wrapper, made again when freezing changes
    for epoch in range(progress.start_epoch, args.epochs):
        frozen = epoch < args.freeze_epochs
        set_backbone_trainable(model, not frozen)
        if frozen != wrapped_for:
            forward = None  # the old wrapper goes before the new one registers its hooks
            forward, wrapped_for = world.wrap(model if aux is None else aux.net), frozen
        order, epoch_args = world.shard(
            epoch_order(data.train_labels, args.epoch_size, args.balance == "sampler", rng), args
        )
        t0 = time.time()
        stats = train_one_epoch(
            model,
            data.train_images,
            data.train_labels,
            order,
            optimizer,
            scheduler,
            epoch_args,
            augment=args.balance == "sampler",
            aug_params=aug_params,
            teacher_logits=teacher_logits,
            frozen=frozen,
            deadline=world.epoch_deadline(deadline),
            framing=framing_params,
            rng=rng,
            forward=forward,
            aux=aux,
        )
        stats = world.sum_stats(stats)
        progress.train_time += time.time() - t0
        progress.train_seen += stats["train_images"]
        rep, val_loss = world.from_main(partial(validate, model, val_images, val_labels, args.classes, args.bf16))
        row = {
            "epoch": epoch + 1,
            "frozen_backbone": frozen,
            **{k: round(v, 5) if isinstance(v, float) else v for k, v in stats.items()},
            "val_loss": round(val_loss, 5),
            "val_acc": round(rep["accuracy"], 5),
            "val_balanced_acc": round(rep["balanced_accuracy"], 5),
            "val_macro_f1": round(rep["macro_f1"], 5),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(time.time() - t0, 1),
        }
        progress.history.append(row)
        log.info("epoch %d: %s", epoch + 1, {k: v for k, v in row.items() if k != "epoch"})
        if rep["macro_f1"] > progress.best["score"]:
            progress.best = {"score": rep["macro_f1"], "epoch": epoch + 1, "state": copy.deepcopy(model.state_dict())}
        if args.average_last and epoch >= args.epochs - args.average_last:
            if progress.averaged is None:
                progress.averaged = AveragedModel(model, use_buffers=True)
            progress.averaged.update_parameters(model)  # frozen or live BN: buffers are averaged too
            n_avg = int(progress.averaged.n_averaged)
            averaged = partial(validate, progress.averaged.module, val_images, val_labels, args.classes, args.bf16)
            avg_rep, _ = world.from_main(averaged)
            row["average_of_last"] = n_avg
            row["average_val_macro_f1"] = round(avg_rep["macro_f1"], 5)
            log.info("average of the last %d epochs: validation macro-F1 %.4f", n_avg, avg_rep["macro_f1"])
            if avg_rep["macro_f1"] > progress.best["score"]:
                state = copy.deepcopy(progress.averaged.module.state_dict())
                progress.best = {"score": avg_rep["macro_f1"], "epoch": epoch + 1, "state": state, "averaged": n_avg}
        if world.is_main:
            fingerprint = data.ids_fingerprint
            save_checkpoint(ckpt_path, model, optimizer, scheduler, epoch, progress, vars(args), fingerprint, aux)
        if epoch + 1 - progress.best["epoch"] >= args.patience:
            log.info("early stopping: no validation macro-F1 gain for %d epochs", args.patience)
            break
        if world.agree(time.time() > deadline):
            log.info("time budget of %.0f min reached", args.time_budget)
            break
