"""Scoring predictions: metrics with bootstrap intervals and the decision rule's choice (``metrics``),
and per-slice metrics by a dataset attribute (``slices``).
Scoring a whole catalogue (``python -m core.score``): ``inputs`` (what to score, each file read the app's way),
``catalogue`` (the rows), ``parts`` (the resumable output), ``engines`` (local) and ``ray_engine`` (Ray)."""
