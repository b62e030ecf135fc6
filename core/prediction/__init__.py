"""Predicting: the served model, one door into a loaded model (``served``), its fp32 batched forward
(``inference``) and fast batch path (``fastpath``), and the app's loading that never raises (``service``)."""
