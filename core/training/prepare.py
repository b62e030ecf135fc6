"""What a training run starts from, made and checked before the epochs: the model (fresh or
``--init-from``) and the teacher, the checkpoint ``--resume`` continues (its settings and images must
match), the training and validation images, and the optimiser with its schedule."""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.data.cache import load_native_images
from core.data.catalog import Catalog, load_styles
from core.data.products import val_twins_in_train
from core.data.split import get_or_make_split, split_fingerprint
from core.images.augment import (
    AugmentParams,
    balance_with_copies,
)
from core.models.card import WeightsError, load_model
from core.models.networks import DressCodeNet, PretrainedWeightsError
from core.models.registry import get_spec
from core.prediction.inference import predict_logits

log = logging.getLogger(__name__)

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
    "framing_shadow",
    "framing_tilt",
    "aux_column",
    "aux_weight",
    "aux_min_count",
    "init_from",
    "max_train",
    "seed",
)


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


def teacher_soft_targets(teacher: DressCodeNet, images: np.ndarray, name: str, bf16: bool) -> np.ndarray:
    """The teacher's logits on the training images, computed once (in bfloat16 autocast with ``bf16``: the
    run's ``--bf16``, on by default only where the CPU runs it in hardware)."""
    log.info(
        "computing teacher (%s) logits on %d training images (%s) …", name, len(images), "bf16" if bf16 else "fp32"
    )
    return predict_logits(teacher, images, bf16=bf16).astype(np.float32)


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
    model: DressCodeNet, args: argparse.Namespace, n_train: int, extra_head: torch.nn.Module | None = None
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """The optimiser, and its schedule over --epochs epochs of --epoch-size draws (without the sampler,
    an epoch is at most the ``n_train`` training images). ``extra_head`` (an auxiliary head) learns at the
    head's rate."""
    optimizer = make_optimizer(model, args.lr, args.backbone_lr_mult, args.weight_decay)
    if extra_head is not None:
        optimizer.add_param_group({"params": list(extra_head.parameters()), "lr": args.lr})
    steps_per_epoch = (
        math.ceil(args.epoch_size / args.batch_size)
        if args.balance == "sampler"
        else math.ceil(min(args.epoch_size, n_train) / args.batch_size)
    )
    return optimizer, warmup_cosine(optimizer, total_steps=max(1, steps_per_epoch * args.epochs))
