"""Evaluation metrics: body mask, per-image MAE ± SD over images, pooled Pearson r."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import evaluation_mask, image_metrics, pearson_r, summarise


def phantom(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    raw = np.zeros((32, 32))
    raw[8:24, 8:24] = rng.uniform(200, 1000, (16, 16))
    raw[14:18, 14:18] = 0  # a dark vessel inside the body still counts
    truth = np.where(raw > 0, raw / 1000, 0)
    truth[14:18, 14:18] = 0.0
    prediction = np.clip(truth + rng.normal(0, 0.05, truth.shape), 0, 1)
    return prediction, truth, raw


def test_mask_fills_holes_and_excludes_air():
    _, _, raw = phantom(0)
    mask = evaluation_mask(raw)
    assert mask.sum() == 16 * 16 and mask[15, 15] and not mask[0, 0]


def test_summary_matches_direct_computation():
    images = [phantom(seed) for seed in range(4)]
    per_image = [image_metrics(*image) for image in images]
    summary = summarise(per_image)
    body = [evaluation_mask(raw) for _, _, raw in images]
    maes = [np.abs(p - t)[m].mean() for (p, t, _), m in zip(images, body, strict=True)]
    assert np.isclose(summary["mae"], np.mean(maes)) and np.isclose(summary["mae_sd"], np.std(maes, ddof=1))
    pooled_p = np.concatenate([p[m] for (p, _, _), m in zip(images, body, strict=True)])
    pooled_t = np.concatenate([t[m] for (_, t, _), m in zip(images, body, strict=True)])
    assert np.isclose(summary["r"], np.corrcoef(pooled_p, pooled_t)[0, 1])
    full_p = np.concatenate([p.ravel() for p, _, _ in images])
    full_t = np.concatenate([t.ravel() for _, t, _ in images])
    assert np.isclose(summary["r_full"], np.corrcoef(full_p, full_t)[0, 1])
    assert summary["mae_full"] < summary["mae"]  # air, predicted exactly, dilutes the whole-image MAE


def test_empty_images_are_skipped():
    empty = np.zeros((8, 8))
    summary = summarise([image_metrics(empty, empty, empty)])
    assert summary["images"] == 0 and np.isnan(summary["mae"])


def test_psnr_and_ssim_known_answers():
    from training.metrics import ssim_psnr

    rng = np.random.default_rng(0)
    truth = rng.uniform(0.0, 0.8, (32, 32))
    mask = np.ones_like(truth, dtype=bool)
    ssim, psnr = ssim_psnr(truth + 0.1, truth, mask)  # a constant error of 0.1: MSE 0.01 -> 20 dB exactly
    assert psnr == pytest.approx(20.0, abs=1e-9)
    assert ssim_psnr(truth, truth, mask) == (pytest.approx(1.0), float("inf"))
    mild, strong = (ssim_psnr(np.clip(truth + rng.normal(0, sd, truth.shape), 0, 1), truth, mask)[0]
                    for sd in (0.02, 0.2))
    assert 1.0 > mild > strong
    assert np.isnan(ssim_psnr(truth[:5, :5], truth[:5, :5], mask[:5, :5])[0])  # smaller than a 7 x 7 window


def test_pearson_r_matches_scipy_and_is_nan_without_a_warning_where_undefined():
    import warnings

    from scipy.stats import pearsonr

    a, b = np.array([0.1, 0.4, 0.2, 0.9]), np.array([0.0, 0.5, 0.1, 0.7])
    assert pearson_r(a, b) == pytest.approx(pearsonr(a, b).statistic)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(pearson_r(a, np.full(4, 0.3))) and np.isnan(pearson_r([0.2], [0.1]))
