"""What a model was trained on, and whether a scan lies outside it (an out-of-distribution warning).

Training records, in every checkpoint's metadata (``input_statistics``), the range (1st-99th percentile over the
training slices) of a few statistics of the *normalised* T2w slices (:func:`napari_sff.preprocess.normalise_t2w`,
inside the body mask): how much of the slice is body, the median body intensity and the share of bright (fat- or
fluid-like) pixels -- contrast and composition -- and the mean gradient magnitude -- noise, texture and blur.
:func:`outside_training_range` computes the same statistics for a scan and says which of them fall outside,
so ``napari-sff predict`` and the Predict widget can warn that the SFF map deserves less trust. It is a warning,
not a verdict: a scan inside every range can still be unlike the training data in ways these numbers miss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from napari_sff.preprocess import body_mask, normalise_t2w

#: Statistic -> what it means, for messages.
STATISTICS = {
    "body_fraction": "share of the slice that is body",
    "median_intensity": "median normalised body intensity",
    "bright_fraction": "share of bright (fat / fluid-like) body pixels",
    "texture": "mean normalised gradient in the body (noise, texture, blur)",
}
#: Normalised intensity above which a body pixel counts as bright (fat and fluid sit near 1, muscle near 0.2-0.4).
BRIGHT = 0.6
#: A scan statistic this far (as a share of the training range's width) outside the range is reported.
MARGIN = 0.1
#: Slices sampled from a scan (evenly): enough for a median, cheap on a 200-slice series.
MAX_SLICES = 32


def slice_statistics(raw_slices: np.ndarray) -> dict[str, np.ndarray]:
    """Per-slice statistics of raw T2w slices (N, H, W), computed on their normalised images inside the body."""
    raw = np.asarray(raw_slices, dtype=np.float32)
    if raw.ndim == 2:
        raw = raw[None]
    normalised = normalise_t2w(raw)
    body = body_mask(raw)
    rows, cols = np.gradient(normalised, axis=(1, 2))
    gradient = np.hypot(rows, cols)
    out = {name: np.full(len(raw), np.nan) for name in STATISTICS}
    for k in range(len(raw)):
        inside = body[k]
        if inside.sum() < 16:
            continue
        values = normalised[k][inside]
        out["body_fraction"][k] = inside.mean()
        out["median_intensity"][k] = np.median(values)
        out["bright_fraction"][k] = np.mean(values > BRIGHT)
        out["texture"][k] = gradient[k][inside].mean()
    return out


def training_ranges(statistics: Sequence[Mapping[str, np.ndarray]]) -> dict[str, list[float]]:
    """{statistic: [1st, 99th percentile]} over all training slices (what a checkpoint records)."""
    ranges = {}
    for name in STATISTICS:
        values = np.concatenate([np.asarray(part[name], dtype=np.float64) for part in statistics])
        values = values[np.isfinite(values)]
        if values.size:
            ranges[name] = [float(np.percentile(values, 1)), float(np.percentile(values, 99))]
    return ranges


def sample_slices(slices: np.ndarray, most: int = MAX_SLICES) -> np.ndarray:
    """At most ``most`` evenly spaced slices of a stack (N, H, W)."""
    if len(slices) <= most:
        return np.asarray(slices)
    return np.asarray(slices[np.linspace(0, len(slices) - 1, most).round().astype(int)])


def outside_training_range(raw_slices: np.ndarray, ranges: Mapping[str, Sequence[float]] | None) -> str | None:
    """One line naming the statistics of a scan (medians over its slices) outside the training ranges; None if
    every one is inside, or the checkpoint recorded no ranges (weights made before this check existed)."""
    if not ranges:
        return None
    statistics = slice_statistics(sample_slices(raw_slices))
    outside = []
    for name, (low, high) in ranges.items():
        if name not in statistics:
            continue
        values = statistics[name][np.isfinite(statistics[name])]
        if not values.size:
            continue
        value, margin = float(np.median(values)), MARGIN * (float(high) - float(low))
        if value < low - margin or value > high + margin:
            outside.append(f"{STATISTICS[name]} {value:.2f} (trained on {low:.2f}-{high:.2f})")
    if not outside:
        return None
    return ("this scan lies outside what the model was trained on: " + "; ".join(outside)
            + "; read its SFF map with caution")
