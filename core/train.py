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
from dataclasses import asdict, dataclass, field
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
    Catalog,
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

# the saved file's dtype per model (float32 otherwise); each model's training defaults, its shipped
# recipe, are its registry entry's ``training_defaults`` (core.models.TrainingDefaults)
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
    """Command-line options; model-specific defaults come from the registry's ``training_defaults``."""
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
    for key, value in asdict(spec.training_defaults).items():
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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, with the model's defaults filled in; refuses options that do not combine."""
    args = _fill_defaults(get_args_parser().parse_args(argv))
    if args.mixup < 0 or (args.mixup and args.distill_from):
        raise SystemExit("--mixup must be >= 0 and does not combine with --distill-from")
    return args


def augmentation_params(args: argparse.Namespace) -> tuple[AugmentParams, FramingAugmentParams]:
    """The augmentation options, checked: the usual augmentation and the framing augmentation."""
    try:
        aug_params = AugmentParams(
            fill_mode=args.fill_mode, color_jitter=args.color_jitter, hue=args.hue, grayscale=args.grayscale
        )
        framing_params = FramingAugmentParams(probability=args.framing_aug)
    except ValueError as exc:
        raise SystemExit(f"bad augmentation option: {exc}") from None
    return aug_params, framing_params


def dataset_dir(given: Path | None) -> Path:
    """--data, or else the dataset found where it usually is."""
    data_dir = given or find_default_data_dir()
    if data_dir is None:
        raise SystemExit("no --data given and no dataset found")
    return data_dir


# ---- the model and the teacher: made (and the teacher's sha256 checked) before minutes of image loading
def build_model(name: str, n_classes: int, pretrained: str, init_from: Path | None) -> DressCodeNet:
    """A fresh registry model; with ``init_from``, a trained one (e.g. the shipped one) to fine-tune."""
    try:
        model = get_spec(name).builder(n_classes, pretrained)
    except PretrainedWeightsError as exc:
        raise SystemExit(f"--pretrained {pretrained}: {exc}") from None
    if init_from:
        try:
            start, _ = load_model(name, init_from)
        except WeightsError as exc:
            raise SystemExit(f"--init-from {init_from}: {exc}") from None
        model.load_state_dict(start.state_dict())
        for prm in model.parameters():
            prm.requires_grad_(True)
    return model


def load_teacher(name: str | None, teacher_dir: Path) -> DressCodeNet | None:
    """The trained model --distill-from names (None without distillation)."""
    if not name:
        return None
    try:
        teacher, _ = load_model(name, teacher_dir)
    except WeightsError as exc:
        raise SystemExit(f"--distill-from {name}: no trained teacher in {teacher_dir} ({exc})") from None
    return teacher


def teacher_soft_targets(teacher: DressCodeNet, images: np.ndarray, name: str) -> np.ndarray:
    """The teacher's logits on the training images, computed once."""
    log.info("computing teacher (%s) logits on %d training images …", name, len(images))
    return predict_logits(teacher, images, bf16=True).astype(np.float32)


# ---- resume: the settings are checked against the checkpoint before image loading, the images once chosen
def checkpoint_to_resume(path: Path, settings: dict) -> dict | None:
    """The checkpoint at ``path`` (None when there is none); refused when a RESUME_MUST_MATCH setting changed."""
    if not path.is_file():
        return None
    ck = torch.load(path, map_location="cpu", weights_only=False)
    changed = {
        k: (ck["args"][k], settings[k])
        for k in RESUME_MUST_MATCH
        if k in ck.get("args", {}) and ck["args"][k] != settings[k]
    }
    if changed:
        raise SystemExit(
            f"--resume: {path} was trained with other settings (checkpoint, now): {changed}; "
            "pass the same ones, or train afresh without --resume"
        )
    return ck


def check_resumed_images(ck: dict, path: Path, ids_fingerprint: str) -> None:
    """Refuse to continue on other training/validation images than the checkpoint's."""
    if "ids_fingerprint" not in ck:
        log.warning("%s predates image fingerprints: its training/validation images cannot be checked", path)
    if ck.get("ids_fingerprint", ids_fingerprint) != ids_fingerprint:
        raise SystemExit(
            f"--resume: {path} was trained on other training/validation images (another --data copy or "
            "--split-file); pass the same ones, or train afresh without --resume"
        )


# ---- data
@dataclass
class TrainingData:
    """The images a run learns from and is measured on, and where they come from."""

    catalog: Catalog
    split: dict[str, list[int]]  # the saved split
    ids: dict[str, list[int]]  # this run's: training ids after --leave-out-val-twins and --max-train
    ids_fingerprint: str
    left_out: list[int]  # training ids that --leave-out-val-twins removed
    labels: dict[str, np.ndarray]
    images: dict[str, np.ndarray]
    train_images: np.ndarray  # what the epochs draw from: with --balance copies, the copies too
    train_labels: np.ndarray


def read_catalog(data_dir: Path, classes: list[str], label_column: str) -> Catalog:
    """The usable styles.csv rows; refuses a class that has none."""
    try:
        catalog = load_styles(data_dir, classes, label_column)
    except (FileNotFoundError, KeyError) as exc:
        raise SystemExit(f"--data {data_dir}: {exc}") from None
    empty = [c for c, n in catalog.counts().items() if n == 0]
    if empty:
        raise SystemExit(f"--classes: no usable {label_column} rows for {empty} in {data_dir}")
    return catalog


def select_ids(
    catalog: Catalog,
    split: dict[str, list[int]],
    leave_out_val_twins: list[str] | None,
    max_train: int | None,
    seed: int,
) -> tuple[dict[str, list[int]], list[int]]:
    """The ids this run uses per split, and the training ids left out because their product is in validation."""
    ids = {s: list(v) for s, v in split.items()}
    left_out: list[int] = []
    if leave_out_val_twins:
        try:
            left_out = val_twins_in_train(catalog, split, leave_out_val_twins)
        except ValueError as exc:
            raise SystemExit(f"--leave-out-val-twins: {exc}") from None
        gone = set(left_out)
        ids["train"] = [i for i in ids["train"] if i not in gone]
        log.info("left out %d training images whose product is in validation: %s", len(left_out), left_out)
    if max_train:
        rng = np.random.default_rng(seed)
        ids["train"] = sorted(rng.choice(ids["train"], size=min(max_train, len(ids["train"])), replace=False))
    return ids, left_out


def load_training_data(
    data_dir: Path, args: argparse.Namespace, aug_params: AugmentParams, ck: dict | None, ckpt_path: Path
) -> TrainingData:
    """Catalogue, saved split (made if absent), this run's ids (checked against the checkpoint ``ck`` that
    --resume continues, before any image is loaded), their images and labels; --balance copies adds copies."""
    catalog = read_catalog(data_dir, args.classes, args.label_column)
    split = get_or_make_split(catalog, args.split_file, args.seed)
    ids, left_out = select_ids(catalog, split, args.leave_out_val_twins, args.max_train, args.seed)
    ids_fingerprint = split_fingerprint(ids)
    if ck is not None:
        check_resumed_images(ck, ckpt_path, ids_fingerprint)
    label_of = catalog.label_of()
    labels = {s: np.array([label_of[i] for i in v], dtype=np.int64) for s, v in ids.items()}
    log.info("loading images …")
    images = {s: load_native_images(catalog, v) for s, v in ids.items()}
    train_images, train_labels = images["train"], labels["train"]
    if args.balance == "copies":
        train_images, train_labels = balance_with_copies(train_images, train_labels, aug_params, args.seed)
        log.info("balanced with augmented copies: %s", np.bincount(train_labels).tolist())
    return TrainingData(catalog, split, ids, ids_fingerprint, left_out, labels, images, train_images, train_labels)


# ---- optimiser: head and backbone groups, warm-up then cosine
def make_optimizer(model: DressCodeNet, lr: float, backbone_lr_mult: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with the head at ``lr`` and the backbone at ``lr × backbone_lr_mult``."""
    head_params = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    return torch.optim.AdamW(
        [
            {"params": head_params, "lr": lr},
            {"params": list(model.backbone.parameters()), "lr": lr * backbone_lr_mult},
        ],
        weight_decay=weight_decay,
    )


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first tenth of the steps (300 at most), then cosine down to 2% of each LR."""
    warmup = min(300, total_steps // 10 + 1)

    def lr_lambda(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)


def optimizer_and_schedule(
    model: DressCodeNet, args: argparse.Namespace, n_train: int
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """The optimiser, and its schedule over --epochs epochs of --epoch-size draws (without the sampler,
    an epoch is at most the ``n_train`` training images)."""
    optimizer = make_optimizer(model, args.lr, args.backbone_lr_mult, args.weight_decay)
    steps_per_epoch = (
        math.ceil(args.epoch_size / args.batch_size)
        if args.balance == "sampler"
        else math.ceil(min(args.epoch_size, n_train) / args.batch_size)
    )
    return optimizer, warmup_cosine(optimizer, total_steps=max(1, steps_per_epoch * args.epochs))


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
) -> Progress:
    """A fresh start, or the checkpoint ``ck`` (read from ``path``) restored into the model, optimiser and schedule."""
    if ck is None:
        return Progress(started)
    model.load_state_dict(ck["model"])
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
) -> None:
    """Train up to --epochs: after each epoch, validate, keep the best weights (or the average of the last
    --average-last epochs, when better) and checkpoint; stop after --patience epochs without a validation
    macro-F1 gain, or once past --time-budget."""
    deadline = progress.started + (args.time_budget * 60 if args.time_budget else float("inf"))
    rng = np.random.default_rng(args.seed + progress.start_epoch)
    val_images, val_labels = data.images["val"], data.labels["val"]
    for epoch in range(progress.start_epoch, args.epochs):
        frozen = epoch < args.freeze_epochs
        set_backbone_trainable(model, not frozen)
        order = epoch_order(data.train_labels, args.epoch_size, args.balance == "sampler", rng)
        t0 = time.time()
        stats = train_one_epoch(
            model,
            data.train_images,
            data.train_labels,
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
        progress.train_time += time.time() - t0
        progress.train_seen += stats["train_images"]
        rep, val_loss = validate(model, val_images, val_labels, args.classes, args.bf16)
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
            avg_rep, _ = validate(progress.averaged.module, val_images, val_labels, args.classes, args.bf16)
            row["average_of_last"] = n_avg
            row["average_val_macro_f1"] = round(avg_rep["macro_f1"], 5)
            log.info("average of the last %d epochs: validation macro-F1 %.4f", n_avg, avg_rep["macro_f1"])
            if avg_rep["macro_f1"] > progress.best["score"]:
                state = copy.deepcopy(progress.averaged.module.state_dict())
                progress.best = {"score": avg_rep["macro_f1"], "epoch": epoch + 1, "state": state, "averaged": n_avg}
        save_checkpoint(ckpt_path, model, optimizer, scheduler, epoch, progress, vars(args), data.ids_fingerprint)
        if epoch + 1 - progress.best["epoch"] >= args.patience:
            log.info("early stopping: no validation macro-F1 gain for %d epochs", args.patience)
            break
        if time.time() > deadline:
            log.info("time budget of %.0f min reached", args.time_budget)
            break


# ---- the best epoch, saved; the decision rule, chosen on validation with the weights as saved
def save_best(model: DressCodeNet, state: dict, path: Path, dtype: torch.dtype) -> dict:
    """Save ``state`` (the best epoch) to ``path`` in ``dtype``, then load the file back into ``model`` so that
    what follows sees the weights as shipped (e.g. rounded to fp16); returns the card's ``weights`` record."""
    model.load_state_dict(state)
    model.to(memory_format=torch.contiguous_format)
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = save_weights(model, path, dtype)
    model.load_state_dict(load_file(str(path)))
    return {
        "file": path.name,
        "sha256": digest,
        "dtype": str(dtype).replace("torch.", ""),
        "bytes": path.stat().st_size,
    }


# ---- the card
def data_record(data: TrainingData, label_column: str, split_file: Path, leave_out_val_twins: list[str] | None) -> dict:
    """The card's ``data``: the dataset, the split and the images trained on."""
    catalog, split = data.catalog, data.split
    record = {
        "dataset": "Kaggle Fashion Product Images (small), 60×80 px",
        "label_column": label_column,
        "split_file": str(split_file.name),
        "split_fingerprint": split_fingerprint(split),
        "split_counts": {s: catalog.counts(v) for s, v in split.items()},
        "trained_on_counts": catalog.counts(data.ids["train"]),
        "skipped_rows": catalog.skipped,
    }
    if (whole := find_split([record["split_fingerprint"]], [split_file], catalog.ids)) is not None:
        record["split_file_fingerprint"] = split_fingerprint(whole)  # the file's, whole
    if leave_out_val_twins:
        record["left_out_of_training"] = {
            "why": "training images whose product (name without colour words) is in validation "
            "with the same class, so that validation scores these classes on unseen products",
            "classes": list(leave_out_val_twins),
            "ids": data.left_out,
        }
    return record


def model_card(
    args: argparse.Namespace,
    command: str,
    model: DressCodeNet,
    data: TrainingData,
    progress: Progress,
    aug_params: AugmentParams,
    framing_params: FramingAugmentParams,
    rule: tuple[list[float], float],
    weights: dict,
) -> ModelCard:
    """The card of the saved weights: data, preprocessing, architecture, recipe, history, decision rule
    (``rule``: the logit offsets and the validation macro-F1 they reach), file; metrics come later."""
    spec = get_spec(args.model)
    bias, objective = rule
    return ModelCard(
        name=args.model,
        classes=list(args.classes),
        data=data_record(data, args.label_column, args.split_file, args.leave_out_val_twins),
        preprocessing=model.prep.to_dict(),
        architecture={
            "title": spec.title,
            "description": spec.description,
            "parameters": sum(p.numel() for p in model.parameters()),
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
            "best_epoch": progress.best["epoch"],
            "best_is_average_of_last_epochs": progress.best.get("averaged"),
            "epochs_run": len(progress.history),
            "wall_time_s": round(time.time() - progress.started, 1),
            "train_images_per_s": round(progress.train_seen / max(progress.train_time, 1e-9), 1),
            "threads": args.threads,
        },
        history=progress.history,
        decision_rule={
            "kind": "argmax of logits + per-class offsets chosen on the validation split",
            "logit_bias": bias,
            "objective": "macro-F1 on validation (ties: smallest offsets)",
            "validation_objective": round(objective, 5),
        },
        weights=weights,
        versions=library_versions(),
    )


# ---- measure the saved weights
def measure_saved_weights(name: str, out: Path, data: TrainingData, n_boot: int, seed: int, started: float) -> None:
    """Val and test metrics of the file in ``out`` with its decision rule, exactly as evaluate measures them,
    printed and added to its card (with the final wall time and the file's sha256)."""
    shipped, card = load_model(name, out)
    measure_splits(shipped, card, data.images, data.labels, data.ids, n_boot, seed, log_reports=False)
    for s in ("val", "test"):
        print(format_report(card.metrics[s], f"== {name} on {s} =="))  # noqa: T201 - CLI output
    spec = get_spec(name)
    weights_path, card_path = out / spec.weights_file.name, out / spec.card_file.name
    card.training["wall_time_s"] = round(time.time() - started, 1)
    card.weights["sha256"] = sha256_file(weights_path)
    card.save(card_path)
    log.info("wrote %s and %s", weights_path, card_path)


def main(argv: Sequence[str] | None = None) -> int:
    """Train, pick the best epoch on validation macro-F1, choose the decision rule on
    validation, save weights + model card, then measure val and test from the saved file."""
    args = parse_args(argv)
    aug_params, framing_params = augmentation_params(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    set_seed(args.seed)
    command = "python -m core.train " + shlex.join(list(argv) if argv is not None else sys.argv[1:])
    spec = get_spec(args.model)
    data_dir = dataset_dir(args.data)
    # the model and the teacher are made (and the teacher's sha256 checked) before minutes of image loading
    model = build_model(args.model, len(args.classes), args.pretrained, args.init_from)
    teacher = load_teacher(args.distill_from, args.teacher_dir)
    ckpt_path = args.runs / args.model / "last.pt"
    ck = checkpoint_to_resume(ckpt_path, vars(args)) if args.resume else None
    started = time.time()

    data = load_training_data(data_dir, args, aug_params, ck, ckpt_path)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    teacher_logits = None if teacher is None else teacher_soft_targets(teacher, data.train_images, args.distill_from)
    del teacher

    optimizer, scheduler = optimizer_and_schedule(model, args, len(data.train_images))
    progress = restore_progress(ck, ckpt_path, model, optimizer, scheduler, started)
    del ck  # restored: its tensors now live in the model, the optimiser and ``progress``
    run_epochs(model, optimizer, scheduler, progress, data, teacher_logits, aug_params, framing_params, args, ckpt_path)

    save_dtype = SAVE_DTYPE.get(args.model, torch.float32)
    weights = save_best(model, progress.best["state"], args.out / spec.weights_file.name, save_dtype)
    rule = choose_logit_bias(predict_logits(model, data.images["val"]), data.labels["val"])  # on the saved weights
    card = model_card(args, command, model, data, progress, aug_params, framing_params, rule, weights)
    card.save(args.out / spec.card_file.name)
    measure_saved_weights(args.model, args.out, data, args.bootstrap, args.seed, progress.started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
