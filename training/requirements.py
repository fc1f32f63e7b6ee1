"""What training needs beyond the standard library, checked without importing any of it: a bare GPU box often
has torch and little else, and ``training.train`` itself cannot be imported there to ask."""

from __future__ import annotations

import importlib.util

REQUIRED = ("torch", "numpy", "scipy", "nibabel", "monai", "einops", "safetensors", "tqdm")  # import = pip name


def missing_requirements() -> list[str]:
    """Packages training needs that this Python lacks."""
    return [package for package in REQUIRED if importlib.util.find_spec(package) is None]
