"""``python -m core.data``: the dataset at a glance (:mod:`core.data.summary`)."""

from core.data.summary import main

if __name__ == "__main__":
    raise SystemExit(main())
