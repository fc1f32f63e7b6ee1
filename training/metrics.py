"""Image-level metrics shared by validation, evaluation and the paper's table.

Metrics are computed inside the body (T2w body mask with holes filled, so dark vessels and cortical bone
count), never over the air around it, which would inflate r for every model alike. MAE ± SD is the mean and SD
over images of the per-image MAE (the referee's question: over images, not pixels); r is Pearson's r pooled over
all body pixels of all images, and also given per image. The same numbers over whole images (air included) are
reported beside them as ``*_full``, because the paper does not say which it used and air, predicted as 0 by
every model, lowers MAE and raises r. SSIM (scikit-image, 7 x 7 windows, data range 1) is the mean of its map
inside the body, PSNR is 10 log10(1 / MSE) over body pixels (SFF spans 0..1); both are given per image and as
mean ± SD over images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from napari_sff.preprocess import body_mask


def evaluation_mask(raw_t2w: np.ndarray) -> np.ndarray:
    """Body pixels of one 2D slice: thresholded T2w with holes filled."""
    return ndimage.binary_fill_holes(body_mask(raw_t2w))


def pearson_r(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of paired values; NaN where it is undefined (fewer than two, or either side constant)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _pixel_metrics(p: np.ndarray, t: np.ndarray) -> tuple[float, float, np.ndarray]:
    """MAE, Pearson r and the sums that pool r across images, for paired pixel vectors."""
    n = p.size
    if n == 0:
        return np.nan, np.nan, np.zeros(6)
    r = pearson_r(p, t)
    sums = np.array([n, p.sum(), t.sum(), (p * p).sum(), (t * t).sum(), (p * t).sum()])
    return float(np.abs(p - t).mean()), r, sums


def ssim_psnr(prediction: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(SSIM averaged over ``mask``, PSNR in dB over ``mask``) of a 2D SFF image; NaN where undefined."""
    from skimage.metrics import structural_similarity

    if not mask.any():
        return float("nan"), float("nan")
    mse = float(np.mean((prediction[mask] - truth[mask]) ** 2))
    psnr = float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))
    if min(prediction.shape) < 7:  # smaller than one SSIM window
        return float("nan"), psnr
    _, ssim_map = structural_similarity(truth, prediction, data_range=1.0, full=True)
    return float(ssim_map[mask].mean()), psnr


def image_metrics(prediction: np.ndarray, truth: np.ndarray, raw_t2w: np.ndarray) -> dict:
    """Metrics of one 2D image inside its body mask, and over the whole image (``*_full``)."""
    mask = evaluation_mask(raw_t2w)
    p, t = prediction.astype(np.float64), truth.astype(np.float64)
    mae, r, sums = _pixel_metrics(p[mask], t[mask])
    mae_full, r_full, sums_full = _pixel_metrics(p.ravel(), t.ravel())
    ssim, psnr = ssim_psnr(p, t, mask)
    return {"n": int(mask.sum()), "mae": mae, "r": r, "sums": sums, "ssim": ssim, "psnr": psnr,
            "mae_full": mae_full, "r_full": r_full, "sums_full": sums_full}


def pooled_r(sums: np.ndarray) -> float:
    n, sp, st, spp, stt, spt = sums
    cov = spt - sp * st / n
    var_p, var_t = spp - sp * sp / n, stt - st * st / n
    return float(cov / np.sqrt(var_p * var_t)) if var_p > 0 and var_t > 0 else float("nan")


def summarise(per_image: Sequence[dict]) -> dict:
    """Mean ± SD of per-image MAE, pooled r and mean per-image r over images with body pixels."""
    used = [m for m in per_image if m["n"] > 0]
    nan = float("nan")
    if not used:
        return {"images": 0, "mae": nan, "mae_sd": nan, "r": nan, "r_image_mean": nan, "mae_full": nan,
                "mae_full_sd": nan, "r_full": nan, "ssim": nan, "ssim_sd": nan, "psnr": nan, "psnr_sd": nan}
    maes = np.array([m["mae"] for m in used])
    maes_full = np.array([m["mae_full"] for m in used])
    rs = np.array([m["r"] for m in used])
    return {
        "images": len(used),
        "mae": float(maes.mean()),
        "mae_sd": float(maes.std(ddof=1)) if len(maes) > 1 else 0.0,
        "r": pooled_r(np.sum([m["sums"] for m in used], axis=0)),
        "r_image_mean": float(np.nanmean(rs)) if np.isfinite(rs).any() else nan,
        "mae_full": float(maes_full.mean()),
        "mae_full_sd": float(maes_full.std(ddof=1)) if len(maes_full) > 1 else 0.0,
        "r_full": pooled_r(np.sum([m["sums_full"] for m in used], axis=0)),
        **_mean_sd("ssim", [m.get("ssim", nan) for m in used]),
        **_mean_sd("psnr", [m.get("psnr", nan) for m in used]),
    }


def _mean_sd(name: str, values: Sequence[float]) -> dict:
    """Mean and SD over the images where the value is finite (an exact prediction has an infinite PSNR)."""
    finite = np.array([v for v in values if np.isfinite(v)], dtype=np.float64)
    nan = float("nan")
    return {name: float(finite.mean()) if finite.size else nan,
            f"{name}_sd": float(finite.std(ddof=1)) if finite.size > 1 else nan}
