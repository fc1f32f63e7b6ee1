"""What is scored: the slices of one split of a slice cache (a folder of pairs is cached on the fly), spread
evenly over the split, and the case each image comes from."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from training.data import CACHE_INFO, SliceDataset, build_slice_cache


def as_cache(data: str, size: int = 256) -> Path:
    """``data`` if it is a slice cache, else a cache of the folder of pairs ``data`` (NIfTI or DICOM, SFF or
    fat + water, any grids: see :mod:`training.data`) made on the fly."""
    path = Path(data)
    if not (path / CACHE_INFO).exists():
        path = build_slice_cache(path, Path(tempfile.mkdtemp(prefix="napari-sff-eval-")), size=size)
    return path


def evenly_spaced(total: int, most: int | None) -> np.ndarray:
    """Indices of at most ``most`` of ``total`` images spread evenly (all when ``most`` is None): every case of a
    split is represented, not only the first ones."""
    count = total if most is None else min(total, most)
    return np.linspace(0, total - 1, count).astype(int) if count else np.array([], int)


def load_split(data: str, split: str, max_images: int | None, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Raw T2w and true SFF slices of one split (a cache, or a NIfTI folder cached on the fly)."""
    dataset = SliceDataset(as_cache(data, size), split)
    indices = evenly_spaced(len(dataset), max_images)
    return np.asarray(dataset.t2w[indices]), np.asarray(dataset.sff[indices])


def split_cases(cache: Path, split: str, max_images: int | None) -> list[str]:
    """The case of each image :func:`load_split` returns, in its order."""
    index = json.loads((cache / CACHE_INFO).read_text())["splits"][split]["index"]
    return [index[i][0] for i in evenly_spaced(len(index), max_images)]
