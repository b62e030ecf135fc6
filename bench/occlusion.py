"""Do the Grad-CAM layers point where hiding the photo hurts? One table for every model and layer.

    python -m bench.occlusion [--images 10] [--class Formal] [--split test] [--models M ...] [--also MODEL:MODULE ...]

For each model, the first N images (by id) of the class in the split that the model
classifies correctly are explained at every registered layer; each 12×12 square of the 60×80 canvas is
greyed out in turn, and the rank correlation between the map there and the drop of the
class logit is averaged over the images (core.explanation.occlusion.occlusion_agreement). The same map
flipped upside down is the control: a layer passes when it clearly beats its control.
--also adds a module that is not a registered layer, e.g. ``baseline:backbone.conv2`` (the raw
conv output the baseline's maps used to come from), to that model's rows. Its output must be a
feature map, and one that no later in-place operation changes (ResNet's ``bn1``, followed by an
in-place ReLU, would give a wrong map).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

import numpy as np
import torch

from core.config import find_default_data_dir
from core.data.cache import load_native_images
from core.data.catalog import load_styles
from core.data.split import SPLITS, get_or_make_split
from core.explanation.occlusion import occlusion_agreement
from core.models.registry import REGISTRY, CamLayer
from core.prediction.served import ServedModel
from core.prediction.service import load_served

log = logging.getLogger("bench.occlusion")


def correctly_classified(ex: ServedModel, images: np.ndarray, cls: int, n: int) -> np.ndarray:
    """The first ``n`` of ``images`` (all of class ``cls``) that the model puts in ``cls`` (its decision rule)."""
    pred = ex.predict(images).argmax(1)
    return images[pred == cls][:n]


def output_shape(model: torch.nn.Module, path: str) -> torch.Size:
    """Shape of one module's output for a blank 60×80 canvas."""
    seen: list[torch.Size] = []
    handle = model.get_submodule(path).register_forward_hook(
        lambda _m, _i, out: seen.append(getattr(out, "shape", torch.Size()))
    )
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, 3, 80, 60))
    finally:
        handle.remove()
    return seen[0]


def measure(ex: ServedModel, images: np.ndarray) -> dict[str, dict[str, float]]:
    """Per layer: mean correlation with the logit drop, and the flipped control's."""
    layers = [c.path for c in ex.spec.cam_layers]
    rows = [occlusion_agreement(ex, img, layers)[1] for img in images]
    for layer in layers:
        if flat := sum(np.isnan(r[layer][0]) for r in rows):  # a flat map has no rank correlation
            log.warning(
                "%s %s: %d of %d maps were flat and are left out of its mean", ex.spec.name, layer, flat, len(rows)
            )
    return {
        layer: {
            "map": float(np.nanmean([r[layer][0] for r in rows])),
            "flipped": float(np.nanmean([r[layer][1] for r in rows])),
        }
        for layer in layers
    }


def main(argv: list[str] | None = None) -> int:
    """Print the table (markdown)."""
    ap = argparse.ArgumentParser(
        prog="python -m bench.occlusion", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--images", type=int, default=10, help="images per model (10)")
    ap.add_argument("--class", dest="cls", default="Formal", help="class of the images (Formal)")
    ap.add_argument("--split", choices=SPLITS, default="test", help="split the images come from (test)")
    ap.add_argument(
        "--models", nargs="+", choices=list(REGISTRY), default=list(REGISTRY), help="models to measure (all)"
    )
    ap.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="MODEL:MODULE",
        help="also measure this module of MODEL, registered or not (repeatable)",
    )
    args = ap.parse_args(argv)
    also: dict[str, list[str]] = {}
    for item in args.also:
        name, _, path = item.partition(":")
        if name not in args.models or not path:
            ap.error(f"--also {item!r}: expected MODEL:MODULE with MODEL one of {args.models}")
        also.setdefault(name, []).append(path)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(2)
    root = find_default_data_dir()
    if root is None:
        ap.error("no dataset found (set DRESSCODE_DATA)")
    catalog = load_styles(root)
    if args.cls not in catalog.classes:
        ap.error(f"--class {args.cls!r}: not one of {list(catalog.classes)}")
    cls = catalog.classes.index(args.cls)
    label_of = catalog.label_of()
    ids = [i for i in get_or_make_split(catalog)[args.split] if label_of[i] == cls]
    images = load_native_images(catalog, ids)
    lines = [
        "| model | layer | label | images | map vs logit drop | flipped map (control) |",
        "|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(args.models):  # a model named twice is measured once
        loaded = load_served(name)
        if loaded.served is None:
            log.warning("%s left out: %s", name, loaded.error)
            continue
        ex = loaded.served
        extra = [p for p in dict.fromkeys(also.get(name, [])) if p not in ex.layer_paths]
        for path in extra:
            try:
                ex.model.get_submodule(path)
            except AttributeError:
                ap.error(f"--also {name}:{path}: {name} has no module {path!r}")
            if len(shape := output_shape(ex.model, path)) != 4:
                ap.error(f"--also {name}:{path}: its output is {tuple(shape)}, not a feature map (N×C×H×W)")
        if extra:  # measured like a registered layer, early to late as the model runs
            order = [n for n, _ in ex.model.named_modules()]
            layers = sorted(
                [*ex.spec.cam_layers, *(CamLayer(p, "not registered") for p in extra)],
                key=lambda c: order.index(c.path),
            )
            default = layers.index(ex.spec.default_cam_layer)  # an index: re-point it after inserting
            spec = dataclasses.replace(ex.spec, cam_layers=tuple(layers), default_layer=default)
            ex = ServedModel(ex.model, spec, ex.classes, ex.logit_bias, ex.card)  # the loaded one stays as it is
        chosen = correctly_classified(ex, images, cls, args.images)
        if not len(chosen):
            log.warning("%s left out: it classifies none of the %d %s images correctly", name, len(ids), args.cls)
            continue
        labels = {c.path: c.label for c in ex.spec.cam_layers}
        for layer, r in measure(ex, chosen).items():
            default = " (default)" if layer == ex.spec.default_cam_layer.path else ""
            lines.append(
                f"| `{name}` | `{layer}`{default} | {labels[layer]} | {len(chosen)} "
                f"| {r['map']:+.2f} | {r['flipped']:+.2f} |"
            )
    head = f"Correctly classified {args.cls} images of the {args.split} split, up to {args.images} per model"
    print(head + "\n")  # noqa: T201 - CLI output
    print("\n".join(lines))  # noqa: T201 - the table is the output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
