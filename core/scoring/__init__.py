"""Scoring predictions: metrics with bootstrap intervals and the decision rule's choice (``metrics``),
and per-slice metrics by a dataset attribute (``slices``)."""
