"""One photo in: decoding and fitting to the native canvas (``preprocess``), the framing step (``framing``, with
the framings people use in ``framings``), augmentation for training (``augment``) and uploads (``upload``)."""
