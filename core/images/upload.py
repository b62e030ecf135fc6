"""One uploaded file in: decoded, framed and fitted to the native canvas, with notes for the user; a
file that cannot be read becomes a message, never an exception."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import numpy as np

from core.images.framing import KEPT, REFRAMED
from core.images.preprocess import ImageInputError, canvas_coverage, frame_and_fit, open_image

log = logging.getLogger(__name__)

# a photo that fills less of the canvas than this gets a note (a 3:4 shot fills all of it;
# 1:1 fills 75%, 16:9 42%)
LOW_COVERAGE = 0.5
PREVIEW_SIDE = 240  # the photo as uploaded, shown beside what the models saw


@dataclass
class UploadedPhoto:
    """One uploaded file: its native canvas, or the user-facing reason it was refused."""

    filename: str
    digest: str
    native: np.ndarray | None = None  # 80×60×3 uint8: what the models see (after framing)
    original_size: tuple[int, int] | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    framing: str | None = None  # kept | reframed | busy | no_product (core.images.framing)
    framing_note: str = ""  # one sentence on what the framing step did, or why not
    product_mask: np.ndarray | None = None  # 80×60 bool on the native canvas; None: no product found
    preview: np.ndarray | None = None  # the decoded photo, longer side at most 240 px (H×W×3 uint8)
    framing_flagged: bool = False  # the step's own flag (Framing.flagged): busy, or a backdrop the models are weak on

    @property
    def background_flagged(self) -> bool:
        """True when the background was too busy to frame the photo like the training images, or a backdrop
        the models are known to be weak on (the framing note says which)."""
        return self.framing_flagged


def read_upload(filename: str, data: bytes) -> UploadedPhoto:
    """Decode one upload into the native canvas; errors become a message, never an exception."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    try:
        decoded = open_image(data)
        fitted = frame_and_fit(decoded.image)
        native = np.array(fitted.image, dtype=np.uint8)  # writable copy
    except ImageInputError as exc:
        return UploadedPhoto(filename, digest, error=str(exc))
    except Exception:  # belt and braces: an unexpected decoder failure is still only this file's
        log.exception("unexpected failure reading %r", filename)
        return UploadedPhoto(filename, digest, error="The file could not be read as an image.")
    notes = list(decoded.notes)
    size = decoded.pixel_size or decoded.image.size
    framing = fitted.framing
    if framing.action != REFRAMED and framing.action != KEPT and (share := canvas_coverage(size)) < LOW_COVERAGE:
        w, h = size
        notes.append(
            f"this {w}×{h} photo is far from the 3:4 product shots the models learnt from: it fills "
            f"{share:.0%} of the 60×80 canvas and the rest is white padding, so its predictions are "
            "less reliable (a crop around the product helps)"
        )
    preview = decoded.image.copy()
    preview.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    return UploadedPhoto(
        filename,
        digest,
        native,
        size,
        notes,
        None,
        framing.action,
        framing.note,
        fitted.mask,
        np.asarray(preview),
        framing.flagged,
    )
