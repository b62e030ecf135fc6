"""Streamlit glue shared by the pages, by concern: ``resources`` (cached models, cards and Grad-CAM
calls), ``settings`` (session settings, the dataset folder, the sidebar), ``dataset`` (photos in and
the dataset index), ``pickers`` (the photo and class pickers), ``drawing`` (overlays and figures),
``wording`` (captions and names), ``verdicts`` (every model's verdict, the ensemble, agreement in words),
``results`` (Classify's many-photo table, heatmap grid and exports), ``matrices`` (clickable confusion
matrices) and ``calibration`` (reliability diagrams).

A sub-folder, so Streamlit never lists it as a page. Everything that is not drawing lives in
``core/``; these modules only cache and draw.
"""
