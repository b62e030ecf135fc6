"""Dataset images decoded to the native canvas, many at a time, through the same function as uploads;
a decoded copy is cached under ``~/.cache/dresscode`` (``core.config.cache_dir``)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import PIL
from PIL import features

from core.config import cache_dir
from core.data.catalog import Catalog
from core.images.framing import DEFAULT_PARAMS as DEFAULT_FRAMING
from core.images.framing import FRAMING_VERSION
from core.images.preprocess import NATIVE_SIZE, ImageInputError, load_native_rgb

log = logging.getLogger(__name__)

# bump when decoding or preprocessing changes what an image turns into (4: MPO reduced decode, profiles to sRGB)
CACHE_VERSION = 5  # 5: framing normalisation (core.images.framing)


def _files_state(catalog: Catalog, ids: list[int]) -> list[tuple[int, int]]:
    """(size, mtime in ns) of every image file, so that a replaced file invalidates the cache."""
    out = []
    for pid in ids:
        try:
            st = catalog.image_path(pid).stat()
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((-1, -1))
    return out


def decoder_versions() -> list[str | None]:
    """Pillow's, libjpeg's and LittleCMS's versions: what decodes a dataset image (None: not built in)."""
    return [PIL.__version__, features.version("jpg"), features.version("littlecms2")]


def _cache_key(catalog: Catalog, ids: list[int]) -> str:
    """The decoded-image cache's key: folder, ids, every file's size and mtime, the canvas, the
    cache version, the framing step's version and parameters (a changed default must not serve images
    framed with the old one), and the decoders' versions (another libjpeg can decode other pixels)."""
    parts = [
        str(catalog.root.resolve()),
        ids,
        _files_state(catalog, ids),
        NATIVE_SIZE,
        CACHE_VERSION,
        FRAMING_VERSION,
        DEFAULT_FRAMING.to_dict(),
        decoder_versions(),
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


def load_native_images(
    catalog: Catalog, ids: Sequence[int], use_cache: bool = True, unreadable: list[int] | None = None
) -> np.ndarray:
    """Decode images to the native canvas: uint8 array ``N×H×W×3`` (80×60 for this dataset).

    Every image goes through :func:`core.images.preprocess.load_native_rgb`, the same function the
    app uses for uploads. A file that cannot be read keeps its slot as a white canvas, with a
    warning, and its id is appended to ``unreadable`` when a list is given. A decoded copy is
    cached under ``~/.cache/dresscode``, keyed by the folder, the ids and every file's size and
    modification time; a batch with unreadable files is not cached.
    """
    ids = [int(i) for i in ids]
    cache = cache_dir() / f"images-{_cache_key(catalog, ids)}.npy"
    if use_cache and cache.is_file():
        arr = np.load(cache, mmap_mode=None)
        if arr.shape[0] == len(ids):
            return arr
    failed: list[int] = []

    def decode(pid: int) -> np.ndarray:
        try:
            return np.asarray(load_native_rgb(catalog.image_path(pid).read_bytes()))
        except (ImageInputError, OSError) as exc:  # a corrupt or vanished dataset file
            log.warning("image %s unreadable (%s); using a blank canvas", pid, exc)
            failed.append(pid)
            return np.full((NATIVE_SIZE[1], NATIVE_SIZE[0], 3), 255, np.uint8)

    with ThreadPoolExecutor(max_workers=4) as pool:
        arr = (
            np.stack(list(pool.map(decode, ids))) if ids else np.zeros((0, NATIVE_SIZE[1], NATIVE_SIZE[0], 3), np.uint8)
        )
    if unreadable is not None:
        unreadable.extend(sorted(failed))
    if use_cache and len(ids) > 64 and not failed:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp.npy")  # writers never share one
            np.save(tmp, arr)
            tmp.replace(cache)
        except OSError as exc:
            log.warning("could not write image cache %s: %s", cache, exc)
    return arr
