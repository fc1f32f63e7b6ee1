"""roi_table: value maps x an integer label image -> one :class:`RoiRow` per (label, source), no Python loop
over voxels (see the package docstring for the method and its measured speed)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from napari_sff.stats.rim import roi_rim, thickest_axis
from napari_sff.stats.rows import RoiRow

# --------------------------------------------------------------------------------------------
# roi_table
# --------------------------------------------------------------------------------------------

_QUANTILES = np.array([0.05, 0.25, 0.50, 0.75, 0.95])  # P5, P25 (IQR), median, P75 (IQR), P95
_STAT_FIELDS = ("mean", "sd", "p05", "p25", "p50", "p75", "p95")  # columns of _grouped_stats' table
_MAX_LUT = 1 << 22  # label ranges up to this use a lookup table, wider ones np.unique
_BUCKETS = 4096  # histogram buckets used to locate order statistics
_SMALL = 8192  # below this many values a plain partition is as fast as the histogram
_CHUNK = 1 << 20  # voxels per block in full-volume passes


def roi_table(
    values: Mapping[str, np.ndarray],
    labels: np.ndarray,
    spacing: Sequence[float],
    *,
    reference: str | None = None,
    label_names: Mapping[int, str] | None = None,
    slice_index: int | None = None,
    slice_axis: int = 0,
    exclude_rim: int = 0,
    rim_axis: int | None = None,
) -> list[RoiRow]:
    """Fat-fraction statistics of every labelled ROI for every value map.

    Parameters
    ----------
    values
        Source name -> value array (fractions 0-1) on the same grid as ``labels``.
    labels
        Integer label image (any number of dimensions); 0 is background.
    spacing
        Voxel size in mm, one entry per axis; ``volume_ml = n_voxels * prod(spacing) / 1000``.
    reference
        Name of the source the others are compared with (``diff_mean``, ``mae``).
    label_names
        Optional label -> display name; unnamed labels are called ``"label <n>"``.
    slice_index, slice_axis
        Restrict the statistics to one slice.  The volume still uses every spacing entry
        (a slice is a slab of thickness ``spacing[slice_axis]``).
    exclude_rim
        Count out each ROI's voxels within this many voxels (4-connected steps in-plane) of another label or
        the background (:func:`napari_sff.stats.rim.roi_rim`; partial volume), as non-finite values are:
        ``n_voxels`` and ``volume_ml`` are then the ROI's core, ``n_excluded`` includes its rim.
    rim_axis
        The axis across which the rim is measured in-plane (ROIs drawn on slices along it keep their core):
        None = ``slice_axis`` with ``slice_index``, else the axis of largest spacing (the acquisition's).

    Returns
    -------
    list of RoiRow
        Sorted by label, then sources in the order of ``values``.
    """
    labels = np.asarray(labels)
    if labels.dtype == bool:
        labels = labels.view(np.uint8)  # a mask is label 1; bool arrays would index as masks
    elif not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be an integer array, got dtype {labels.dtype}")
    spacing = _check_spacing(spacing, labels.ndim)
    arrays = {str(name): np.asarray(arr) for name, arr in values.items()}
    for name, arr in arrays.items():
        if arr.shape != labels.shape:
            raise ValueError(
                f"value map {name!r} has shape {arr.shape} but labels have shape {labels.shape}; "
                "resample one onto the other's grid first"
            )
    if reference is not None and reference not in arrays:
        raise ValueError(f"reference {reference!r} is not one of the sources {list(arrays)}")

    if exclude_rim:  # the rim of the whole image's ROIs, so that slicing does not make new boundaries
        if rim_axis is None:
            rim_axis = slice_axis if slice_index is not None else thickest_axis(spacing)
        rim = roi_rim(labels, exclude_rim, rim_axis)
        arrays = {name: np.where(rim, np.nan, arr.astype(np.float32, copy=False) if arr.dtype.kind != "f" else arr)
                  for name, arr in arrays.items()}
    ids, counts, to_compact = _label_index(labels)  # ROIs of the whole image, also when slicing
    if slice_index is not None:
        axis, index = _check_slice(labels.shape, slice_index, slice_axis)
        labels = np.take(labels, index, axis=axis)
        arrays = {name: np.take(arr, index, axis=axis) for name, arr in arrays.items()}
        counts = _roi_counts(labels.ravel(), to_compact, ids.size)
    if ids.size == 0 or not arrays:
        return []

    flat = {name: arr.ravel() for name, arr in arrays.items()}
    grouped = _group_values(labels.ravel(), to_compact, flat, counts)
    stats = {name: _grouped_stats(g, counts) for name, g in grouped.items()}
    mae = {
        name: _grouped_mae(g, grouped[reference], counts)
        for name, g in grouped.items()
        if reference is not None and name != reference
    }

    voxel_ml = float(np.prod(spacing)) / 1000.0
    names = label_names or {}
    rows = []
    for k, label in enumerate(ids.tolist()):
        for name, (n, table) in stats.items():
            st = dict(zip(_STAT_FIELDS, table[k].tolist(), strict=True))
            compare = reference is not None and name != reference
            rows.append(
                RoiRow(
                    label=label,
                    name=str(names.get(label, f"label {label}")),
                    source=name,
                    n_voxels=int(n[k]),
                    volume_ml=int(n[k]) * voxel_ml,
                    mean=st["mean"],
                    median=st["p50"],
                    sd=st["sd"],
                    iqr=st["p75"] - st["p25"],
                    p05=st["p05"],
                    p95=st["p95"],
                    diff_mean=st["mean"] - float(stats[reference][1][k, 0]) if compare else None,
                    mae=float(mae[name][k]) if compare else None,
                    n_excluded=int(counts[k] - n[k]),
                )
            )
    return rows


def _check_spacing(spacing: Sequence[float], ndim: int) -> np.ndarray:
    """Spacing as a float array, rejecting wrong lengths early (a silent volume error is worse)."""
    sp = np.asarray(spacing, dtype=np.float64).ravel()
    if sp.size != ndim:
        raise ValueError(f"spacing has {sp.size} entries but the images have {ndim} axes")
    if not np.all(np.isfinite(sp) & (sp > 0)):
        raise ValueError(f"spacing must be positive and finite, got {tuple(sp.tolist())}")
    return sp


def _check_slice(shape: tuple[int, ...], index: int, axis: int) -> tuple[int, int]:
    """Normalised (axis, index), with errors that name the offending numbers."""
    ndim = len(shape)
    if not -ndim <= axis < ndim:
        raise ValueError(f"slice_axis {axis} is out of range for {ndim}-D images")
    axis %= ndim
    if not -shape[axis] <= index < shape[axis]:
        raise IndexError(f"slice_index {index} is out of range for axis {axis} of size {shape[axis]}")
    return axis, index % shape[axis]


def _chunks(n: int) -> list[slice]:
    """Blocks of voxels: full-volume passes then need ~10 MB of temporaries, not GBs."""
    return [slice(a, min(a + _CHUNK, n)) for a in range(0, n, _CHUNK)]


def _label_index(
    labels: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Sorted non-zero labels, voxels per label, and a map label -> 0..K-1 (K = background).

    Background maps to the largest index so that grouping puts it last, where it is cut off.
    A lookup table is one gather per voxel; np.unique (a full sort) is only the fallback for
    sparse, huge label values.
    """
    flat = labels.ravel()
    lo, hi = (int(flat.min()), int(flat.max())) if flat.size else (0, 0)
    if hi - lo < _MAX_LUT and np.can_cast(flat.dtype, np.intp):

        def shifted(lab: np.ndarray) -> np.ndarray:
            lab = lab.astype(np.intp, copy=False)
            return lab - lo if lo else lab

        hist = np.zeros(hi - lo + 1, dtype=np.intp)
        for sl in _chunks(flat.size):
            hist += np.bincount(shifted(flat[sl]), minlength=hist.size)
        present = hist > 0
        if lo <= 0 <= hi:
            present[-lo] = False
        ids = np.flatnonzero(present) + lo
        lut = np.full(present.size, ids.size, dtype=_index_dtype(ids.size))
        lut[present] = np.arange(ids.size)
        return ids, hist[present], lambda lab: lut[shifted(lab)]

    ids, counts = np.unique(flat, return_counts=True)
    keep = ids != 0
    ids, counts = ids[keep], counts[keep]

    def to_compact(lab: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(ids, lab)
        return np.where(lab == 0, ids.size, pos).astype(_index_dtype(ids.size))

    return ids, counts, to_compact


def _index_dtype(n_labels: int) -> type[np.integer]:
    """Smallest key type for 0..n_labels: numpy's stable argsort is a radix sort for 8/16 bits."""
    return np.uint8 if n_labels < 1 << 8 else np.uint16 if n_labels < 1 << 16 else np.intp


def _roi_counts(lab: np.ndarray, to_compact: Callable[[np.ndarray], np.ndarray], n_labels: int) -> np.ndarray:
    """Voxels per ROI in a flat label array (e.g. one slice)."""
    counts = np.zeros(n_labels + 1, dtype=np.intp)
    for sl in _chunks(lab.size):
        counts += np.bincount(to_compact(lab[sl]), minlength=n_labels + 1)
    return counts[:n_labels]


def _group_values(
    lab: np.ndarray,
    to_compact: Callable[[np.ndarray], np.ndarray],
    arrays: Mapping[str, np.ndarray],
    counts: np.ndarray,
) -> dict[str, np.ndarray]:
    """Each source's ROI voxels concatenated ROI by ROI (scan order kept within an ROI).

    Done block by block; the grouping order of a block is shared by all sources.  Afterwards
    every ROI is a contiguous segment, so its statistics are cache-friendly reductions instead
    of scattered np.bincount updates (measured ~30x slower on compact ROIs, where consecutive
    voxels hit the same bin).
    """
    n_labels = counts.size
    write = np.cumsum(counts) - counts
    grouped = {name: np.empty(int(counts.sum()), dtype=arr.dtype) for name, arr in arrays.items()}
    for block in _chunks(lab.size):
        order, block_counts = _block_order(lab[block], to_compact, n_labels)
        runs = [(src, slice(write[k], write[k] + src.stop - src.start)) for k, src in _segments(block_counts)]
        for name, arr in arrays.items():
            values, out = arr[block].take(order), grouped[name]
            for src, dst in runs:
                out[dst] = values[src]
        write += block_counts
    return grouped


def _block_order(
    lab: np.ndarray, to_compact: Callable[[np.ndarray], np.ndarray], n_labels: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a block's ROI voxels grouped by ROI (scan order kept), and voxels per ROI.

    Segmentations are made of long runs of one label along the scan order, so sorting the runs
    is far cheaper than sorting voxels; fragmented label images use a radix argsort instead.
    Both give the same order.
    """
    edges = np.flatnonzero(lab[1:] != lab[:-1]) + 1
    if edges.size > lab.size // 16:
        keys = to_compact(lab)
        counts = np.bincount(keys, minlength=n_labels + 1)[:n_labels]
        return np.argsort(keys, kind="stable")[: counts.sum()], counts
    starts = np.concatenate(([0], edges))
    lengths = np.diff(starts, append=lab.size)
    keys = to_compact(lab[starts])
    counts = np.bincount(keys, weights=lengths, minlength=n_labels + 1)[:n_labels].astype(np.intp)
    runs = np.argsort(keys, kind="stable")[: np.count_nonzero(keys < n_labels)]  # background is last
    starts, lengths = starts[runs], lengths[runs]
    offsets = np.cumsum(lengths) - lengths  # where each run lands in the grouped order
    return np.arange(counts.sum()) + np.repeat(starts - offsets, lengths), counts


def _segments(counts: np.ndarray) -> list[tuple[int, slice]]:
    """(ROI index, slice) of every non-empty segment of a grouped array."""
    stops = np.cumsum(counts).tolist()
    return [
        (k, slice(stop - c, stop))
        for k, (c, stop) in enumerate(zip(counts.tolist(), stops, strict=True))
        if c
    ]


def _grouped_stats(g: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Finite-voxel counts and a (K, len(_STAT_FIELDS)) table of statistics, NaN where empty."""
    n = np.zeros_like(counts)
    table = np.full((counts.size, len(_STAT_FIELDS)), np.nan)
    for k, sl in _segments(counts):
        n[k], table[k] = _segment_stats(g[sl])
    return n, table


def _segment_stats(x: np.ndarray) -> tuple[int, np.ndarray]:
    """Finite count, then mean, sample SD and the five percentiles (see _STAT_FIELDS) of one ROI.

    Non-finite values are dropped here, only when the sum shows there are any.
    """
    dev = x.astype(np.float64)
    total = dev.sum()  # pairwise summation in float64
    if not math.isfinite(total):
        finite = np.isfinite(dev)
        x, dev = x[finite], dev[finite]
        total = dev.sum()
    n = x.size
    if n == 0:
        return 0, np.full(len(_STAT_FIELDS), np.nan)
    if x.dtype not in (np.float32, np.float64):
        x = dev.copy()  # integer or half-precision maps: select on float64 values
    mean = total / n
    dev -= mean  # two-pass SD: no cancellation
    dev *= dev
    sd = math.sqrt(dev.sum() / (n - 1)) if n > 1 else math.nan

    virtual = (n - 1) * _QUANTILES  # numpy's "linear" method, same formula and interpolation
    lower = np.floor(virtual)
    gamma = virtual - lower
    lower = lower.astype(np.intp)
    upper = np.minimum(lower + 1, n - 1)
    ranks = np.unique(np.concatenate((lower, upper)))
    at = _order_statistics(x, ranks).astype(np.float64)
    q = _lerp(at[np.searchsorted(ranks, lower)], at[np.searchsorted(ranks, upper)], gamma)
    return n, np.concatenate(([mean, sd], q))


def _order_statistics(x: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """``np.sort(x)[ranks]`` (ranks sorted, unique) without sorting or partitioning all of x.

    A histogram of the values locates the few buckets that hold the wanted ranks; only those
    values are partitioned.  The bucket index is a monotone function of the value (each float
    operation rounds monotonically), so the buckets are ordered like the values and the result
    is exact.  Measured ~5x faster than ``np.partition`` on a muscle-sized ROI; degenerate
    data (all values in one bucket) falls back to about the cost of a partition.
    """
    if x.size <= _SMALL:
        return np.partition(x, ranks)[ranks]
    lo, hi = x.min(), x.max()
    with np.errstate(over="ignore"):  # an overflowing span or scale just means: no histogram
        span = hi - lo
        scale = x.dtype.type(_BUCKETS / float(span)) if span > 0 else x.dtype.type(0)
    if not (np.isfinite(span) and np.isfinite(scale) and scale > 0):
        return np.partition(x, ranks)[ranks]  # constant values, or a span float can't scale
    bucket = x - lo
    bucket *= scale
    bucket = bucket.astype(np.intp)  # 0.._BUCKETS (rounding may reach the top edge)
    count = np.bincount(bucket)
    cum = np.cumsum(count)
    home = np.searchsorted(cum, ranks, side="right")  # bucket holding each rank
    needed = np.zeros(count.size, dtype=bool)
    needed[home] = True
    sub = x[needed[bucket]]  # values of the needed buckets, any order
    kept = np.where(needed, count, 0)
    local = ranks - (cum[home] - count[home]) + (np.cumsum(kept) - kept)[home]
    sub.partition(local)
    return sub[local]


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy's own interpolation (counted from the nearer end) so results agree to the last bit."""
    diff = b - a
    return np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)


def _grouped_mae(g: np.ndarray, ref: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-ROI mean |g - ref| over voxels where both are finite (NaN when there are none)."""
    mae = np.full(counts.size, np.nan)
    for k, sl in _segments(counts):
        d = np.subtract(g[sl], ref[sl], dtype=np.float64)
        np.abs(d, out=d)
        total = d.sum()
        if not math.isfinite(total):
            d = d[np.isfinite(d)]
            total = d.sum()
        if d.size:
            mae[k] = total / d.size
    return mae
