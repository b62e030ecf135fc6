"""What a finished run leaves: the best epoch's weights saved as shipped, its model card (data,
preprocessing, architecture, recipe, history, decision rule, file) and the saved file's val and test
metrics, measured through :class:`core.prediction.served.ServedModel` exactly as evaluation does."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from core.data.split import find_split, split_fingerprint
from core.evaluate import measure_splits
from core.images.augment import (
    AugmentParams,
    FramingAugmentParams,
)
from core.images.framing import DEFAULT_PARAMS as DEFAULT_FRAMING
from core.models.card import ModelCard, library_versions, save_weights, sha256_file
from core.models.networks import DressCodeNet
from core.models.registry import get_spec
from core.prediction.served import ServedModel
from core.scoring.metrics import format_report
from core.training.loop import Progress
from core.training.prepare import TrainingData

log = logging.getLogger(__name__)


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
    shipped = ServedModel.load(name, out)
    card = shipped.card
    measure_splits(shipped, data.images, data.labels, data.ids, n_boot, seed, log_reports=False)
    for s in ("val", "test"):
        print(format_report(card.metrics[s], f"== {name} on {s} =="))  # noqa: T201 - CLI output
    spec = get_spec(name)
    weights_path, card_path = out / spec.weights_file.name, out / spec.card_file.name
    card.training["wall_time_s"] = round(time.time() - started, 1)
    card.weights["sha256"] = sha256_file(weights_path)
    card.save(card_path)
    log.info("wrote %s and %s", weights_path, card_path)
