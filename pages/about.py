"""About: one card per model, read from its model card."""

from __future__ import annotations

from pages._entry import through_entry

through_entry()  # first, before the heavy imports below: a page run alone after a start goes back at once

import streamlit as st

from core.models.registry import REGISTRY
from pages.ui import resources, wording

st.title("About the models")

INIT_TEXT = {
    "none": "trained from scratch (random initialisation, no ImageNet weights)",
    "imagenet": "initialised from ImageNet-pretrained weights",
}


def _size(wh: object) -> str:
    """[60, 80] → "60×80" (anything else as it is)."""
    return "×".join(str(v) for v in wh) if isinstance(wh, (list, tuple)) else str(wh)


def trained_on_note(data: dict) -> str:
    """Says when a model learnt from fewer images than its training split holds, and why."""
    used, train = data.get("trained_on_counts"), data.get("split_counts", {}).get("train")
    if not used or not train or sum(used.values()) == sum(train.values()):
        return ""
    left = data.get("left_out_of_training")
    why = ""
    if left:
        why = f": {len(left['ids'])} {', '.join(left['classes'])} images whose product is in validation left out"
    return f" (trained on {sum(used.values()):,} of the training images{why})"


def rule_words(card) -> str:  # noqa: ANN001 - a ModelCard
    """The decision rule with each offset named by its class: "Formal −1, Smart Casual −1.5 added to …"."""
    bias = card.logit_bias
    if not bias or not any(bias):
        return "plain argmax of the logits"
    named = ", ".join(c + " " + f"{b:+g}".replace("-", "−") for c, b in zip(card.classes, bias) if b)
    chosen = (
        "kept from the weights it was averaged from" if card.decision_rule.get("kept_from") else "chosen on validation"
    )
    return f"argmax after adding per-class offsets to the logits ({named}; {chosen})"


def _numbers(values: object) -> str:
    """[0.498039…, …] → [0.498, …] for reading."""
    if isinstance(values, (list, tuple)):
        return "[" + ", ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in values) + "]"
    return str(values)


LEARNT_FROM = {  # a card's initialisation, for someone who does not train networks
    "none": "learnt from the catalogue photos alone",
    "imagenet": "first learnt to see from a million everyday photos (ImageNet), then from the catalogue photos",
}


def in_plain_words(name: str, card) -> str:  # noqa: ANN001 - a ModelCard
    """One model for a non-specialist: what it is, and how good it is on test in one phrase (from its card)."""
    init = card.training.get("initialisation", "none")
    learnt = LEARNT_FROM.get(init, "started from a saved network, then learnt from the catalogue photos")
    if card.training.get("distilled_from"):
        learnt = learnt.removesuffix(" alone") + ", partly by imitating another model's answers"
    size = card.architecture.get("parameters", 0) / 1e6
    what = f"**{REGISTRY[name].title}**: a neural network with {size:.1f} million learnt weights"
    t = card.metrics.get("test")
    if not t or "per_class" not in t:
        return f"{what} that {learnt}. Its card has no test results."
    majority = max(t["per_class"], key=lambda c: t["per_class"][c]["support"])
    found = " and ".join(
        f"{round(m['recall'] * m['support']):,} of {m['support']:,} {c}"
        for c, m in t["per_class"].items()
        if c != majority
    )
    right = f"On {t['n']:,} test photos it is right {t['accuracy']:.0%} of the time"
    return f"{what} that {learnt}. {right}; it finds {found} products."


def caveats(card) -> list[str]:  # noqa: ANN001 - a ModelCard
    """What to keep in mind when reading any model's test numbers (from one card's test split)."""
    t = card.metrics.get("test", {})
    per_class = t.get("per_class")
    if not per_class:
        return []
    majority = max(per_class, key=lambda c: per_class[c]["support"])
    rare = min(per_class, key=lambda c: per_class[c]["support"])
    said = []
    ref = (t.get("majority_class_reference") or {}).get("accuracy")
    if ref is not None:
        said.append(
            f"Most photos are {majority}: answering {majority} every time would already be right {ref:.0%} of the "
            "time. How many of the rarer classes a model finds tells the models apart."
        )
    said.append(
        f"{rare} has only {per_class[rare]['support']} test images, so its numbers are rough: on other photos they "
        "could be quite different."
    )
    said.append(
        "The models learnt from catalogue photos: one product on a plain background, filling the frame. Classify "
        "re-frames a product on a plain background; a photo far from that (a person wearing the clothes, a busy "
        "room, several products) gets less reliable answers, and a warning when the background is busy."
    )
    return said


st.subheader("In plain words")
cards = {name: card for name in REGISTRY if (card := resources.get_card(name)[0]) is not None}
if cards:
    classes = next(iter(cards.values())).classes
    st.markdown(
        f"Each model looks at a photo of one product and says whether it is {', '.join(classes[:-1])} or "
        f"{classes[-1]}. Classify shows two of them side by side, with heatmaps of what each looked at."
    )
    st.markdown("\n".join(f"- {in_plain_words(name, card)}" for name, card in cards.items()))
    st.markdown("**Keep in mind.**\n" + "\n".join(f"- {c}" for c in caveats(next(iter(cards.values())))))
st.subheader("The model cards")
st.caption("Everything here is read from the model cards in weights/ that the training script wrote.")

for name, spec in REGISTRY.items():
    with st.container(border=True):
        st.subheader(spec.title)
        card, err = resources.get_card(name)
        loaded = resources.get_model(name)
        if card is None:
            st.error(f"No usable model card: {err}")
            continue
        if not loaded.ok:
            st.error(f"The weights are unavailable, so the app does not use this model: {loaded.error}")
        init = card.training.get("initialisation", "?")
        st.markdown(f"**Architecture.** {spec.description} {card.architecture.get('parameters', 0):,} parameters.")
        st.markdown(f"**Initialisation.** {INIT_TEXT.get(init, f'from a local weights file ({init})')}.")
        if name == "resnet50" and init == "none":
            st.warning(
                "The shipped ResNet50 was trained **without ImageNet weights**: they cannot be downloaded on the "
                "machines this product is built on. To retrain it with them on a machine with internet: "
                "`python -m core.train --model resnet50 --pretrained imagenet --data DIR --out mine` (or "
                "`--pretrained /path/to/resnet50-11ad3fa6.pth` offline).",
                icon=":material/info:",
            )
        if card.training.get("distilled_from"):
            teacher = wording.titled(str(card.training["distilled_from"]))  # people read titles, not registry keys
            st.markdown(f"**Distillation.** Trained with soft targets from {teacher}.")
        prep = card.preprocessing
        st.markdown(
            f"**Input.** {_size(prep.get('native_size'))} native canvas (W×H) → {_size(prep.get('input_size'))} "
            "model input; "
            f"{prep.get('fit')}; normalised with mean {_numbers(prep.get('mean'))} and std {_numbers(prep.get('std'))}."
        )
        data = card.data
        counts = data.get("split_counts", {})
        st.markdown(
            f"**Training data.** {data.get('dataset', '?')}; label column `{data.get('label_column')}`; split "
            f"`{data.get('split_file')}` (fingerprint `{data.get('split_fingerprint')}`): "
            + ", ".join(f"{s} {sum(c.values()):,}" for s, c in counts.items())
            + trained_on_note(data)
            + f". Balancing: {card.training.get('balancing')}; seed {card.training.get('seed')}."
        )
        t = card.metrics.get("test", {})
        if t:
            ci = t.get("ci95", {})
            st.markdown(
                f"**Test metrics.** accuracy {t['accuracy']:.3f}, balanced accuracy {t['balanced_accuracy']:.3f} "
                f"(95% CI {ci.get('balanced_accuracy', [0, 0])[0]:.3f}–{ci.get('balanced_accuracy', [0, 0])[1]:.3f}), "
                f"macro-F1 {t['macro_f1']:.3f} (95% CI {ci.get('macro_f1', [0, 0])[0]:.3f}–"
                f"{ci.get('macro_f1', [0, 0])[1]:.3f}). Decision rule: {rule_words(card)}."
            )
        threads = card.training.get("threads")
        commands = card.training.get("commands") or [card.training.get("command")]
        if "alpha" in card.training:  # core.training.average
            alpha, tunes = card.training["alpha"], card.training.get("fine_tunes", [])
            st.markdown(
                f"**Weight average.** {1 - alpha:g} × the earlier weights + {alpha:g} × the mean of {len(tunes)} "
                "fine-tunes of them (seeds "
                + ", ".join(str(t.get("seed")) for t in tunes)
                + "); the wall time below adds up every run that made them."
            )
        speed = card.training.get("train_images_per_s")
        st.markdown(
            f"**Training cost.** {card.training.get('wall_time_s', 0) / 60:.1f} min wall time"
            + (f", {speed} training images/s" if speed else "")
            + f" on {threads} CPU thread{'' if threads == 1 else 's'}; "
            + ("command" if len(commands) == 1 else f"{len(commands)} commands, in order")
            + ": "
            + "; ".join(f"`{c}`" for c in commands)
            + "."
            + (
                " The run wrote to a scratch folder (`--out`); its files were then copied into `weights/`."
                if any(wording.wrote_elsewhere(c) for c in commands if c)
                else ""
            )
        )
        if card.training.get("note"):
            st.caption(f"Run: {card.training['note']}")
        for note in card.notes:
            st.caption(wording.titled(note))
        st.markdown(
            f"**Weights.** `{card.weights.get('file')}` ({card.weights.get('dtype')}), sha256 "
            f"`{card.weights.get('sha256')}` — verified before loading."
        )
        layers = ", ".join(label for _, label in card.architecture.get("cam_layers", []))
        st.markdown(f"**Grad-CAM layers.** {layers}.")
