"""``python -m training.train``: ``main`` lives in ``loop`` so that importing the package does not import this
module (``runpy`` warns when ``__main__`` is already imported)."""

from training.train.loop import main

if __name__ == "__main__":
    raise SystemExit(main())
