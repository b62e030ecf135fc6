"""Train one registry model on the saved split and write weights/NAME.safetensors + its model card.

    python -m core.train --model effnet_lite0 --data ../shared/data/fashion-small --out /tmp/mine

Per-model defaults follow the recipes of the shipped models; each card's training.command(s)
holds the exact commands. Checkpoints every epoch to RUNS/NAME/last.pt; --resume continues.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from core.cli import non_negative_int, positive_int
from core.config import DEFAULT_SPLIT_FILE, WEIGHTS_DIR, find_default_data_dir
from core.data.catalog import DEFAULT_CLASSES, DEFAULT_LABEL_COLUMN
from core.data.split import get_or_make_split
from core.images.augment import AugmentParams, FramingAugmentParams
from core.models.networks import DressCodeNet
from core.models.registry import REGISTRY, get_spec
from core.prediction.inference import bf16_is_fast, predict_logits
from core.scoring.metrics import choose_logit_bias
from core.training.auxiliary import Auxiliary, WithAuxiliary, auxiliary_labels
from core.training.distributed import init_world, launch_command
from core.training.loop import restore_progress, run_epochs
from core.training.prepare import (
    TrainingData,
    build_model,
    checkpoint_to_resume,
    load_teacher,
    load_training_data,
    optimizer_and_schedule,
    read_catalog,
    teacher_soft_targets,
)
from core.training.record import measure_saved_weights, model_card, save_best

log = logging.getLogger(__name__)

# the saved file's dtype per model (float32 otherwise); each model's training defaults, its shipped
# recipe, are its registry entry's ``training_defaults`` (core.models.registry.TrainingDefaults)
SAVE_DTYPE = {"resnet50": torch.float16}


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch."""
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
        "--init-from",
        type=Path,
        default=None,
        help="weights folder holding a trained MODEL (NAME.safetensors + card): fine-tune it instead of a fresh start",
    )
    p.add_argument("--seed", type=int, default=42, help="seed for the split (if made), sampling and augmentation")
    p.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, help="bf16 autocast (default: if the CPU has it)")
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
    _add_framing_options(p)
    _add_auxiliary_options(p)
    return p


def _add_framing_options(p: argparse.ArgumentParser) -> None:
    """--framing-aug and the shares of its drop shadows and tilted shots (core.images.augment)."""
    p.add_argument(
        "--framing-aug",
        type=float,
        default=0.0,
        help="share of draws re-framed as users frame photos, then normalised "
        "(core.images.augment.reframe_random; 0 = off)",
    )
    d = FramingAugmentParams  # the defaults live in one place: the dataclass
    p.add_argument(
        "--framing-shadow",
        type=float,
        default=d.shadow,
        help=f"of the re-framed draws left on white, the share given a soft drop shadow ({d.shadow:g})",
    )
    p.add_argument(
        "--framing-tilt",
        type=float,
        default=d.tilt,
        help=f"of the re-framed draws, the share shot tilted by up to ±{d.max_tilt:g}° on white "
        f"({d.tilt:g} = none, as before)",
    )


def _add_auxiliary_options(p: argparse.ArgumentParser) -> None:
    """--aux-column and its settings (core.training.auxiliary)."""
    p.add_argument(
        "--aux-column",
        default=None,
        help="also predict this styles.csv column (e.g. articleType) from the pooled features, with a head used "
        "in training only and dropped at save time (default: none)",
    )
    p.add_argument("--aux-weight", type=float, default=0.3, help="weight of the auxiliary loss (0.3)")
    p.add_argument(
        "--aux-min-count",
        type=positive_int,
        default=20,
        help="auxiliary values with fewer training images than this add no loss (20)",
    )


def default_bf16(model: str) -> bool:
    """bf16 autocast when --bf16 is not given: the registry's recipe, but only where this CPU runs bfloat16 in
    hardware (emulated, it is several times slower than fp32). The bench's training benchmark asks the same."""
    return get_spec(model).training_defaults.bf16 and bf16_is_fast()


def _fill_defaults(args: argparse.Namespace) -> argparse.Namespace:
    spec = get_spec(args.model)
    pretrained = args.pretrained or spec.default_pretrained
    if pretrained == "none":
        if args.freeze_bn:
            raise SystemExit("--freeze-bn keeps pretrained BatchNorm statistics; with --pretrained none there are none")
        args.freeze_bn = False  # a random backbone's statistics must be learnt
    if args.bf16 is None:
        args.bf16 = default_bf16(args.model)  # main logs an fp32 run on a CPU without bfloat16
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
    if args.aux_column and (args.balance != "sampler" or args.aux_weight <= 0):
        raise SystemExit("--aux-column needs --balance sampler (copies have no rows) and --aux-weight > 0")
    return args


def augmentation_params(args: argparse.Namespace) -> tuple[AugmentParams, FramingAugmentParams]:
    """The augmentation options, checked: the usual augmentation and the framing augmentation."""
    try:
        aug_params = AugmentParams(
            fill_mode=args.fill_mode, color_jitter=args.color_jitter, hue=args.hue, grayscale=args.grayscale
        )
        framing_params = FramingAugmentParams(
            probability=args.framing_aug, shadow=args.framing_shadow, tilt=args.framing_tilt
        )
    except ValueError as exc:
        raise SystemExit(f"bad augmentation option: {exc}") from None
    return aug_params, framing_params


def dataset_dir(given: Path | None) -> Path:
    """--data, or else the dataset found where it usually is."""
    data_dir = given or find_default_data_dir()
    if data_dir is None:
        raise SystemExit("no --data given and no dataset found")
    return data_dir


def load_split_of(data_dir: Path, args: argparse.Namespace) -> dict[str, list[int]]:
    """The saved split of ``--split-file``, made there if absent."""
    return get_or_make_split(read_catalog(data_dir, args.classes, args.label_column), args.split_file, args.seed)


def auxiliary_head(model: DressCodeNet, data: TrainingData, args: argparse.Namespace) -> Auxiliary | None:
    """The --aux-column head and the training images' labels for it (None without the option)."""
    if not args.aux_column:
        return None
    try:
        labels, names = auxiliary_labels(data.catalog, data.ids["train"], args.aux_column, args.aux_min_count)
    except ValueError as exc:
        raise SystemExit(f"--aux-column: {exc}") from None
    net = WithAuxiliary(model, len(names), data.train_images.shape[1:3])
    return Auxiliary(net, labels, names, args.aux_column, args.aux_weight)


def main(argv: Sequence[str] | None = None) -> int:
    """Train, pick the best epoch on validation macro-F1, choose the decision rule on
    validation, save weights + model card, then measure val and test from the saved file. Under torchrun
    (``torchrun --nproc_per_node=N -m core.train …``) every rank trains with DistributedDataParallel and
    rank 0 alone writes checkpoints, weights and the card (:mod:`core.training.distributed`)."""
    args = parse_args(argv)
    aug_params, framing_params = augmentation_params(args)
    world = init_world()
    prefix = f"[rank {world.rank}] " if world.distributed else ""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {prefix}%(message)s", datefmt="%H:%M:%S")
    if not args.bf16 and not bf16_is_fast():
        log.info("this CPU has no bfloat16 instructions (AVX512-BF16/AMX): training in fp32")
    torch.set_num_threads(args.threads)
    set_seed(args.seed)
    command = f"{launch_command()} " + shlex.join(list(argv) if argv is not None else sys.argv[1:])
    spec = get_spec(args.model)
    data_dir = dataset_dir(args.data)
    # the model and the teacher are made (and the teacher's sha256 checked) before minutes of image loading
    model = build_model(args.model, len(args.classes), args.pretrained, args.init_from)
    teacher = load_teacher(args.distill_from, args.teacher_dir)
    ckpt_path = args.runs / args.model / "last.pt"
    ck = checkpoint_to_resume(ckpt_path, vars(args)) if args.resume else None
    started = time.time()

    if world.distributed:  # a split file that is absent is made once, by rank 0, before the others read it
        world.main_first(lambda: load_split_of(data_dir, args))
    data = load_training_data(data_dir, args, aug_params, ck, ckpt_path)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    teacher_logits = (
        None if teacher is None else teacher_soft_targets(teacher, data.train_images, args.distill_from, args.bf16)
    )
    del teacher

    aux = auxiliary_head(model, data, args)
    aux_head = None if aux is None else aux.net.head
    optimizer, scheduler = optimizer_and_schedule(model, args, len(data.train_images), aux_head)
    progress = restore_progress(ck, ckpt_path, model, optimizer, scheduler, started, aux)
    del ck  # restored: its tensors now live in the model, the optimiser and ``progress``
    if world.distributed:
        torch.manual_seed(args.seed + world.rank)  # the same initial weights, but each rank's own augmentation draws
    run_epochs(
        model,
        optimizer,
        scheduler,
        progress,
        data,
        teacher_logits,
        aug_params,
        framing_params,
        args,
        ckpt_path,
        world,
        aux,
    )
    digests = world.weight_digests(progress.best["state"])
    if not world.is_main:  # rank 0 saves, chooses the rule, writes the card and measures
        world.close()
        return 0

    save_dtype = SAVE_DTYPE.get(args.model, torch.float32)
    weights = save_best(model, progress.best["state"], args.out / spec.weights_file.name, save_dtype)
    rule = choose_logit_bias(predict_logits(model, data.images["val"]), data.labels["val"])  # on the saved weights
    card = model_card(args, command, model, data, progress, aug_params, framing_params, rule, weights)
    card.training["auxiliary"] = None if aux is None else aux.record(args.aux_min_count)
    if world.distributed:
        card.training["distributed"] = world.record(args.batch_size // world.size, digests)
        if not card.training["distributed"]["ranks_agree"]:
            log.error("the ranks' best weights differ: %s", digests)
    card.save(args.out / spec.card_file.name)
    measure_saved_weights(args.model, args.out, data, args.bootstrap, args.seed, progress.started)
    world.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
