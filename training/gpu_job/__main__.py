"""``python -m training.gpu_job``: the command line lives in ``cli`` so that importing the package does not
import this module (``runpy`` warns when ``__main__`` is already imported)."""

from training.gpu_job.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
