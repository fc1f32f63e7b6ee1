"""Agreement of paired ROI means: Bland-Altman bias and limits, ICC(A,1)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# --------------------------------------------------------------------------------------------
# Agreement statistics
# --------------------------------------------------------------------------------------------


def bland_altman(
    pred_means: Sequence[float] | np.ndarray, ref_means: Sequence[float] | np.ndarray
) -> dict[str, float]:
    """Bias and 95% limits of agreement (bias +- 1.96 SD, sample SD) of paired ROI means.

    Pairs with a non-finite member are dropped; ``n`` is the number of pairs used.  Returns
    ``{"bias", "sd", "loa_low", "loa_high", "n"}`` in the units of the inputs.
    """
    pred = np.asarray(pred_means, dtype=np.float64).ravel()
    ref = np.asarray(ref_means, dtype=np.float64).ravel()
    if pred.shape != ref.shape:
        raise ValueError(f"need paired values, got {pred.size} predictions and {ref.size} references")
    diff = (pred - ref)[np.isfinite(pred) & np.isfinite(ref)]
    n = int(diff.size)
    bias = float(diff.mean()) if n else math.nan
    sd = float(diff.std(ddof=1)) if n > 1 else math.nan
    return {"bias": bias, "sd": sd, "loa_low": bias - 1.96 * sd, "loa_high": bias + 1.96 * sd, "n": n}


def icc_absolute_agreement(ratings: Sequence[Sequence[float]] | np.ndarray) -> float:
    """ICC(A,1): two-way random effects, absolute agreement, single measurement (Shrout & Fleiss ICC(2,1)).

    ``ratings`` is (targets, raters), e.g. ROI means x (prediction, reference). Targets with a non-finite rating
    are dropped. Absolute agreement, not consistency: a constant bias between the raters lowers it.
    """
    x = np.asarray(ratings, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"need a (targets, raters) table with >= 2 raters, got shape {x.shape}")
    x = x[np.all(np.isfinite(x), axis=1)]
    n, k = x.shape
    if n < 2:
        return math.nan
    grand = x.mean()
    ms_rows = k * ((x.mean(axis=1) - grand) ** 2).sum() / (n - 1)
    ms_cols = n * ((x.mean(axis=0) - grand) ** 2).sum() / (k - 1)
    residual = x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + grand
    ms_error = (residual ** 2).sum() / ((n - 1) * (k - 1))
    denominator = ms_rows + (k - 1) * ms_error + k * (ms_cols - ms_error) / n
    return float((ms_rows - ms_error) / denominator) if denominator > 0 else math.nan
