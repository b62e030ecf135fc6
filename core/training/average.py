"""Weight averaging of fine-tunes that share a start: ``python -m core.training.average``.

Several fine-tunes of one model, made from the same weights with different seeds, are averaged
(a uniform "model soup") and then interpolated with the weights they started from (WiSE-FT,
Wortsman et al., 2022)::

    θ = (1 − α) θ_base + α · mean(θ_1 … θ_n)

Every floating tensor is averaged in float32, BatchNorm running statistics included; integer
tensors (BatchNorm's batch counters) are taken from the base. The result is saved in the base
file's dtypes, with a card that keeps the base model's decision rule (offsets are not chosen
again) and records every source file's sha256 and command. Re-measure the card afterwards with
``python -m core.evaluate --model NAME --weights OUT --refresh-card``.
"""

from __future__ import annotations

import argparse
import copy
import logging
import shlex
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from core.models.card import ModelCard, WeightsError, library_versions, load_model, sha256_file
from core.models.registry import REGISTRY, get_spec

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


def _file(name: str, weights_dir: Path | None) -> tuple[Path, Path]:
    spec = get_spec(name)
    if weights_dir is None:
        return spec.weights_file, spec.card_file
    return Path(weights_dir) / spec.weights_file.name, Path(weights_dir) / spec.card_file.name


def average_weights(
    name: str, base_dir: Path | None, finetuned_dirs: list[Path], alpha: float, out_dir: Path, command: str = ""
) -> ModelCard:
    """Average ``name``'s fine-tunes in ``finetuned_dirs`` with its weights in ``base_dir`` (None: the
    shipped ones) into ``out_dir``; every source is checked against its card's sha256 first. Returns
    the new card, without metrics until ``core.evaluate --refresh-card`` measures them."""
    sources = [base_dir, *finetuned_dirs]
    cards, states = [], []
    for d in sources:
        _, card = load_model(name, d)  # verifies sha256 and that the file fits the architecture
        weights_path, _ = _file(name, d)
        cards.append(card)
        states.append(load_file(str(weights_path)))
    base_card = cards[0]
    if others := [str(d) for d, c in zip(finetuned_dirs, cards[1:]) if c.classes != base_card.classes]:
        raise WeightsError(f"fine-tunes in {', '.join(others)} have other classes than the base {base_card.classes}")
    state = average_states(states[0], states[1:], alpha)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_out, card_out = _file(name, out_dir)
    save_file(state, str(weights_out), metadata={"format": "pt"})
    card = copy.deepcopy(base_card)
    card.training = {
        "command": command,
        "kind": "weight average (WiSE-FT of a uniform soup)",
        "alpha": alpha,
        "formula": "(1 - alpha) * base + alpha * mean(fine-tunes), every floating tensor in float32",
        "seed": base_card.training.get("seed", 42),
        "base": {"sha256": base_card.weights["sha256"], "training": base_card.training},
        "fine_tunes": [
            {"sha256": c.weights["sha256"], "command": c.training.get("command"), "seed": c.training.get("seed")}
            for c in cards[1:]
        ],
    }
    card.history = []
    card.decision_rule = dict(base_card.decision_rule)
    card.decision_rule["kept_from"] = "the base weights' decision rule, not chosen again for the average"
    card.weights = {
        "file": weights_out.name,
        "sha256": sha256_file(weights_out),
        "dtype": base_card.weights.get("dtype", "float32"),
        "bytes": weights_out.stat().st_size,
    }
    card.versions = library_versions()
    card.metrics, card.predictions = {}, {}  # the base's would not be this model's: measure them
    card.notes = [f"weights averaged from the base and {len(cards) - 1} fine-tunes (alpha {alpha})"]
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
    except (WeightsError, ValueError) as exc:
        p.exit(2, f"error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
