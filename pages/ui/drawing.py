"""Drawing: Grad-CAM overlays at display size, their colour scale, probability bars and PNG downloads."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from core.gradcam import Explanation
from core.overlay import enlarge, normalise, overlay, png_bytes

DISPLAY_HEIGHT = 320
DOWNLOAD_HEIGHT = 640  # downloaded overlays are at least this tall: big enough for a slide
PREDICTED_COLOUR = "#3b5bdb"  # the theme's primary colour: the predicted class's bar
OTHER_COLOUR = "#ced4da"  # a neutral grey for the other classes


def probability_figure(probs: np.ndarray, classes: list[str]) -> go.Figure:
    """Horizontal probability bars for all classes; the predicted class (the highest bar) in the highlight
    colour, the others in a neutral one."""
    top = int(np.argmax(probs))
    fig = go.Figure(
        go.Bar(
            x=[float(p) for p in probs],
            y=classes,
            orientation="h",
            marker_color=[PREDICTED_COLOUR if k == top else OTHER_COLOUR for k in range(len(classes))],
            text=[f"{p:.1%}" for p in probs],
            textposition="outside",  # level and readable even beside a thin bar
            textangle=0,
            cliponaxis=False,
        )
    )
    fig.update_layout(
        height=150,
        margin=dict(l=0, r=48, t=0, b=0),  # room for "100.0%" beyond a full bar
        xaxis=dict(range=[0, 1], tickformat=".0%", dtick=0.5, tickangle=0),
        yaxis=dict(autorange="reversed"),
    )
    return fig


def overlay_image(
    exp: Explanation, layer: str, opacity: float, cmap: str, smooth: bool, vmax: float | None = None
) -> np.ndarray:
    """Overlay of one layer's map on the exact model input, enlarged for display. The colour
    scale tops out at ``vmax``, by default the map's own maximum at layer resolution
    (``cam_top``), so a map looks the same on every page whatever the upsampling."""
    up = exp.upsampled(layer, "bilinear" if smooth else "nearest")
    top = cam_top(exp, layer) if vmax is None else vmax
    img = overlay(exp.model_input, normalise(up, top), opacity, cmap)
    return enlarge(img, max(1, DISPLAY_HEIGHT // img.shape[0]))


def cam_top(exp: Explanation, layer: str) -> float:
    """The top of a map's colour scale: its maximum at layer resolution, so the overlay, the raw
    map and the shared scale agree whatever the upsampling (smoothing never exceeds it)."""
    return float(exp.maps[layer].max(initial=0.0))


def png(image: np.ndarray) -> bytes:
    """PNG bytes for downloads, enlarged (whole pixels, nothing smoothed) to ``DOWNLOAD_HEIGHT``."""
    return png_bytes(enlarge(image, -(-DOWNLOAD_HEIGHT // image.shape[0])))
