"""Dress-code explainer: the entry point (page config, shared sidebar, navigation)."""

import logging

import streamlit as st

from pages import _ui

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
st.set_page_config(page_title="Dress-code explainer", page_icon="👔", layout="wide")
_ui.init_state()

pages = [
    st.Page("pages/classify.py", title="Classify", icon="🖼️", default=True),
    st.Page("pages/layers.py", title="Layers", icon="🧅"),
    st.Page("pages/evaluation.py", title="Evaluation", icon="📊"),
    st.Page("pages/data.py", title="Data & augmentation", icon="🧪"),
    st.Page("pages/about.py", title="About the models", icon="ℹ️"),
]
page = st.navigation(pages)
_ui.sidebar()
page.run()
