"""Would a monotone recalibration of the U-Net's output carry over? Fit one on simulated volumes, score it on others.

    python -m training.recalibration --fit SIMULATED_DIR --score PHANTOM_DIR [PHANTOM_DIR ...] [--out JSON]

The shipped U-Net's errors look like shrinkage towards the middle (model card, section 1b: healthy muscle read
fattier, fat and marrow leaner). A monotone map of its output, ``SFF -> E[truth | SFF]`` over body voxels
(binned means made increasing by isotonic regression), fitted on the simulator's volumes, would undo shrinkage
that the simulator shares with other data. Scored on folders of the independent phantoms (``<case>_labels`` and
``<case>_tissues``, as ``python -m training.phantoms`` writes them): per-slice body MAE with and without the map
(paired Wilcoxon) and the |error| of muscle ROI means (labels mostly muscle tissue), every volume predicted as
``napari-sff predict`` does (native grid, with the mirror). An experiment for the model card, not a part of
prediction.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

#: Bins of the predicted SFF over [0, 1] whose mean truth the curve follows.
BINS = 100


def fit_curve(predicted: np.ndarray, truth: np.ndarray, bins: int = BINS) -> tuple[np.ndarray, np.ndarray]:
    """The increasing curve through the mean truth of each bin of ``predicted`` (empty bins left out), weighted
    by the bins' counts: (bin centres, curve values)."""
    from scipy.optimize import isotonic_regression

    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(np.clip(predicted, 0, 1), edges) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    sums = np.bincount(index, weights=truth, minlength=bins)
    kept = counts > 0
    centres = (edges[:-1] + edges[1:]) / 2
    curve = isotonic_regression(sums[kept] / counts[kept], weights=counts[kept], increasing=True).x
    return centres[kept], curve


def apply_curve(values: np.ndarray, curve: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``values`` through the curve (linear between bin centres, constant beyond the ends)."""
    return np.interp(values, *curve).astype(np.float32)


def predicted_volumes(folder: Path, weights: str | None, most: int | None = None) -> Iterator[dict]:
    """Each case of ``folder``: its slices along the predicted axis (T2w-derived body mask, truth, the U-Net's
    SFF), the axis, and the case name."""
    from napari_sff import io
    from napari_sff.inference import choose_slice_axis, load_model, predict_volume
    from training.metrics import evaluation_mask

    model, _ = load_model("unet", weights, "cpu")
    for path in sorted(folder.glob("*_t2w.nii*"))[:most]:
        case = path.name.split("_t2w.nii")[0]
        t2w = io.read_nifti(path)
        truth = io.read_nifti(next(folder.glob(f"{case}_sff.nii*"))).array
        axis = choose_slice_axis(t2w.spacing)
        predicted = predict_volume(t2w.array, t2w.spacing, "unet", model=model, device="cpu", mirror=True).sff
        raw = np.moveaxis(t2w.array, axis, 0)
        yield {"case": case, "axis": axis, "mask": np.stack([evaluation_mask(s) for s in raw]),
               "truth": np.clip(np.moveaxis(truth, axis, 0), 0, 1), "predicted": np.moveaxis(predicted, axis, 0)}


def score_folder(folder: Path, curve: tuple[np.ndarray, np.ndarray], weights: str | None,
                 most: int | None = None) -> dict:
    """Per-slice body MAE and muscle ROI-mean |error|, without and with the curve, over ``folder``'s cases."""
    from scipy.stats import wilcoxon

    from napari_sff import io
    from napari_sff.io.label_names import read_label_names
    from napari_sff.stats import roi_table
    from training.volume_checks import muscle_labels

    slice_mae: dict[str, list[float]] = {"plain": [], "recalibrated": []}
    roi_error: dict[str, list[float]] = {"plain": [], "recalibrated": []}
    for volume in predicted_volumes(folder, weights, most):
        maps = {"truth": volume["truth"], "plain": volume["predicted"],
                "recalibrated": apply_curve(volume["predicted"], curve)}
        for index, body in enumerate(volume["mask"]):
            if body.any():
                for name in slice_mae:
                    slice_mae[name].append(float(np.abs(maps[name][index][body] - maps["truth"][index][body]).mean()))
        case, axis = volume["case"], volume["axis"]
        labels = np.moveaxis(io.read_nifti(next(folder.glob(f"{case}_labels.nii*"))).array.astype(np.int32), axis, 0)
        tissues = np.moveaxis(io.read_nifti(next(folder.glob(f"{case}_tissues.nii*"))).array, axis, 0)
        muscles = muscle_labels(labels, tissues, read_label_names(folder / f"{case}_tissues.json"))
        means: dict[int, dict[str, float]] = {}
        for row in roi_table(maps, labels, (1.0, 1.0, 1.0)):  # means only: the voxel size does not matter
            if row.label in muscles:
                means.setdefault(row.label, {})[row.source] = row.mean
        for mean in means.values():
            for name in roi_error:
                roi_error[name].append(abs(mean[name] - mean["truth"]))
    test = wilcoxon(slice_mae["recalibrated"], slice_mae["plain"])
    return {"folder": str(folder), "slices": len(slice_mae["plain"]), "muscle_rois": len(roi_error["plain"]),
            "body_mae": {name: float(np.mean(v)) for name, v in slice_mae.items()},
            "body_mae_wilcoxon_p": float(test.pvalue),
            "muscle_roi_mean_abs_error_pp": {name: 100 * float(np.mean(v)) for name, v in roi_error.items()}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.recalibration", description=__doc__.splitlines()[0])
    parser.add_argument("--fit", type=Path, required=True, help="simulated pairs (napari-sff simulate) to fit on")
    parser.add_argument("--score", type=Path, nargs="+", required=True, help="phantom folders to score on")
    parser.add_argument("--weights", help="U-Net weights (default: the shipped ones)")
    parser.add_argument("--max-cases", type=int, help="at most this many cases of each folder")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    fitted = [(v["predicted"][v["mask"]], v["truth"][v["mask"]])
              for v in predicted_volumes(args.fit, args.weights, args.max_cases)]
    curve = fit_curve(np.concatenate([p for p, _ in fitted]), np.concatenate([t for _, t in fitted]))
    results = {"fitted_on": str(args.fit), "cases_fitted": len(fitted),
               "curve": {"predicted": curve[0].round(4).tolist(), "truth": curve[1].round(4).tolist()},
               "scores": [score_folder(folder, curve, args.weights, args.max_cases) for folder in args.score]}
    for score in results["scores"]:
        mae, roi = score["body_mae"], score["muscle_roi_mean_abs_error_pp"]
        print(f"{score['folder']}: {score['slices']} slices, body MAE {mae['plain']:.4f} -> recalibrated "
              f"{mae['recalibrated']:.4f} (paired Wilcoxon p = {score['body_mae_wilcoxon_p']:.2g}); "
              f"{score['muscle_rois']} muscle ROI means |error| {roi['plain']:.2f} -> {roi['recalibrated']:.2f} pp")
    if args.out:
        from napari_sff.io.atomic import atomic_write_text

        atomic_write_text(args.out, json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
