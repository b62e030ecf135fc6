"""Session settings: the sidebar's model pickers and dataset folder (editable only when the server
opts in: ``core.config.data_dir_editable``), their defaults, and what the pages say when there is no dataset."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.config import DATA_EDITABLE_ENV_VAR, DATA_ENV_VAR, data_dir_editable, default_data_setting
from core.models.registry import REGISTRY, get_spec
from pages.ui import verdicts
from pages.ui.dataset import get_catalog
from pages.ui.resources import get_model
from pages.ui.wording import plain


def _defaults() -> dict[str, str]:
    return {
        "model_a": "baseline",
        "model_b": "resnet50",
        "data_dir": default_data_setting(),
    }


def data_dir_locked() -> bool:
    """Whether the server fixes the dataset folder (the default): the sidebar then shows only the dataset's
    name and size, and any value a browser sends for the folder is ignored."""
    return not data_dir_editable()


def where_data_is_set() -> str:
    """Where the dataset folder is set, for messages: by the server, unless a local run made it editable."""
    return f"the server sets it, with ${DATA_ENV_VAR}" if data_dir_locked() else f"sidebar, or ${DATA_ENV_VAR}"


def setting(key: str) -> str:
    """A sidebar setting, or its default when a page runs without the sidebar (always the server's
    dataset folder unless the folder is editable)."""
    if key == "data_dir" and data_dir_locked():
        return _defaults()[key]
    return st.session_state[key] if key in st.session_state else _defaults()[key]


def init_state() -> None:
    """Session defaults, set once."""
    for key, value in _defaults().items():
        # re-assigning keeps a sidebar widget's value when the page (and so its widget id) changes
        st.session_state[key] = st.session_state[key] if key in st.session_state else value


def data_dir() -> Path | None:
    """The configured dataset folder if it has the Kaggle layout, else None."""
    raw = str(setting("data_dir")).strip()
    if not raw:
        return None
    p = Path(raw).expanduser()
    return p if (p / "styles.csv").is_file() and (p / "images").is_dir() else None


def shown_folder(folder: str) -> str:
    """A dataset folder as messages show it: the path typed in an editable sidebar, else only the folder's
    name (the server's paths are not the visitors' business)."""
    return plain(folder if data_dir_editable() else Path(folder).name or folder)


def no_dataset_note(consequence: str) -> str:
    """Why dataset samples are unavailable (nothing configured, or a folder that is not a dataset),
    followed by ``consequence``."""
    configured = str(setting("data_dir")).strip()
    if not configured:
        return f"No dataset folder is configured ({where_data_is_set()}), so {consequence}"
    whose = "configured" if data_dir_editable() else "server's"
    if data_dir() is None:
        return (
            f"The {whose} dataset folder {shown_folder(configured)} is missing or incomplete (it needs styles.csv "
            f"and images/), so {consequence}"
        )
    folder = shown_folder(configured)
    return f"The {whose} dataset folder {folder} could not be read (see the server log), so {consequence}"


def model_label(name: str) -> str:
    """Display name of a registry model, marked when disabled."""
    loaded = get_model(name)
    return get_spec(name).title + ("" if loaded.ok else " (unavailable)")


def chosen_models() -> list[str]:
    """The two models picked in the sidebar (may be the same one twice)."""
    return [setting("model_a"), setting("model_b")]


def sidebar() -> None:
    """The shared sidebar: model pickers, dataset folder, model status."""
    names = list(REGISTRY)
    with st.sidebar:
        st.subheader("Models")
        st.selectbox("Model A", names, key="model_a", format_func=model_label)
        st.selectbox("Model B", names, key="model_b", format_func=model_label)
        verdicts.sidebar_note()  # which model to believe: the most accurate on validation
        for name in names:
            loaded = get_model(name)
            if not loaded.ok:
                st.error(f"{get_spec(name).title} is disabled: {loaded.error}", icon=":material/warning:")
        st.subheader("Dataset")
        if data_dir_editable():  # a local run that opted in: the folder is the user's own to type
            st.text_input(
                "Dataset folder (Kaggle layout)",
                key="data_dir",
                help=f"Folder with styles.csv and images/. Also read from ${DATA_ENV_VAR}. Editable because "
                f"${DATA_EDITABLE_ENV_VAR}=1 (a local run); a shared server leaves it unset.",
            )
        dataset_summary()


def dataset_summary() -> None:
    """The dataset as the sidebar names it: the folder's name and its image count, never a path."""
    configured = str(setting("data_dir")).strip()
    root = data_dir()
    catalog = get_catalog(str(root)) if root else None
    by = "" if data_dir_editable() else " Set by the server."
    if catalog is not None:
        st.markdown(f"**{plain(root.name)}** · {len(catalog.ids):,} labelled product photos")
        st.caption(f"{', '.join(catalog.classes)}.{by}")
    elif root is not None:
        st.caption(f"The dataset {shown_folder(configured)} could not be read; dataset features are off.{by}")
    elif configured:
        st.caption(f"The folder {shown_folder(configured)} has no styles.csv + images/; dataset features are off.{by}")
    else:
        where = "" if data_dir_editable() else " on this server"
        st.caption(f"No dataset configured{where}: dataset galleries are off; everything else works.")
