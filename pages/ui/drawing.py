"""Drawing: probability bars, and Grad-CAM overlays of an explanation at display size, their colour scale
and PNG downloads (drawn by :mod:`core.explanation.overlay`)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from core.explanation import overlay
from core.explanation.gradcam import Explanation
from core.explanation.overlay import DISPLAY_HEIGHT, DOWNLOAD_HEIGHT

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
    """:func:`core.explanation.overlay.cam_overlay` of one layer's map on the exact model input, at display
    size; the colour scale tops out at ``vmax``, by default the map's own maximum at layer resolution."""
    return overlay.cam_overlay(exp.maps[layer], exp.model_input, opacity, cmap, smooth, vmax, DISPLAY_HEIGHT)


def cam_top(exp: Explanation, layer: str) -> float:
    """The top of a map's colour scale (:func:`core.explanation.overlay.cam_top`)."""
    return overlay.cam_top(exp.maps[layer])


def png(image: np.ndarray) -> bytes:
    """PNG bytes for downloads, enlarged (whole pixels, nothing smoothed) to ``DOWNLOAD_HEIGHT``."""
    return overlay.download_png(image, DOWNLOAD_HEIGHT)
