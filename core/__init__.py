"""The dress-code explainer's core: plain Python + PyTorch, importable without Streamlit.

- ``config`` — paths and the ``DRESSCODE_*`` environment variables, read in this one place;
- ``images`` — one photo in: decoding and fitting (``preprocess``), the framing step (``framing``,
  ``framings``), augmentation (``augment``), uploads (``upload``);
- ``data`` — the dataset: its index (``catalog``), the saved split (``split``), products shared between
  splits (``products``), decoded images cached (``cache``); ``python -m core.data`` (``summary``);
- ``models`` — the networks (``networks``), the registry (``registry``), model cards and weights (``card``);
- ``prediction`` — :class:`~core.prediction.served.ServedModel`, the one door into a loaded model
  (``served``), its fp32 and fast batch paths (``inference``, ``fastpath``), the app's safe loading (``service``);
- ``explanation`` — Grad-CAM (``gradcam``), drawing the maps (``overlay``), the occlusion check (``occlusion``);
- ``scoring`` — metrics with intervals and the decision rule (``metrics``), per-slice metrics (``slices``);
- ``training`` — what ``python -m core.train`` runs: a run's inputs (``prepare``), the epoch loop (``loop``),
  the saved weights and card (``record``);
- the command-line tools: ``train``, ``evaluate``, ``report`` (``python -m core.NAME``), with ``cli``'s
  argparse helpers.
"""
