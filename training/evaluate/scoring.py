"""Running a model on the images and scoring its maps: per-image metrics and their summary, the timed batched
prediction, the U-Net's feature distance against image error, and the paired test that compares two models."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from napari_sff.inference import load_model, predict_slices
from training.metrics import image_metrics, summarise


def score(predicted: np.ndarray, truth: np.ndarray, raw: np.ndarray) -> tuple[dict, np.ndarray]:
    per_image = [image_metrics(p, t, r) for p, t, r in zip(predicted, truth, raw, strict=True)]
    return summarise(per_image), np.array([m["mae"] for m in per_image])


def run_model(arch: str, weights: str, raw: np.ndarray, *, device, batch_size: int, ddim_steps: int = 50,
              samples: int = 1, seed: int = 0, features=None, mirror: bool = True,
              precision: str | None = None) -> tuple[np.ndarray, float]:
    """Predictions and ms/image (one warm-up batch excluded from the timing); ``features`` (a
    :class:`napari_sff.domain.FeatureRecorder` on the loaded model) keeps the timed pass's features; ``precision``
    overrides the run's (``--precision``)."""
    import time

    import torch

    model, _ = load_model(arch, weights, device)
    predict_slices(model, raw[:batch_size], device=device, batch_size=batch_size, ddim_steps=min(ddim_steps, 2),
                   mirror=mirror, precision=precision)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    predicted, _ = predict_slices(model, raw, device=device, batch_size=batch_size, ddim_steps=ddim_steps,
                                  samples=samples, seed=seed, features=features, mirror=mirror, precision=precision)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return predicted, 1000.0 * (time.perf_counter() - started) / max(1, len(raw))


def feature_check(model, features: np.ndarray | None, image_maes: np.ndarray, cases: Sequence[str]) -> dict | None:
    """How the U-Net's per-slice feature distance (:mod:`napari_sff.domain`, what predict warns with) relates to
    each image's MAE, and which cases predict would flag; None for weights that record no training features."""
    from napari_sff.domain import feature_distance, unlike_training

    recorded = getattr(model, "feature_statistics", None)
    if not recorded or features is None:
        return None
    distances = feature_distance(features, recorded)
    cases = np.asarray(cases)
    flagged = sorted(str(case) for case in np.unique(cases)
                     if unlike_training(distances[cases == case], np.flatnonzero(cases == case), recorded))
    near = distances <= np.median(distances)
    rho, p = stats.spearmanr(distances, image_maes)
    case_names = list(dict.fromkeys(cases))
    case_rho = (stats.spearmanr([np.median(distances[cases == c]) for c in case_names],
                                [np.mean(image_maes[cases == c]) for c in case_names])[0]
                if len(case_names) > 2 else None)
    return {"threshold": recorded["threshold"], "training_slices": recorded["slices"], "images": int(len(distances)),
            "median_distance": float(np.median(distances)),
            "images_beyond_threshold": float(np.mean(distances > recorded["threshold"])),
            "cases": len(case_names), "cases_flagged": flagged,
            "spearman_distance_vs_image_mae": float(rho), "spearman_p": float(p),
            "spearman_case_median_distance_vs_case_mae": None if case_rho is None else float(case_rho),
            "mae_nearer_half": float(image_maes[near].mean()), "mae_farther_half": float(image_maes[~near].mean())}


def paired_test(a: np.ndarray, b: np.ndarray) -> dict:
    """Wilcoxon signed-rank test on paired per-image MAEs (two-sided), with the median difference."""
    finite = np.isfinite(a) & np.isfinite(b)
    a, b = a[finite], b[finite]
    if len(a) < 2 or np.all(a == b):
        return {"n": int(len(a)), "median_difference": float(np.median(a - b)) if len(a) else float("nan"),
                "p_value": float("nan")}
    result = stats.wilcoxon(a, b)
    return {"n": int(len(a)), "median_difference": float(np.median(a - b)), "statistic": float(result.statistic),
            "p_value": float(result.pvalue)}
