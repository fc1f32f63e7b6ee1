"""Image-level metrics shared by validation, evaluation and the paper's table.

Metrics are computed inside the body (T2w body mask with holes filled, so dark vessels and cortical bone
count), never over the air around it, which would inflate r for every model alike. MAE ± SD is the mean and SD
over images of the per-image MAE (the referee's question: over images, not pixels); r is Pearson's r pooled over
all body pixels of all images, and also given per image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from napari_sff.preprocess import body_mask


def evaluation_mask(raw_t2w: np.ndarray) -> np.ndarray:
    """Body pixels of one 2D slice: thresholded T2w with holes filled."""
    return ndimage.binary_fill_holes(body_mask(raw_t2w))


def image_metrics(prediction: np.ndarray, truth: np.ndarray, raw_t2w: np.ndarray) -> dict:
    """MAE, Pearson r and the sums needed to pool r, for one 2D image inside its body mask."""
    mask = evaluation_mask(raw_t2w)
    p, t = prediction[mask].astype(np.float64), truth[mask].astype(np.float64)
    n = int(mask.sum())
    if n == 0:
        return {"n": 0, "mae": np.nan, "r": np.nan, "sums": np.zeros(6)}
    r = float(np.corrcoef(p, t)[0, 1]) if n > 1 and p.std() > 0 and t.std() > 0 else np.nan
    sums = np.array([n, p.sum(), t.sum(), (p * p).sum(), (t * t).sum(), (p * t).sum()])
    return {"n": n, "mae": float(np.abs(p - t).mean()), "r": r, "sums": sums}


def pooled_r(sums: np.ndarray) -> float:
    n, sp, st, spp, stt, spt = sums
    cov = spt - sp * st / n
    var_p, var_t = spp - sp * sp / n, stt - st * st / n
    return float(cov / np.sqrt(var_p * var_t)) if var_p > 0 and var_t > 0 else float("nan")


def summarise(per_image: Sequence[dict]) -> dict:
    """Mean ± SD of per-image MAE, pooled r and mean per-image r over images with body pixels."""
    used = [m for m in per_image if m["n"] > 0]
    if not used:
        return {"images": 0, "mae": float("nan"), "mae_sd": float("nan"), "r": float("nan"),
                "r_image_mean": float("nan")}
    maes = np.array([m["mae"] for m in used])
    rs = np.array([m["r"] for m in used])
    return {
        "images": len(used),
        "mae": float(maes.mean()),
        "mae_sd": float(maes.std(ddof=1)) if len(maes) > 1 else 0.0,
        "r": pooled_r(np.sum([m["sums"] for m in used], axis=0)),
        "r_image_mean": float(np.nanmean(rs)) if np.isfinite(rs).any() else float("nan"),
    }
