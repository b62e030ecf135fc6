"""Train one registry model on the saved split and write weights/NAME.safetensors + its model card.

    python -m core.train --model effnet_lite0 --data ../shared/data/fashion-small --out /tmp/mine

Per-model defaults follow the recipes of the shipped models; each card's training.command(s)
holds the exact commands. Checkpoints every epoch to RUNS/NAME/last.pt; --resume continues.
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import shlex
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from core.augment import (
    AugmentParams,
    FramingAugmentParams,
    augment_batch,
    balance_with_copies,
    balanced_sampler_indices,
    make_augmenter,
    reframe_random,
)
from core.card import ModelCard, WeightsError, library_versions, load_model, save_weights, sha256_file
from core.cli import non_negative_int, positive_int
from core.data import (
    DEFAULT_CLASSES,
    DEFAULT_LABEL_COLUMN,
    DEFAULT_SPLIT_FILE,
    find_default_data_dir,
    find_split,
    get_or_make_split,
    load_native_images,
    load_styles,
    split_fingerprint,
    val_twins_in_train,
)
from core.evaluate import measure_splits
from core.framing import DEFAULT_PARAMS as DEFAULT_FRAMING
from core.inference import predict_logits, to_float_batch
from core.metrics import choose_logit_bias, classification_report, format_report
from core.models import REGISTRY, WEIGHTS_DIR, DressCodeNet, PretrainedWeightsError, get_spec

log = logging.getLogger(__name__)

# defaults per model: the shipped recipes (bf16 = autocast during training; SAVE_DTYPE is the file's dtype)
_COMMON = dict(freeze_epochs=1, epoch_size=6000, batch_size=48, bf16=True, freeze_bn=False, patience=6)
DEFAULTS: dict[str, dict] = {
    "baseline": {**_COMMON, "epochs": 12, "batch_size": 64, "lr": 1e-3, "freeze_epochs": 0, "epoch_size": 12000},
    "resnet50": {**_COMMON, "epochs": 16, "lr": 1.5e-3, "patience": 10},
    "effnet_lite0": {**_COMMON, "epochs": 12, "lr": 1e-3, "freeze_bn": True},
}
SAVE_DTYPE = {"resnet50": torch.float16}
# what a resumed run must share with its checkpoint (the labels, the model, the step sizes, the
# augmentation and loss); --distill-from and --time-budget may change, as the shipped ResNet50's second
# invocation did, and --epochs may grow to continue a run. The training and validation images
# themselves are compared by fingerprint (another --data copy or --split-file may hold others).
RESUME_MUST_MATCH = (
    "model",
    "label_column",
    "classes",
    "pretrained",
    "epoch_size",
    "batch_size",
    "lr",
    "backbone_lr_mult",
    "weight_decay",
    "freeze_epochs",
    "freeze_bn",
    "balance",
    "fill_mode",
    "color_jitter",
    "hue",
    "grayscale",
    "label_smoothing",
    "mixup",
    "leave_out_val_twins",
    "framing_aug",
    "init_from",
    "max_train",
    "seed",
)


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch."""
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
) -> dict[str, float]:
    """One pass over ``order``; returns mean loss and accuracy on the (augmented) stream.
    With ``framing`` on, a share of the draws is first re-shot as a user might frame it and
    normalised back (:func:`core.augment.reframe_random`), before the usual augmentation."""
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
    total, correct, loss_sum = 0, 0, 0.0
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
        with ctx:
            logits = model(x)
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
    return {"train_loss": loss_sum / max(total, 1), "train_acc": correct / max(total, 1), "train_images": total}


def evaluate_logits(model: DressCodeNet, images: np.ndarray, bf16: bool) -> np.ndarray:
    """Validation logits (bf16 during training for speed; final metrics use fp32)."""
    return predict_logits(model, images, bf16=bf16)


def get_args_parser() -> argparse.ArgumentParser:
    """Command-line options; model-specific defaults come from ``DEFAULTS``."""
    p = argparse.ArgumentParser(
        prog="python -m core.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, choices=list(REGISTRY), help="registry name of the model to train")
    p.add_argument("--data", type=Path, default=None, help="dataset folder (default: auto-detect)")
    p.add_argument(
        "--out",
        type=Path,
        default=WEIGHTS_DIR,
        help="where to write NAME.safetensors/json (default weights/: replaces the shipped model)",
    )
    p.add_argument("--runs", type=Path, default=Path("runs"), help="checkpoints go to RUNS/NAME/last.pt (default runs)")
    p.add_argument(
        "--split-file", type=Path, default=DEFAULT_SPLIT_FILE, help="saved split; made there if absent (weights/)"
    )
    p.add_argument("--label-column", default=DEFAULT_LABEL_COLUMN, help="styles.csv column to predict (usage)")
    p.add_argument("--classes", nargs="+", default=list(DEFAULT_CLASSES), help="class names, in output order")
    p.add_argument("--pretrained", default=None, help="imagenet | PATH | none (default per model)")
    p.add_argument("--epochs", type=positive_int, help="default: baseline 12, resnet50 16, effnet_lite0 12")
    p.add_argument("--batch-size", type=positive_int, help="default 64 baseline, 48 otherwise")
    p.add_argument("--lr", type=float, help="head learning rate (default 1e-3; resnet50 1.5e-3)")
    p.add_argument(
        "--backbone-lr-mult",
        type=float,
        default=None,
        help="backbone LR = lr × this after unfreezing (default 0.3 pretrained, 1 otherwise)",
    )
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (default 1e-4)")
    p.add_argument(
        "--freeze-epochs", type=non_negative_int, help="first epochs with a frozen backbone (pretrained; default 1)"
    )
    p.add_argument("--epoch-size", type=positive_int, help="images drawn per epoch (default 12000 baseline, else 6000)")
    p.add_argument(
        "--freeze-bn",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after unfreezing, keep the backbone's BatchNorm statistics as they were (default: on for effnet_lite0)",
    )
    p.add_argument(
        "--balance",
        choices=["sampler", "copies"],
        default="sampler",
        help="(b) class-balanced sampler with fresh augmentation, or (a) augmented copies",
    )
    p.add_argument(
        "--fill-mode",
        choices=["nearest", "constant", "reflect"],
        default="nearest",
        help="how pixels that a rotation, shear or shift creates are filled (default nearest)",
    )
    p.add_argument("--color-jitter", type=float, default=0.0, help="brightness/contrast/saturation jitter ± (0 = off)")
    p.add_argument("--hue", type=float, default=0.0, help="hue jitter ± fraction of the colour circle (0 = off)")
    p.add_argument("--grayscale", type=float, default=0.0, help="probability of a grey-scale copy (0 = off)")
    p.add_argument("--label-smoothing", type=float, default=0.05, help="cross-entropy label smoothing (0.05)")
    p.add_argument(
        "--mixup",
        type=float,
        default=0.0,
        help="mixup with Beta(a, a) blending weights, a = this (0 = off; not with --distill-from)",
    )
    p.add_argument(
        "--distill-from", default=None, choices=list(REGISTRY), help="registry name of a trained teacher model"
    )
    p.add_argument(
        "--teacher-dir", type=Path, default=WEIGHTS_DIR, help="where the teacher's weights and card are (weights/)"
    )
    p.add_argument("--distill-alpha", type=float, default=0.5, help="weight of the teacher's soft targets (0.5)")
    p.add_argument("--distill-temperature", type=float, default=2.0, help="softmax temperature of distillation (2)")
    p.add_argument(
        "--patience",
        type=positive_int,
        help="stop after this many epochs without a validation macro-F1 gain (default 6; resnet50 10)",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="wall-clock minutes since the run started, data loading included; on --resume earlier "
        "invocations count too. Stops after the step that passes it",
    )
    p.add_argument(
        "--framing-aug",
        type=float,
        default=0.0,
        help="share of draws re-framed as users frame photos, then normalised (core.augment.reframe_random; 0 = off)",
    )
    p.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="weights folder holding a trained MODEL (NAME.safetensors + card): fine-tune it instead of a fresh start",
    )
    p.add_argument("--seed", type=int, default=42, help="seed for the split (if made), sampling and augmentation")
    p.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads (default 2)")
    p.add_argument(
        "--bf16", action=argparse.BooleanOptionalAction, default=None, help="bfloat16 autocast while training (on)"
    )
    p.add_argument(
        "--leave-out-val-twins",
        nargs="+",
        metavar="CLASS",
        default=None,
        help="leave out training images of these classes whose product (name without colour words) is in "
        "validation with the same class, so that validation scores them on unseen products",
    )
    p.add_argument("--max-train", type=positive_int, default=None, help="cap the training images (smoke tests)")
    p.add_argument(
        "--resume", action="store_true", help="continue from RUNS/NAME/last.pt (starts afresh when there is none)"
    )
    p.add_argument(
        "--average-last",
        type=non_negative_int,
        default=0,
        help="also average the weights of the last K epochs (SWA); kept if its validation macro-F1 is best",
    )
    p.add_argument("--bootstrap", type=non_negative_int, default=1000, help="bootstrap resamples for intervals")
    return p


def _fill_defaults(args: argparse.Namespace) -> argparse.Namespace:
    spec = get_spec(args.model)
    pretrained = args.pretrained or spec.default_pretrained
    if pretrained == "none":
        if args.freeze_bn:
            raise SystemExit("--freeze-bn keeps pretrained BatchNorm statistics; with --pretrained none there are none")
        args.freeze_bn = False  # a random backbone's statistics must be learnt
    for key, value in DEFAULTS[args.model].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.pretrained is None:
        args.pretrained = spec.default_pretrained
    if args.backbone_lr_mult is None:
        args.backbone_lr_mult = 1.0 if args.pretrained == "none" else 0.3
    if args.pretrained == "none":
        args.freeze_epochs = 0  # freezing a random backbone teaches nothing
    args.channels_last = args.model != "baseline"
    return args


def main(argv: Sequence[str] | None = None) -> int:  # noqa: C901 - a training script reads best in one piece
    """Train, pick the best epoch on validation macro-F1, choose the decision rule on
    validation, save weights + model card, then measure val and test from the saved file."""
    args = _fill_defaults(get_args_parser().parse_args(argv))
    if args.mixup < 0 or (args.mixup and args.distill_from):
        raise SystemExit("--mixup must be >= 0 and does not combine with --distill-from")
    try:
        aug_params = AugmentParams(
            fill_mode=args.fill_mode, color_jitter=args.color_jitter, hue=args.hue, grayscale=args.grayscale
        )
        framing_params = FramingAugmentParams(probability=args.framing_aug)
    except ValueError as exc:
        raise SystemExit(f"bad augmentation option: {exc}") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    set_seed(args.seed)
    command = "python -m core.train " + shlex.join(list(argv) if argv is not None else sys.argv[1:])
    spec = get_spec(args.model)
    data_dir = args.data or find_default_data_dir()
    if data_dir is None:
        raise SystemExit("no --data given and no dataset found")
    # the model and the teacher are made (and the teacher's sha256 checked) before minutes of image loading
    try:
        model = spec.builder(len(args.classes), args.pretrained)
    except PretrainedWeightsError as exc:
        raise SystemExit(f"--pretrained {args.pretrained}: {exc}") from None
    if args.init_from:  # fine-tune a trained model (e.g. the shipped one) instead of starting afresh
        try:
            start, _ = load_model(args.model, args.init_from)
        except WeightsError as exc:
            raise SystemExit(f"--init-from {args.init_from}: {exc}") from None
        model.load_state_dict(start.state_dict())
        for prm in model.parameters():
            prm.requires_grad_(True)
        del start
    teacher = None
    if args.distill_from:
        try:
            teacher, _ = load_model(args.distill_from, args.teacher_dir)
        except WeightsError as exc:
            raise SystemExit(
                f"--distill-from {args.distill_from}: no trained teacher in {args.teacher_dir} ({exc})"
            ) from None
    ckpt_path = args.runs / args.model / "last.pt"
    ck = torch.load(ckpt_path, map_location="cpu", weights_only=False) if args.resume and ckpt_path.is_file() else None
    if ck is not None:  # checked against its checkpoint before image loading, restored after
        changed = {
            k: (ck["args"][k], getattr(args, k))
            for k in RESUME_MUST_MATCH
            if k in ck.get("args", {}) and ck["args"][k] != getattr(args, k)
        }
        if changed:
            raise SystemExit(
                f"--resume: {ckpt_path} was trained with other settings (checkpoint, now): {changed}; "
                "pass the same ones, or train afresh without --resume"
            )
    t_start = time.time()

    # ---- data
    try:
        catalog = load_styles(data_dir, args.classes, args.label_column)
    except (FileNotFoundError, KeyError) as exc:
        raise SystemExit(f"--data {data_dir}: {exc}") from None
    empty = [c for c, n in catalog.counts().items() if n == 0]
    if empty:
        raise SystemExit(f"--classes: no usable {args.label_column} rows for {empty} in {data_dir}")
    split = get_or_make_split(catalog, args.split_file, args.seed)
    label_of = catalog.label_of()
    ids = {s: list(v) for s, v in split.items()}
    left_out: list[int] = []
    if args.leave_out_val_twins:
        try:
            left_out = val_twins_in_train(catalog, split, args.leave_out_val_twins)
        except ValueError as exc:
            raise SystemExit(f"--leave-out-val-twins: {exc}") from None
        gone = set(left_out)
        ids["train"] = [i for i in ids["train"] if i not in gone]
        log.info("left out %d training images whose product is in validation: %s", len(left_out), left_out)
    if args.max_train:
        rng = np.random.default_rng(args.seed)
        ids["train"] = sorted(rng.choice(ids["train"], size=min(args.max_train, len(ids["train"])), replace=False))
    ids_fingerprint = split_fingerprint(ids)
    if ck is not None and "ids_fingerprint" not in ck:
        log.warning("%s predates image fingerprints: its training/validation images cannot be checked", ckpt_path)
    if ck is not None and ck.get("ids_fingerprint", ids_fingerprint) != ids_fingerprint:
        raise SystemExit(
            f"--resume: {ckpt_path} was trained on other training/validation images (another --data copy or "
            "--split-file); pass the same ones, or train afresh without --resume"
        )
    labels = {s: np.array([label_of[i] for i in v], dtype=np.int64) for s, v in ids.items()}
    log.info("loading images …")
    images = {s: load_native_images(catalog, v) for s, v in ids.items()}
    train_imgs, train_labels = images["train"], labels["train"]
    if args.balance == "copies":
        train_imgs, train_labels = balance_with_copies(train_imgs, train_labels, aug_params, args.seed)
        log.info("balanced with augmented copies: %s", np.bincount(train_labels).tolist())

    # ---- model, teacher
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    teacher_logits = None
    if teacher is not None:
        log.info("computing teacher (%s) logits on %d training images …", args.distill_from, len(train_imgs))
        teacher_logits = predict_logits(teacher, train_imgs, bf16=True).astype(np.float32)
        del teacher

    # ---- optimiser: head and backbone groups, warm-up then cosine
    head_params = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    optimizer = torch.optim.AdamW(
        [
            {"params": head_params, "lr": args.lr},
            {"params": list(model.backbone.parameters()), "lr": args.lr * args.backbone_lr_mult},
        ],
        weight_decay=args.weight_decay,
    )
    steps_per_epoch = (
        math.ceil(args.epoch_size / args.batch_size)
        if args.balance == "sampler"
        else math.ceil(min(args.epoch_size, len(train_imgs)) / args.batch_size)
    )
    total_steps = max(1, steps_per_epoch * args.epochs)
    warmup = min(300, total_steps // 10 + 1)

    def lr_lambda(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)

    history: list[dict] = []
    best = {"score": -1.0, "epoch": -1, "state": None}
    averaged: AveragedModel | None = None  # running mean of the last --average-last epochs' weights
    start_epoch = 0
    if ck is not None:
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        history, best, start_epoch = ck["history"], ck["best"], ck["epoch"] + 1
        t_start -= ck.get("elapsed", 0.0)
        if ck.get("averaged") is not None:
            averaged = AveragedModel(model, use_buffers=True)
            averaged.load_state_dict(ck["averaged"])
        log.info("resumed from %s at epoch %d", ckpt_path, start_epoch)
        del ck
    deadline = t_start + (args.time_budget * 60 if args.time_budget else float("inf"))
    rng = np.random.default_rng(args.seed + start_epoch)
    train_time = 0.0
    train_seen = 0

    # ---- loop
    for epoch in range(start_epoch, args.epochs):
        frozen = epoch < args.freeze_epochs
        set_backbone_trainable(model, not frozen)
        if args.balance == "sampler":
            order = balanced_sampler_indices(train_labels, args.epoch_size, rng)
        else:
            order = rng.permutation(len(train_imgs))[: args.epoch_size]
        t0 = time.time()
        stats = train_one_epoch(
            model,
            train_imgs,
            train_labels,
            order,
            optimizer,
            scheduler,
            args,
            augment=args.balance == "sampler",
            aug_params=aug_params,
            teacher_logits=teacher_logits,
            frozen=frozen,
            deadline=deadline,
            framing=framing_params,
            rng=rng,
        )
        train_time += time.time() - t0
        train_seen += stats["train_images"]
        val_logits = evaluate_logits(model, images["val"], args.bf16)
        val_loss = float(F.cross_entropy(torch.from_numpy(val_logits), torch.from_numpy(labels["val"])))
        rep = classification_report(labels["val"], val_logits.argmax(1), args.classes, n_boot=0)
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
        history.append(row)
        log.info("epoch %d: %s", epoch + 1, {k: v for k, v in row.items() if k != "epoch"})
        if rep["macro_f1"] > best["score"]:
            best = {"score": rep["macro_f1"], "epoch": epoch + 1, "state": copy.deepcopy(model.state_dict())}
        if args.average_last and epoch >= args.epochs - args.average_last:
            if averaged is None:
                averaged = AveragedModel(model, use_buffers=True)
            averaged.update_parameters(model)  # frozen or live BN: buffers are averaged too
            n_avg = int(averaged.n_averaged)
            avg_pred = evaluate_logits(averaged.module, images["val"], args.bf16).argmax(1)
            avg_rep = classification_report(labels["val"], avg_pred, args.classes, n_boot=0)
            row["average_of_last"] = n_avg
            row["average_val_macro_f1"] = round(avg_rep["macro_f1"], 5)
            log.info("average of the last %d epochs: validation macro-F1 %.4f", n_avg, avg_rep["macro_f1"])
            if avg_rep["macro_f1"] > best["score"]:
                state = copy.deepcopy(averaged.module.state_dict())
                best = {"score": avg_rep["macro_f1"], "epoch": epoch + 1, "state": state, "averaged": n_avg}
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "history": history,
                "best": best,
                "averaged": None if averaged is None else averaged.state_dict(),
                "args": vars(args),
                "ids_fingerprint": ids_fingerprint,
                "elapsed": time.time() - t_start,
            },
            ckpt_path,
        )
        if epoch + 1 - best["epoch"] >= args.patience:
            log.info("early stopping: no validation macro-F1 gain for %d epochs", args.patience)
            break
        if time.time() > deadline:
            log.info("time budget of %.0f min reached", args.time_budget)
            break

    # ---- best epoch → save → decision rule on validation → measure from the saved file
    model.load_state_dict(best["state"])
    model = model.to(memory_format=torch.contiguous_format)
    args.out.mkdir(parents=True, exist_ok=True)
    weights_path = args.out / spec.weights_file.name
    save_dtype = SAVE_DTYPE.get(args.model, torch.float32)
    digest = save_weights(model, weights_path, save_dtype)
    model.load_state_dict(load_file(str(weights_path)))  # the rule is chosen on the weights as shipped (fp16)
    val_logits = predict_logits(model, images["val"])
    bias, objective = choose_logit_bias(val_logits, labels["val"])
    n_params = sum(p.numel() for p in model.parameters())
    data = {
        "dataset": "Kaggle Fashion Product Images (small), 60×80 px",
        "label_column": args.label_column,
        "split_file": str(args.split_file.name),
        "split_fingerprint": split_fingerprint(split),
        "split_counts": {s: catalog.counts(v) for s, v in split.items()},
        "trained_on_counts": catalog.counts(ids["train"]),
        "skipped_rows": catalog.skipped,
    }
    if (whole := find_split([data["split_fingerprint"]], [args.split_file], catalog.ids)) is not None:
        data["split_file_fingerprint"] = split_fingerprint(whole)  # the file's, whole
    if args.leave_out_val_twins:
        data["left_out_of_training"] = {
            "why": "training images whose product (name without colour words) is in validation "
            "with the same class, so that validation scores these classes on unseen products",
            "classes": list(args.leave_out_val_twins),
            "ids": left_out,
        }
    card = ModelCard(
        name=args.model,
        classes=list(args.classes),
        data=data,
        preprocessing=model.prep.to_dict(),
        architecture={
            "title": spec.title,
            "description": spec.description,
            "parameters": n_params,
            "cam_layers": [[c.path, c.label] for c in spec.cam_layers],
        },
        training={
            "command": command,
            "seed": args.seed,
            "initialisation": args.pretrained,
            "balancing": args.balance,
            "augmentation": aug_params.to_dict(),
            "framing_augmentation": framing_params.to_dict(),
            "framing_normalisation": DEFAULT_FRAMING.to_dict(),
            "initialised_from": str(args.init_from) if args.init_from else None,
            "distilled_from": args.distill_from,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "best_epoch": best["epoch"],
            "best_is_average_of_last_epochs": best.get("averaged"),
            "epochs_run": len(history),
            "wall_time_s": round(time.time() - t_start, 1),
            "train_images_per_s": round(train_seen / max(train_time, 1e-9), 1),
            "threads": args.threads,
        },
        history=history,
        decision_rule={
            "kind": "argmax of logits + per-class offsets chosen on the validation split",
            "logit_bias": bias,
            "objective": "macro-F1 on validation (ties: smallest offsets)",
            "validation_objective": round(objective, 5),
        },
        weights={
            "file": weights_path.name,
            "sha256": digest,
            "dtype": str(save_dtype).replace("torch.", ""),
            "bytes": weights_path.stat().st_size,
        },
        versions=library_versions(),
    )
    card.save(args.out / spec.card_file.name)
    # measure with the shipped file and the shipped rule, exactly as evaluate does
    shipped, card = load_model(args.model, args.out)
    measure_splits(shipped, card, images, labels, ids, args.bootstrap, args.seed, log_reports=False)
    for s in ("val", "test"):
        print(format_report(card.metrics[s], f"== {args.model} on {s} =="))  # noqa: T201 - CLI output
    card.training["wall_time_s"] = round(time.time() - t_start, 1)
    card.weights["sha256"] = sha256_file(weights_path)
    card.save(args.out / spec.card_file.name)
    log.info("wrote %s and %s", weights_path, args.out / spec.card_file.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
