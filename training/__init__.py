"""Training, evaluation and the paper's table for napari-sff; run from a checkout (``python -m training.*``)."""
