"""Dress-code explainer: the entry point (page config, shared sidebar, navigation)."""

import logging

import streamlit as st

from pages import _ui

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
st.set_page_config(page_title="Dress-code explainer", page_icon=_ui.favicon(), layout="wide")
_ui.init_state()

pages = [
    st.Page("pages/classify.py", title="Classify", icon=":material/checkroom:", default=True),
    st.Page("pages/layers.py", title="Layers", icon=":material/layers:"),
    st.Page("pages/evaluation.py", title="Evaluation", icon=":material/analytics:"),
    st.Page("pages/data.py", title="Data & augmentation", icon=":material/science:"),
    st.Page("pages/about.py", title="About the models", icon=":material/info:"),
]
page = st.navigation(pages)
_ui.warm_models()
_ui.sidebar()
with _ui.entry_run():
    page.run()
