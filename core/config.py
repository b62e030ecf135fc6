"""Where things are, and the ``DRESSCODE_*`` environment variables: the one place that reads them.

Every variable is read when its function is called (a test or a server may set it at any time):

- ``DRESSCODE_WEIGHTS``: the folder of the weights and model cards (default ``weights/``);
- ``DRESSCODE_DATA``: the dataset folder (default ``../shared/data/fashion-small`` when present);
- ``DRESSCODE_DATA_EDITABLE=1``: a local run lets the browser type another dataset folder, unless
  ``DRESSCODE_DATA_LOCKED=1`` (the old switch) also says otherwise;
- ``DRESSCODE_COMPILE=0``: the fast batch path never compiles its backbone (``core.prediction.fastpath``);
- ``XDG_CACHE_HOME``: the decoded-image cache goes to ``$XDG_CACHE_HOME/dresscode`` (default ``~/.cache``).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the project folder
WEIGHTS_DIR = ROOT / "weights"  # the shipped weights and cards
DEFAULT_SPLIT_FILE = WEIGHTS_DIR / "split.json"  # the saved split (not moved by DRESSCODE_WEIGHTS)
SHARED_DATA_DIR = ROOT.parent / "shared" / "data" / "fashion-small"  # where the dataset usually is

WEIGHTS_ENV_VAR = "DRESSCODE_WEIGHTS"
DATA_ENV_VAR = "DRESSCODE_DATA"
DATA_EDITABLE_ENV_VAR = "DRESSCODE_DATA_EDITABLE"  # "1": a local run may type another folder in the sidebar
DATA_LOCK_ENV_VAR = "DRESSCODE_DATA_LOCKED"  # "1": locked even when the other says editable (the old switch)
COMPILE_ENV_VAR = "DRESSCODE_COMPILE"


def weights_dir() -> Path:
    """Folder of the shipped weights and cards: ``$DRESSCODE_WEIGHTS`` or ``weights/``."""
    return Path(os.environ[WEIGHTS_ENV_VAR]) if os.environ.get(WEIGHTS_ENV_VAR) else WEIGHTS_DIR


def find_default_data_dir() -> Path | None:
    """The dataset folder from ``$DRESSCODE_DATA`` or ``../shared/data/fashion-small``, if present."""
    candidates = []
    if os.environ.get(DATA_ENV_VAR):
        candidates.append(Path(os.environ[DATA_ENV_VAR]))
    candidates.append(SHARED_DATA_DIR)
    for c in candidates:
        if (c / "styles.csv").is_file() and (c / "images").is_dir():
            return c
    return None


def default_data_setting() -> str:
    """The app's dataset folder setting before anyone changes it: ``$DRESSCODE_DATA`` as it is (even a
    folder that is not a dataset, so that messages can name it), else the dataset found, else ``""``."""
    return os.environ.get(DATA_ENV_VAR) or str(find_default_data_dir() or "")


def data_dir_editable() -> bool:
    """Whether the browser may change the dataset folder: only when the server opts in for a local run
    (``DRESSCODE_DATA_EDITABLE=1``) and does not also lock it. By default the folder is the server's setting."""
    return os.environ.get(DATA_EDITABLE_ENV_VAR, "") == "1" and os.environ.get(DATA_LOCK_ENV_VAR, "") != "1"


def compile_enabled() -> bool:
    """Whether the fast batch path compiles its backbone in the background (``DRESSCODE_COMPILE`` is not ``0``)."""
    return os.environ.get(COMPILE_ENV_VAR, "1") != "0"


def cache_dir() -> Path:
    """The decoded-image cache: ``$XDG_CACHE_HOME/dresscode``, default ``~/.cache/dresscode``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dresscode"
