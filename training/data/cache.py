"""The slice cache: every 2D slice of every pair once, written case by case into memory-mapped files.

``python -m training.data DATA_DIR CACHE_DIR [--workers N] [--subject-regex RE] [--register]`` builds it.

* Memory stays flat whatever the cohort: a worker holds one case at a time and writes its slices to
  ``cases/<case>_t2w.npy`` / ``_sff.npy`` (float32, read back memory-mapped by :class:`SliceDataset`), then a small
  ``cases/<case>.json`` record. Several worker processes build cases side by side.
* An interrupted build resumes: cases whose record exists are kept; ``cache.json`` (the index the dataset reads)
  is written last, so a cache is usable only once it is complete. Records name the settings they were built with,
  and a rerun with other settings is refused rather than mixed.
* Subjects, not files, are split between train / val / test (``--subject-regex``), so no subject leaks.
* No anatomy is lost on any matrix: slices are resampled in-plane to the cache's pixel spacing (the native one
  clipped into ``spacing_range`` and coarsened where the field of view would not fit in ``size`` x ``size``), then
  zero-padded to ``size``; never centre-cropped. The cache stores raw T2w (scanner units) so augmentation can vary
  what scanners vary before the shared normalisation runs.
* Slices where the SFF does not reach part of the body (a Dixon series with fewer slices or a smaller field of
  view) are left out; uncovered voxels outside the body are set to 0.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from napari_sff import io
from napari_sff.inference import choose_slice_axis, resample_slices
from training.data.pairs import (
    MIN_COVERAGE,
    Pair,
    PairError,
    body_of,
    find_pairs,
    flag_misaligned,
    load_pair,
    split_subjects,
    subjects_of,
)

SPLITS = ("train", "val", "test")
CACHE_INFO = "cache.json"
CACHE_FORMAT = 2
CASES_DIR = "cases"
#: A slice is used when the SFF covers at least this fraction of its body pixels.
MIN_SLICE_COVERAGE = 0.98


def fit_to_size(image: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad the last two axes to ``size`` x ``size`` around the centre (centre-crop what is larger)."""
    out = np.zeros(image.shape[:-2] + (size, size), dtype=image.dtype)
    src, dst = [], []
    for extent in image.shape[-2:]:
        if extent >= size:
            start = (extent - size) // 2
            src.append(slice(start, start + size))
            dst.append(slice(0, size))
        else:
            start = (size - extent) // 2
            src.append(slice(0, extent))
            dst.append(slice(start, start + extent))
    out[(..., *dst)] = image[(..., *src)]
    return out


def cache_spacing(shape: Sequence[int], spacing: Sequence[float], size: int,
                  spacing_range: Sequence[float] | None = None) -> tuple[float, float]:
    """In-plane pixel spacing of a slice in the cache: native, clipped into ``spacing_range``, coarsened (per
    axis) until the field of view fits in ``size`` pixels."""
    target = []
    for n, mm in zip(shape, spacing, strict=True):
        value = float(mm) if spacing_range is None else float(np.clip(mm, *spacing_range))
        target.append(max(value, n * float(mm) / size))
    return target[0], target[1]


def _settings(size: int, spacing_range: Sequence[float] | None, register: bool, min_coverage: float) -> dict:
    return {"format": CACHE_FORMAT, "size": size, "spacing_range": None if spacing_range is None else
            [float(v) for v in spacing_range], "register": bool(register), "min_coverage": float(min_coverage)}


def cache_case(pair: Pair, cases_dir: str | os.PathLike, settings: dict) -> dict:
    """Worker: one pair -> its slice files and record (returned); a refused pair gives a record with ``error``."""
    cases_dir = Path(cases_dir)
    record_path = cases_dir / f"{pair.case}.json"
    size = settings["size"]
    try:
        aligned = load_pair(pair, register=settings["register"], min_coverage=settings["min_coverage"])
    except PairError as exc:
        record = {"case": pair.case, "settings": settings, "error": str(exc)}
        io.atomic_write_text(record_path, json.dumps(record))
        return record
    t2w = aligned.t2w
    axis = choose_slice_axis(t2w.spacing)
    in_plane = [float(v) for i, v in enumerate(t2w.spacing) if i != axis]
    raw = np.moveaxis(np.asarray(t2w.array, np.float32), axis, 0)
    sff = np.moveaxis(aligned.sff, axis, 0)
    body = np.moveaxis(body_of(t2w), axis, 0)
    keep = []
    for k in range(raw.shape[0]):
        in_body = body[k]
        covered = np.isfinite(sff[k])[in_body].mean() if in_body.any() else 1.0
        if covered >= MIN_SLICE_COVERAGE:
            keep.append(k)
    target = cache_spacing(raw.shape[1:], in_plane, size, settings["spacing_range"])
    t2w_slices, sff_slices = raw[keep], np.nan_to_num(sff[keep], nan=0.0)
    grid = [min(size, max(1, math.floor(n * s / t + 1e-6))) for n, s, t in zip(raw.shape[1:], in_plane, target,
                                                                                 strict=True)]
    if grid != list(raw.shape[1:]) and keep:
        t2w_slices = resample_slices(t2w_slices, grid, order=1)
        sff_slices = np.clip(resample_slices(sff_slices, grid, order=1), 0, 1)
    for key, values in (("t2w", t2w_slices), ("sff", sff_slices)):
        array = fit_to_size(values.astype(np.float32), size) if len(keep) else np.zeros((0, size, size), np.float32)
        with io.atomic_write(cases_dir / f"{pair.case}_{key}.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, array)
    record = {"case": pair.case, "settings": settings, "slices": keep, "dropped": raw.shape[0] - len(keep),
              "in_plane_spacing_mm": list(target), "native_spacing_mm": in_plane, "coverage": aligned.coverage,
              "alignment": aligned.alignment, "shift_note": aligned.shift_note, "registered": aligned.registered}
    io.atomic_write_text(record_path, json.dumps(record))
    return record


def _done_record(path: Path, settings: dict) -> dict | None:
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if record.get("settings") != settings:
        raise ValueError(f"{path.parent.parent}: this cache was built with other settings ({record.get('settings')});"
                         " use a new cache folder or the same settings")
    return record


def build_slice_cache(
    data_dir: str | os.PathLike, cache_dir: str | os.PathLike, *, size: int = 256, val_fraction: float = 0.15,
    test_fraction: float = 0.15, seed: int = 0, subject_regex: str | None = None,
    spacing_range: Sequence[float] | None = None, register: bool = False, min_coverage: float = MIN_COVERAGE,
    workers: int = 1, progress: Callable[[dict], None] | None = None,
) -> Path:
    """Cache every slice of every pair in ``data_dir`` (see the module docstring); returns ``cache_dir``.

    Refused pairs (barely overlapping, unreadable) are listed in ``cache.json`` under ``refused`` and left out;
    possible misregistrations are listed under ``flagged`` (``register=True`` aligns every pair rigidly first).
    """
    cache_dir = Path(cache_dir)
    cases_dir = cache_dir / CASES_DIR
    cases_dir.mkdir(parents=True, exist_ok=True)
    pairs = find_pairs(data_dir)
    subjects = subjects_of([pair.case for pair in pairs], subject_regex)
    assignment = split_subjects(subjects, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    settings = _settings(size, spacing_range, register, min_coverage)
    records: dict[str, dict] = {}
    todo = []
    for pair in pairs:
        record = _done_record(cases_dir / f"{pair.case}.json", settings)
        if record is None:
            todo.append(pair)
        else:
            records[pair.case] = record
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for record in pool.map(cache_case, todo, [cases_dir] * len(todo), [settings] * len(todo)):
                records[record["case"]] = record
                if progress:
                    progress(record)
    else:
        for pair in todo:
            record = cache_case(pair, cases_dir, settings)
            records[pair.case] = record
            if progress:
                progress(record)
    usable = {case: record for case, record in records.items() if "error" not in record}
    info = {"format": CACHE_FORMAT, "data_dir": str(Path(data_dir).resolve()), "size": size, "seed": seed,
            "settings": settings, "subject_regex": subject_regex, "splits": {},
            "refused": {case: record["error"] for case, record in sorted(records.items()) if "error" in record},
            "flagged": flag_misaligned({case: record["alignment"] for case, record in usable.items()},
                                       {case: record.get("shift_note") for case, record in usable.items()}),
            "quality": {case: {"coverage": record["coverage"], "alignment": record["alignment"]}
                        for case, record in sorted(usable.items())}}
    for split in SPLITS:
        cases = sorted(case for case in usable if assignment[case] == split)
        spacing = [v for case in cases if usable[case]["slices"] for v in usable[case]["in_plane_spacing_mm"]]
        info["splits"][split] = {
            "slices": sum(len(usable[case]["slices"]) for case in cases), "cases": cases,
            "subjects": sorted({subjects[case] for case in cases}),
            "index": [[case, k] for case in cases for k in usable[case]["slices"]],
            # What inference compares a user's pixels with (see training.train.seen_spacing_range).
            "in_plane_spacing_mm": [min(spacing), max(spacing)] if spacing else None,
        }
    io.atomic_write_text(cache_dir / CACHE_INFO, json.dumps(info))
    return cache_dir


class SliceStack:
    """The slices of several cases as one read-only stack: ``stack[i]`` or ``stack[[i, j]]`` -> float32 arrays.

    Each case's file is memory-mapped, so DataLoader workers share the page cache instead of copies.
    """

    def __init__(self, files: Sequence[Path], size: int):
        self.arrays = [np.load(path, mmap_mode="r") for path in files]
        self.size = size
        lengths = np.array([len(array) for array in self.arrays], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(lengths)])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _one(self, index: int) -> np.ndarray:
        if not -len(self) <= index < len(self):
            raise IndexError(f"slice {index} outside 0..{len(self) - 1}")
        index %= len(self)
        case = int(np.searchsorted(self.starts, index, side="right")) - 1
        return np.asarray(self.arrays[case][index - self.starts[case]])

    def __getitem__(self, index):
        if np.ndim(index) == 0:
            return self._one(int(index))
        indices = np.asarray(index).ravel()
        out = np.empty((len(indices), self.size, self.size), np.float32)
        for k, i in enumerate(indices):
            out[k] = self._one(int(i))
        return out


def open_split(cache_dir: str | os.PathLike, split: str) -> tuple[SliceStack, SliceStack]:
    """(raw T2w, SFF) stacks of one split, in the order of ``cache.json``'s index."""
    cache_dir = Path(cache_dir)
    info = json.loads((cache_dir / CACHE_INFO).read_text())
    if info.get("format") != CACHE_FORMAT:
        raise ValueError(f"{cache_dir}: slice cache of an older napari-sff; rebuild it (python -m training.data)")
    cases = info["splits"][split]["cases"]
    return tuple(SliceStack([cache_dir / CASES_DIR / f"{case}_{key}.npy" for case in cases], info["size"])
                 for key in ("t2w", "sff"))
