"""The dataset: its index (``catalog``), the saved split (``split``), products shared between splits
(``products``), its images decoded many at a time and cached (``cache``), and ``python -m core.data``
(``summary``)."""
