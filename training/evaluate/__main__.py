"""``python -m training.evaluate``: runs :func:`training.evaluate.cli.main` (kept in ``cli``, not here, so that
importing the package never imports ``__main__``, which ``runpy`` would warn about)."""

from training.evaluate.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
