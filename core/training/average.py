"""Weight averaging of fine-tunes that share a start: ``python -m core.training.average``.

Several fine-tunes of one model, made from the same weights with different seeds, are averaged
(a uniform "model soup") and then interpolated with the weights they started from (WiSE-FT,
Wortsman et al., 2022)::

    θ = (1 − α) θ_base + α · mean(θ_1 … θ_n)

Every floating tensor is averaged in float32, BatchNorm running statistics included; integer
tensors (BatchNorm's batch counters) are taken from the base. All sources must be fine-tunes of one
model on one split (same classes, split, training data and preprocessing), each checked against its
card's sha256. The result is saved in the base file's dtypes, with a card that records every source's
sha256 and command and keeps the base's decision rule until measured: ``python -m core.evaluate
--model NAME --weights OUT --refresh-card`` (add ``--choose-rule`` to choose the offsets on validation
for the average itself: averaging moves the logits, and the base's offsets may no longer fit them).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load, save_file

from core.models.card import ModelCard, WeightsError, library_versions, load_model, model_files, sha256_file
from core.models.registry import REGISTRY

log = logging.getLogger(__name__)


def average_states(
    base: dict[str, torch.Tensor], finetuned: list[dict[str, torch.Tensor]], alpha: float
) -> dict[str, torch.Tensor]:
    """``(1 − alpha) · base + alpha · mean(finetuned)`` per floating tensor, in ``base``'s dtypes;
    integer tensors are the base's. :class:`ValueError` when the states do not match key for key
    and shape for shape, or ``alpha`` is outside [0, 1]."""
    if not finetuned:
        raise ValueError("no fine-tuned weights to average")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be within [0, 1], not {alpha}")
    for i, state in enumerate(finetuned, 1):
        if state.keys() != base.keys():
            missing, extra = sorted(base.keys() - state.keys()), sorted(state.keys() - base.keys())
            raise ValueError(
                f"fine-tune {i} has other tensors than the base (missing {missing[:3]}, extra {extra[:3]})"
            )
        if bad := [k for k in base if state[k].shape != base[k].shape]:
            raise ValueError(f"fine-tune {i} differs from the base in shape at {bad[:3]}")
    out = {}
    for key, b in base.items():
        if not b.is_floating_point():
            out[key] = b.clone()
            continue
        mean = torch.stack([s[key].to(torch.float32) for s in finetuned]).mean(0)
        out[key] = torch.lerp(b.to(torch.float32), mean, alpha).to(b.dtype).contiguous()
    return out


def _checked_state(name: str, weights_dir: Path | None) -> tuple[ModelCard, dict[str, torch.Tensor]]:
    """A source's card and tensors, read once from the bytes whose sha256 matches the card (``load_model``
    has checked that the file fits the architecture and its card can drive it)."""
    _, card = load_model(name, weights_dir)
    weights_path, _ = model_files(name, weights_dir)
    data = weights_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != card.weights["sha256"]:
        raise WeightsError(f"{weights_path} changed while it was read; nothing was written")
    return card, load(data)


def _same(cards: list[ModelCard], dirs: list[str], what: str, value: Callable[[ModelCard], object]) -> None:
    if len({json.dumps(value(c), sort_keys=True) for c in cards}) > 1:
        raise WeightsError(
            f"the weights to average differ in {what} ({', '.join(dirs)}): only fine-tunes of one model on one "
            "split can be averaged"
        )


def average_weights(
    name: str, base_dir: Path | None, finetuned_dirs: list[Path], alpha: float, out_dir: Path, command: str = ""
) -> ModelCard:
    """Average ``name``'s fine-tunes in ``finetuned_dirs`` with its weights in ``base_dir`` (None: the
    shipped ones) into ``out_dir``; every source is checked against its card's sha256 first, and all must
    share classes, split and training data. Returns the new card, without metrics until
    ``core.evaluate --refresh-card`` measures them (its decision rule is the base's until then)."""
    sources = [base_dir, *finetuned_dirs]
    where = [str(d) if d is not None else "weights/ (shipped)" for d in sources]
    out_dir = Path(out_dir)
    resolved = [(model_files(name, d)[0].parent).resolve() for d in sources]
    if out_dir.resolve() in resolved:
        raise WeightsError(f"--out {out_dir} is one of the folders averaged: write the average somewhere else")
    cards, states = zip(*(_checked_state(name, d) for d in sources))
    cards, states = list(cards), list(states)
    digests = [c.weights["sha256"] for c in cards]
    if len(set(digests)) < len(digests):
        raise WeightsError("the same weights are given twice; each fine-tune counts once in the mean")
    _same(cards, where, "classes", lambda c: c.classes)
    _same(cards, where, "split", lambda c: c.data.get("split_fingerprint"))
    _same(cards, where, "the images left out of training", lambda c: c.data.get("left_out_of_training"))
    _same(cards, where, "preprocessing", lambda c: c.preprocessing)
    state = average_states(states[0], states[1:], alpha)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_out, card_out = model_files(name, out_dir)
    save_file(state, str(weights_out), metadata={"format": "pt"})
    base, tunes = cards[0], cards[1:]
    card = copy.deepcopy(base)
    sizes = {t.training.get("args", {}).get("epoch_size") for t in tunes}
    card.training = {
        "kind": "weight average (WiSE-FT of a uniform soup)",
        "command": command,
        # how the weights came to be, in order: the base's runs, each fine-tune, this average
        "commands": [
            *(base.training.get("commands") or [base.training.get("command")]),
            *(t.training.get("command") for t in tunes),
            command,
        ],
        "alpha": alpha,
        "formula": "(1 - alpha) * base + alpha * mean(fine-tunes), every floating tensor in float32",
        "seed": base.training.get("seed", 42),  # the split's seed (core.evaluate rebuilds the split with it)
        "initialisation": base.training.get("initialisation", "none"),
        "initialised_from": "a weight average",
        "balancing": base.training.get("balancing"),
        "distilled_from": base.training.get("distilled_from"),
        "args": {"epoch_size": sizes.pop()} if len(sizes) == 1 else {},
        "wall_time_s": round(sum(float(c.training.get("wall_time_s") or 0) for c in cards), 1),
        "threads": base.training.get("threads"),
        "base": {"sha256": base.weights["sha256"], "training": base.training},
        "fine_tunes": [
            {
                "sha256": t.weights["sha256"],
                "command": t.training.get("command"),
                "seed": t.training.get("seed"),
                "initialised_from": t.training.get("initialised_from"),
                "wall_time_s": t.training.get("wall_time_s"),
            }
            for t in tunes
        ],
    }
    card.history = []
    rule = dict(base.decision_rule)
    if "validation_objective" in rule:  # the base's score, not this model's
        rule["base_validation_objective"] = rule.pop("validation_objective")
    rule["kept_from"] = "the base weights' decision rule, not chosen again for the average"
    card.decision_rule = rule
    floats = sorted({str(v.dtype).removeprefix("torch.") for v in state.values() if v.is_floating_point()})
    card.weights = {
        "file": weights_out.name,
        "sha256": sha256_file(weights_out),
        "dtype": "/".join(floats),
        "bytes": weights_out.stat().st_size,
    }
    card.versions = library_versions()
    card.metrics, card.predictions = {}, {}  # the base's would not be this model's: measure them
    card.notes = [f"weights averaged from the base and {len(tunes)} fine-tunes (alpha {alpha})"]
    card.save(card_out)
    load_model(name, out_dir)  # the result loads and fits its card
    log.info("wrote %s and %s", weights_out, card_out)
    return card


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=list(REGISTRY))
    p.add_argument("--base", type=Path, default=None, help="folder of the start weights (default: the shipped ones)")
    p.add_argument("--finetuned", type=Path, nargs="+", required=True, help="folders of the fine-tunes")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the fine-tunes' mean (default 0.5)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    command = "python -m core.training.average " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    try:
        average_weights(args.model, args.base, args.finetuned, args.alpha, args.out, command)
    except (WeightsError, ValueError, OSError) as exc:
        p.exit(2, f"error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
