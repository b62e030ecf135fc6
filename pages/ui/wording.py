"""Wording: user text made safe for Markdown, model keys as titles, captions for maps, and the
names of downloaded files."""

from __future__ import annotations

import re
import shlex
import unicodedata
from pathlib import Path

import numpy as np

from core.config import WEIGHTS_DIR
from core.explanation.gradcam import Explanation
from core.models.registry import REGISTRY, get_spec

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&])")


def plain(text: str) -> str:
    """Escape user text (file names) so Markdown/HTML in it is shown, never rendered."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def titled(text: str) -> str:
    """Free text from a model card with each model's registry key (``effnet_lite0``) replaced by
    its title, outside `code` spans and paths (``runs/resnet50/last.pt``, ``resnet50.json`` stay)."""
    # only keys that cannot be ordinary words ("baseline" is one: "a baseline of 0.5" stays)
    keys = "|".join(re.escape(k) for k in sorted(REGISTRY, key=len, reverse=True) if re.search(r"[\d_]", k))
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(
        p if p.startswith("`") else re.sub(rf"(?<![\w/.-])({keys})(?![\w/-]|\.\w)", lambda m: get_spec(m[1]).title, p)
        for p in parts
    )


def wrote_elsewhere(command: str) -> bool:
    """Whether a training command's ``--out`` was a folder other than the project's ``weights/``
    (relative folders are taken from the project root, where the commands run)."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return False
    out = None
    for i, arg in enumerate(argv):
        if arg == "--out" and i + 1 < len(argv):
            out = argv[i + 1]
        elif arg.startswith("--out="):
            out = arg.split("=", 1)[1]
    if out is None:
        return False
    folder = Path(out) if Path(out).is_absolute() else WEIGHTS_DIR.parent / out
    return folder.resolve() != WEIGHTS_DIR.resolve()


def nothing_to_contrast(exp: Explanation, classes: list[str], contrast: bool, who: str) -> str | None:
    """Said when a contrast was asked for but ``who`` (the model) already predicts the chosen class,
    so its map shows the evidence for that class alone; None otherwise."""
    if not contrast or exp.versus is not None:
        return None
    return f"{who} already predicts {classes[exp.target]}: nothing to contrast it with."


def explained_as(exp: Explanation, classes: list[str], chosen: bool) -> str:
    """What a map explains, for captions: "Casual", "Formal (chosen)", "Formal over Casual (chosen)"."""
    what = classes[exp.target]
    if exp.versus is not None:
        what += f" over {classes[exp.versus]}"
    return what + (" (chosen)" if chosen else "")


def flat_map_note(exp: Explanation, layer: str, classes: list[str]) -> str | None:
    """What to say when a layer's Grad-CAM is zero everywhere (a flat, uniform overlay)."""
    if float(np.max(exp.maps[layer], initial=0.0)) > 0.0:
        return None
    if exp.versus is not None:
        return (
            f"Nothing at this layer speaks for {classes[exp.target]} over {classes[exp.versus]}: Grad-CAM keeps "
            "only the regions that raise the difference of the two class scores, and here there are none."
        )
    return (
        f"No positive evidence for {classes[exp.target]} at this layer: Grad-CAM keeps only the regions "
        "that raise the class score, and here there are none, so the overlay is flat."
    )


def overlay_file_name(photo_name: str, model_name: str, layer: str, exp: Explanation, classes: list[str]) -> str:
    """A download name that says what the overlay shows, so exports of one photo do not clash:
    ``shirt_resnet50_layer4_Formal-over-Casual.png``."""
    what = classes[exp.target] + ("" if exp.versus is None else f"-over-{classes[exp.versus]}")
    parts = (Path(photo_name).stem or "photo", model_name, layer.removeprefix("backbone.").removeprefix("net."), what)
    parts = tuple(unicodedata.normalize("NFC", p) for p in parts)  # macOS may send "e" + accent: one letter
    return "_".join(re.sub(r"[^\w.-]+", "-", p).strip("-._") or "x" for p in parts) + ".png"  # \w keeps "été"
