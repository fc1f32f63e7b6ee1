"""What a model was trained on, and whether a scan lies outside it (an out-of-distribution warning).

Training records, in every checkpoint's metadata (``input_statistics``), the range (1st-99th percentile over the
training slices) of a few statistics of the *normalised* T2w slices (:func:`napari_sff.preprocess.normalise_t2w`,
inside the body mask): how much of the slice is body, the median body intensity and the share of bright (fat- or
fluid-like) pixels -- contrast and composition -- and the mean gradient magnitude -- noise, texture and blur.
:func:`outside_training_range` computes the same statistics for a scan and says which of them fall outside,
so ``napari-sff predict`` and the Predict widget can warn that the SFF map deserves less trust. It is a warning,
not a verdict: a scan inside every range can still be unlike the training data in ways these numbers miss.

The U-Net's own view adds a second, per-slice signal (``feature_statistics``): how far the bottleneck features of a
slice (mean and SD of each channel over the slice) lie from those of the training slices -- a Mahalanobis
distance in their leading principal components plus the rest as one residual term, scaled so that a typical
training slice scores about 1. When more than a tenth of a scan's slices lie beyond the training slices' 99th
percentile, the warning names them. On the card's independent phantoms this distance followed each slice's
error (Spearman 0.82, model card section 1c) far better than any of the four image statistics (at most 0.48)
and flagged 2 of the 12 phantoms, where those statistics flagged none; on the simulator's own test cases it
flagged none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_sff.preprocess import body_mask, normalise_t2w, reference_level

if TYPE_CHECKING:
    import torch

#: Statistic -> what it means, for messages.
STATISTICS = {
    "body_fraction": "share of the slice that is body",
    "median_intensity": "median normalised body intensity",
    "bright_fraction": "share of bright (fat / fluid-like) body pixels",
    "texture": "mean normalised gradient in the body (noise, texture, blur)",
}
#: Normalised intensity above which a body pixel counts as bright (fat and fluid sit near 1, muscle near 0.2-0.4),
#: under the percentile rule; other normalisations scale it by where they put their reference tissue.
BRIGHT = 0.6
#: A scan statistic this far (as a share of the training range's width) outside the range is reported.
MARGIN = 0.1
#: Slices sampled from a scan (evenly): enough for a median, cheap on a 200-slice series.
MAX_SLICES = 32


def slice_statistics(raw_slices: np.ndarray, normalised: np.ndarray | None = None,
                     method: str = "p99") -> dict[str, np.ndarray]:
    """Per-slice statistics of raw T2w slices (N, H, W), computed on their normalised images inside the body.

    ``method``: the model's input normalisation (``normalise_t2w``'s); ``normalised``: ``normalise_t2w(raw_slices,
    method)`` when the caller has it already (prediction does). "Bright" is relative to where the method puts its
    reference tissue, so the statistic means the same under either."""
    raw = np.asarray(raw_slices, dtype=np.float32)
    if raw.ndim == 2:
        raw = raw[None]
    normalised = (normalise_t2w(raw, method) if normalised is None
                  else np.asarray(normalised, dtype=np.float32).reshape(raw.shape))
    bright = BRIGHT * reference_level(method)
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
        out["bright_fraction"][k] = np.mean(values > bright)
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


def outside_training_range(raw_slices: np.ndarray, ranges: Mapping[str, Sequence[float]] | None,
                           normalised: np.ndarray | None = None, method: str = "p99") -> str | None:
    """One line naming the statistics of a scan (medians over its slices) outside the training ranges; None if
    every one is inside, or the checkpoint recorded no ranges (weights made before this check existed).
    ``normalised``: the slices already normalised (``normalise_t2w`` with the model's ``method``), so that they
    are not normalised twice."""
    if not ranges:
        return None
    statistics = slice_statistics(sample_slices(raw_slices), None if normalised is None else sample_slices(normalised),
                                  method)
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


#: Principal components of the training features kept as separate axes; the rest is one residual term.
FEATURE_COMPONENTS = 16
#: Training slices' distance percentile above which a slice is named as unlike them.
FEATURE_PERCENTILE = 99.0
#: A scan is flagged when more than this share of its slices lies beyond that percentile (1 % of training slices do).
FLAGGED_SHARE = 0.1


class FeatureRecorder:
    """Collects per-slice bottleneck features while a U-Net predicts (a forward hook: no extra pass).

    ``with FeatureRecorder(model) as recorder:`` registers the hook; each forward leaves its batch's features in
    ``pending`` and the batch loop keeps them with :meth:`keep` once the batch has succeeded (a batch that ran
    out of memory is retried smaller and must not count twice). Models without a U-Net encoder record nothing.
    """

    def __init__(self, model: Any) -> None:
        encoders = getattr(model, "encoders", None)
        self._layer = encoders[-1] if encoders is not None and len(encoders) else None
        self._handle = None
        self.pending: np.ndarray | None = None
        self.kept: list[np.ndarray] = []

    def __enter__(self) -> FeatureRecorder:
        if self._layer is not None:
            self._handle = self._layer.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _hook(self, module: Any, inputs: Any, output: torch.Tensor) -> None:
        self.pending = pooled_features(output)

    def keep(self) -> None:
        if self.pending is not None:
            self.kept.append(self.pending)
            self.pending = None

    def features(self) -> np.ndarray | None:
        """(N, 2C) features of the slices predicted so far, in order; None if the model has no encoder."""
        return np.concatenate(self.kept) if self.kept else None


def pooled_features(bottleneck: torch.Tensor) -> np.ndarray:
    """(B, C, h, w) bottleneck activations -> (B, 2C) float64: each channel's mean and SD over the slice."""
    flat = bottleneck.detach().float().flatten(2)
    return np.concatenate([flat.mean(2).cpu().numpy(), flat.std(2).cpu().numpy()], axis=1).astype(np.float64)


def feature_statistics(features: np.ndarray, components: int = FEATURE_COMPONENTS) -> dict[str, Any]:
    """What a checkpoint records of its training slices' features (JSON-able): centre, scale, leading principal
    axes with their variances, the mean variance of the rest, and the distance percentile that names a slice."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 4:
        raise ValueError("feature statistics need (N, D) features of at least 4 slices")
    mean = features.mean(0)
    scale = features.std(0) + 1e-6
    z = (features - mean) / scale
    _, singular, axes = np.linalg.svd(z, full_matrices=False)
    variances = singular**2 / (len(z) - 1)
    k = min(components, len(variances) - 1, len(features) - 2)  # leave the residual term something to hold
    recorded = {"mean": mean.tolist(), "scale": scale.tolist(), "axes": axes[:k].tolist(),
                "variances": variances[:k].tolist(), "residual_variance": float(max(variances[k:].mean(), 1e-12)),
                "slices": int(len(features)), "percentile": FEATURE_PERCENTILE}
    recorded["threshold"] = float(np.percentile(feature_distance(features, recorded), FEATURE_PERCENTILE))
    return recorded


def feature_distance(features: np.ndarray, recorded: Mapping[str, Any]) -> np.ndarray:
    """Per-slice distance of (N, D) features from the recorded training features (about 1 for a training slice)."""
    z = (np.asarray(features, dtype=np.float64) - np.asarray(recorded["mean"])) / np.asarray(recorded["scale"])
    axes = np.asarray(recorded["axes"])
    projected = z @ axes.T
    residual = np.maximum((z**2).sum(1) - (projected**2).sum(1), 0.0)
    squared = (projected**2 / np.asarray(recorded["variances"])).sum(1) + residual / recorded["residual_variance"]
    return np.sqrt(squared / z.shape[1])


def unlike_training(distances: np.ndarray | None, slice_indices: Sequence[int],
                    recorded: Mapping[str, Any] | None) -> str | None:
    """One line naming the slices whose features lie beyond the training slices' percentile, when more than
    :data:`FLAGGED_SHARE` of the scan's slices do; None otherwise or without recorded features."""
    if distances is None or not recorded or not len(distances):
        return None
    beyond = [int(index) for index, d in zip(slice_indices, distances, strict=True) if d > recorded["threshold"]]
    if len(beyond) <= FLAGGED_SHARE * len(distances):
        return None
    reason = f"feature distance above their {recorded['percentile']:g}th percentile"
    if len(beyond) == len(distances):
        return f"to the model, all {len(beyond)} slices look unlike its training slices ({reason}); read them with caution"
    shown = ", ".join(str(i) for i in beyond[:8]) + (", ..." if len(beyond) > 8 else "")
    return (f"to the model, {len(beyond)} of {len(distances)} slices look unlike its training slices (slices "
            f"{shown}; {reason}); read them with caution")
