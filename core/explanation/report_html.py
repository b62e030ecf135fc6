"""A one-page HTML explanation report that stands alone (no Streamlit, no external files: every image is
a ``data:`` URI): per photo, the photo, what the models saw, every verdict, the heatmaps; then each
model's test metrics and the caveats."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from core.explanation.overlay import enlarge, png_bytes


def data_uri(image: np.ndarray) -> str:
    """An H×W×3 uint8 image as a PNG ``data:`` URI."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(np.ascontiguousarray(image))).decode()


@dataclass
class ReportPhoto:
    """One photo of a report: what was uploaded, what the models saw, their verdicts and heatmaps."""

    filename: str
    native: np.ndarray  # the 60×80 canvas the models saw
    preview: np.ndarray | None = None  # the photo as uploaded (small)
    framing_note: str = ""
    notes: list[str] = field(default_factory=list)
    verdicts: list[tuple[str, str, float]] = field(default_factory=list)  # (model, class, confidence)
    agreement: str = ""
    heatmaps: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (caption, overlay image)


def metric_rows(cards: Mapping[str, object], titles: Mapping[str, str], split: str = "test") -> list[dict[str, str]]:
    """One row per model card (or card-like object with ``metrics``) on ``split``: balanced accuracy and
    macro-F1 with their 95% intervals, every class's F1, and how many images of the rarest class were found."""
    rows = []
    for name, card in cards.items():
        m = getattr(card, "metrics", {}).get(split)
        if not m or "per_class" not in m:
            continue
        ci = m.get("ci95") or {}

        def with_ci(key: str, m: dict = m, ci: dict = ci) -> str:
            return f"{m[key]:.3f}" + (f" [{ci[key][0]:.2f}–{ci[key][1]:.2f}]" if key in ci else "")

        row = {"model": titles.get(name, name), "balanced accuracy": with_ci("balanced_accuracy")}
        row["macro-F1"] = with_ci("macro_f1")
        for cls, pc in m["per_class"].items():
            row[f"{cls} F1"] = f"{pc['f1']:.3f}"
        rare, pc = min(m["per_class"].items(), key=lambda kv: kv[1]["support"])
        row[f"{rare} found"] = f"{round(pc['recall'] * pc['support'])} of {pc['support']}"
        rows.append(row)
    return rows


def rare_class_caveat(cards: Mapping[str, object], split: str = "test") -> str | None:
    """ "Smart Casual has only 9 test images …", from the first card's ``split`` metrics."""
    for card in cards.values():
        m = getattr(card, "metrics", {}).get(split)
        if m and m.get("per_class"):
            rare, pc = min(m["per_class"].items(), key=lambda kv: kv[1]["support"])
            n = pc["support"]
            return (
                f"{rare} has only {n} {split} images: one more or one fewer found moves its recall by "
                f"{1 / max(n, 1):.2f}, so read its numbers with their intervals."
            )
    return None


def _table(rows: Sequence[Mapping[str, str]]) -> str:
    if not rows:
        return "<p>No metrics available.</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _photo_section(k: int, p: ReportPhoto, confidence: str) -> str:
    esc = html.escape
    figs = []
    if p.preview is not None:
        figs.append(
            f'<figure><img src="{data_uri(p.preview)}" alt="the photo"><figcaption>the photo</figcaption></figure>'
        )
    figs.append(
        f'<figure><img src="{data_uri(enlarge(p.native, 3))}" alt="what the models saw">'
        "<figcaption>what the models saw (60×80, after framing)</figcaption></figure>"
    )
    for caption, img in p.heatmaps:
        figs.append(
            f'<figure><img src="{data_uri(img)}" alt="{esc(caption)}"><figcaption>{esc(caption)}</figcaption></figure>'
        )
    verdicts = "".join(f"<tr><td>{esc(m)}</td><td>{esc(c)}</td><td>{conf:.1%}</td></tr>" for m, c, conf in p.verdicts)
    notes = "".join(f"<li>{esc(n)}</li>" for n in [p.framing_note or "framed like the catalogue photos", *p.notes])
    return (
        f'<section class="photo"><h2>{k}. {esc(p.filename)}</h2>'
        f'<div class="figs">{"".join(figs)}</div>'
        f"<p><strong>{esc(p.agreement)}</strong></p>"
        f"<table><thead><tr><th>model</th><th>class</th><th>{esc(confidence)}</th></tr></thead>"
        f"<tbody>{verdicts}</tbody></table>"
        f"<p>Framing and notes:</p><ul>{notes}</ul></section>"
    )


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1000px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:.9em}th{background:#f1f3f5}
.figs{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;max-width:260px}
figure img{max-width:260px;max-height:320px;image-rendering:pixelated;border:1px solid #ddd}
figcaption{font-size:.8em;color:#555}.caveats li{margin:.3em 0}
"""


def report_html(
    photos: Sequence[ReportPhoto],
    metrics: Sequence[Mapping[str, str]],
    caveats: Sequence[str],
    title: str = "Dress-code explanation report",
    confidence: str = "calibrated confidence",
) -> str:
    """The whole report as one HTML string: the photos, each model's test metrics, the caveats; ``confidence``
    names the percentages ("calibrated confidence" when every model has its temperature)."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = "".join(_photo_section(k, p, confidence) for k, p in enumerate(photos, 1))
    items = "".join(f"<li>{html.escape(c)}</li>" for c in caveats)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{len(photos)} photo{'' if len(photos) == 1 else 's'} · made {when} · classes Casual, Formal, "
        f"Smart Casual · percentages are {html.escape(confidence)}"
        + (" (temperature scaling fitted on validation)" if confidence == "calibrated confidence" else "")
        + "; "
        "heatmaps are Grad-CAM: the regions that raised the explained class's score.</p>"
        f"{sections}<h2>How good are the models? (held-out test split)</h2>{_table(metrics)}"
        f'<h2>Caveats</h2><ul class="caveats">{items}</ul></body></html>'
    )
