"""Dress-code explainer: the entry point (page config, shared sidebar, navigation)."""

import logging

import streamlit as st
from PIL import Image, ImageDraw

from pages._entry import entry_run

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")


@st.cache_resource(show_spinner=False)
def favicon() -> Image.Image:
    """The tab icon, drawn here (a shirt): Streamlit fetches emoji and Material icons for the tab
    from a CDN, which fails offline, and demos are often offline."""
    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    shirt = [(22, 6), (42, 6), (60, 18), (52, 30), (46, 26), (46, 60), (18, 60), (18, 26), (12, 30), (4, 18)]
    ImageDraw.Draw(img).polygon(shirt, fill=(31, 58, 120, 255))
    ImageDraw.Draw(img).polygon([(26, 6), (38, 6), (32, 16)], fill=(255, 255, 255, 255))  # the collar
    return img


st.set_page_config(page_title="Dress-code explainer", page_icon=favicon(), layout="wide")
pages = [
    st.Page("pages/classify.py", title="Classify", icon=":material/checkroom:", default=True),
    st.Page("pages/layers.py", title="Layers", icon=":material/layers:"),
    st.Page("pages/evaluation.py", title="Evaluation", icon=":material/analytics:"),
    st.Page("pages/trust.py", title="Trust", icon=":material/verified:"),
    st.Page("pages/data.py", title="Data & augmentation", icon=":material/science:"),
    st.Page("pages/about.py", title="About the models", icon=":material/info:"),
]
# Navigation comes before the heavy imports: until a first run reaches st.navigation, Streamlit
# lists the files of pages/ in the sidebar (a start used to show them for the seconds that
# importing torch and Captum takes).
page = st.navigation(pages)
with st.spinner("Starting the explainer …"):
    # torch, Captum and the models' code: seconds on the first visit after a start
    from pages.ui import resources, settings

settings.init_state()
resources.warm_models()
settings.sidebar()
with entry_run():
    page.run()
