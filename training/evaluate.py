"""Evaluate identity, U-Net and DDPM on held-out slices: the paper's table, per-image statistics, paired tests.

    python -m training.evaluate --data runs/unet/cache --unet napari_sff/weights/unet.safetensors \\
        --ddpm napari_sff/weights/ddpm.safetensors --ablation 1,5,10,25,50 --out report.json --markdown report.md

Answers the referee: MAE ± SD is over images; r is pooled over body pixels (and its per-image mean is given);
U-Net vs DDPM (and each vs identity) get a paired Wilcoxon signed-rank test on per-image MAE; ``--ablation``
adds a DDIM-steps sweep for the DDPM. ms/image is wall time of batched inference on the chosen device
divided by the number of images (``--batch-size``, default 1 as a per-image latency). ``--robustness`` scores
every model again on the same images as a scanner or an export could change them (another orientation, more
noise, a stronger bias field, 8-bit storage), none of which the simulator itself produces. ``--rois`` answers
what the ROI widget is for: whole test volumes are predicted and every labelled muscle's mean SFF is compared
with the truth (MAE of ROI means, Pearson r, Bland-Altman bias and limits of agreement); ``--tissues`` breaks
the error of those volumes down by tissue class (:mod:`training.volume_checks`). ``--spacing-check N``
simulates N fresh cases at coarser and finer pixel spacings than trained and scores each model on the input
grid and with ``predict_volume``'s resampling into its training range. The U-Net predicts as ``napari-sff
predict`` does by default, each map the mean of the slice's and its mirror image's (``--no-mirror``: one pass);
with the mirror the same weights are also scored in one pass, paired on the same images.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import stats

from napari_sff.inference import load_model, predict_slices, predict_volume, resolve_device
from napari_sff.inference.devices import PRECISIONS
from napari_sff.io import atomic_write_text
from training.data import CACHE_INFO, Augmentation, SliceDataset, build_slice_cache
from training.metrics import evaluation_mask, image_metrics, summarise
from training.volume_checks import (
    CORE_RIM,
    MUSCLE_ROI_SHARE,
    identity_prediction,
    tissue_markdown,
    volume_checks,
)


def as_cache(data: str, size: int = 256) -> Path:
    """``data`` if it is a slice cache, else a cache of the folder of pairs ``data`` (NIfTI or DICOM, SFF or
    fat + water, any grids: see :mod:`training.data`) made on the fly."""
    path = Path(data)
    if not (path / CACHE_INFO).exists():
        path = build_slice_cache(path, Path(tempfile.mkdtemp(prefix="napari-sff-eval-")), size=size)
    return path


def evenly_spaced(total: int, most: int | None) -> np.ndarray:
    """Indices of at most ``most`` of ``total`` images spread evenly (all when ``most`` is None): every case of a
    split is represented, not only the first ones."""
    count = total if most is None else min(total, most)
    return np.linspace(0, total - 1, count).astype(int) if count else np.array([], int)


def load_split(data: str, split: str, max_images: int | None, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Raw T2w and true SFF slices of one split (a cache, or a NIfTI folder cached on the fly)."""
    dataset = SliceDataset(as_cache(data, size), split)
    indices = evenly_spaced(len(dataset), max_images)
    return np.asarray(dataset.t2w[indices]), np.asarray(dataset.sff[indices])


def split_cases(cache: Path, split: str, max_images: int | None) -> list[str]:
    """The case of each image :func:`load_split` returns, in its order."""
    index = json.loads((cache / CACHE_INFO).read_text())["splits"][split]["index"]
    return [index[i][0] for i in evenly_spaced(len(index), max_images)]


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


def _other_orientation(raw: np.ndarray, truth: np.ndarray, rng: np.random.Generator):
    return raw.T[::-1].copy(), truth.T[::-1].copy()


def _eight_bit(raw: np.ndarray, truth: np.ndarray, rng: np.random.Generator):
    """Rescaled so that the brightest pixel is 255, then rounded: what an 8-bit export keeps."""
    return np.rint(raw * (255.0 / max(float(raw.max()), 1e-6))), truth


def _intensity_only(**changes) -> Augmentation:
    """An Augmentation that changes nothing but ``changes`` (no geometry, gamma, bias, noise or scale)."""
    neutral = {"crop": None, "flip_lr": 0.0, "flip_ud": 0.0, "transpose": 0.0, "rotate_deg": 0.0, "zoom": (1.0, 1.0),
               "gamma": (1.0, 1.0), "bias": 0.0, "noise": (0.0, 0.0), "scale": (1.0, 1.0)}
    return Augmentation(**{**neutral, **changes})


#: Perturbations for ``--robustness``: (raw T2w slice, true SFF, rng) -> the same pair as it might arrive.
PERTURBATIONS = {
    "none": lambda raw, truth, rng: (raw, truth),  # the reference row, scored the same way
    "other orientation (transposed, flipped)": _other_orientation,
    "extra Rician noise, SD 3 % of the 99th percentile": _intensity_only(noise=(0.03, 0.03)),
    "extra bias field, up to ±40 %": _intensity_only(bias=0.8),
    "8-bit storage (brightest pixel = 255)": _eight_bit,
}


def perturb(raw: np.ndarray, truth: np.ndarray, name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Apply perturbation ``name`` to every slice pair (N, H, W); seeded per slice, so reruns agree."""
    pairs = [PERTURBATIONS[name](r, t, np.random.default_rng((seed, i))) for i, (r, t) in
             enumerate(zip(raw, truth, strict=True))]
    return (np.stack([p[0] for p in pairs]).astype(np.float32), np.stack([p[1] for p in pairs]).astype(np.float32))


def robustness_rows(raw: np.ndarray, truth: np.ndarray, models: dict[str, tuple[str, int]], *, device,
                    batch_size: int, seed: int = 0, ddpm_max_images: int | None = None,
                    unperturbed: dict[str, dict] | None = None, mirror: bool = True) -> list[dict]:
    """Identity and every model of ``models`` (name -> (weights, DDIM steps)) scored on each perturbation.

    ``unperturbed`` (name -> score) holds scores already measured on these very images with the same settings;
    the "none" row takes them instead of running those models again.
    """
    unperturbed = unperturbed or {}
    rows = []
    for name in PERTURBATIONS:
        changed_raw, changed_truth = perturb(raw, truth, name, seed)
        row = {"perturbation": name, "identity": score(identity_prediction(changed_raw), changed_truth, changed_raw)[0]}
        for arch, (weights, steps) in models.items():
            if name == "none" and arch in unperturbed:
                row[arch] = unperturbed[arch]
                continue
            index = evenly_spaced(len(raw), ddpm_max_images if arch == "ddpm" else None)
            predicted, _ = run_model(arch, weights, changed_raw[index], device=device, batch_size=batch_size,
                                     ddim_steps=steps, seed=seed, mirror=mirror)
            row[arch] = score(predicted, changed_truth[index], changed_raw[index])[0]
        rows.append(row)
    return rows


# In-plane matrix sizes of the spacing check: the simulator's field of view over 160, 256 and 512 pixels gives
# pixels of about 1.7-3.1, 1-2 (as trained) and 0.5-1 mm (a typical high-resolution clinical scan).
SPACING_CHECK_SIZES = (160, 256, 512)


def spacing_rows(models: dict[str, tuple[str, int]], *, cases: int, device, batch_size: int, seed: int = 0,
                 sizes: Sequence[int] = SPACING_CHECK_SIZES, n_slices: int = 3, mirror: bool = True) -> list[dict]:
    """Fresh simulated cases at several pixel spacings: every model predicted on the native grid and resampled.

    ``models`` maps a model name to (weights, DDIM steps). The cases come from ``simulate_cases(cases, seed)``
    at each matrix size (the same patients at each size); "native" predicts on the input grid
    (``resample=False``), "resampled" lets ``predict_volume`` move the pixels into the model's training range.
    """
    from napari_sff.simulate import simulate_cases

    loaded = {name: load_model(name, weights, device)[0] for name, (weights, _) in models.items()}
    rows = []
    for size in sizes:
        per_image: dict[str, list[dict]] = {"identity": []}
        spacings = []
        for case in simulate_cases(cases, seed=seed, size=size, n_slices=n_slices):
            spacings.append(case.spacing[1])
            truth, raw = case.sff, case.t2w
            per_image["identity"] += [image_metrics(p, t, r) for p, t, r in
                                      zip(identity_prediction(raw), truth, raw, strict=True)]
            for name, model in loaded.items():
                for resample in (False, True):
                    predicted = predict_volume(raw, case.spacing, name, model=model, device=str(device),
                                               slice_axis=0, batch_size=batch_size, ddim_steps=models[name][1],
                                               seed=seed, resample=resample, mirror=mirror).sff
                    per_image.setdefault(f"{name}_{'resampled' if resample else 'native'}", []).extend(
                        image_metrics(p, t, r) for p, t, r in zip(predicted, truth, raw, strict=True))
        rows.append({"size": size, "spacing_mm": [float(min(spacings)), float(max(spacings))],
                     **{name: summarise(values) for name, values in per_image.items()}})
    return rows


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


def _precision_used(args: argparse.Namespace, device) -> str:
    """The precision the models ran in: the one asked for, else the U-Net's (or DDPM's) settings on ``device``."""
    from napari_sff.inference.settings import run_settings

    if getattr(args, "precision", "auto") != "auto":
        return args.precision
    arch, weights = ("unet", args.unet) if args.unet else ("ddpm", args.ddpm)
    model, _ = load_model(arch, weights, device)
    return run_settings(model, device, args.batch_size).precision_on(device)


def evaluate(args: argparse.Namespace) -> dict:
    """The report: every model on the split, with the checks asked for, in ``args.precision`` (``auto``: as predict
    runs on this device), which every prediction made here takes through ``$NAPARI_SFF_PRECISION``."""
    saved = os.environ.get("NAPARI_SFF_PRECISION")
    if getattr(args, "precision", "auto") != "auto":
        os.environ["NAPARI_SFF_PRECISION"] = args.precision
    try:
        return _evaluate(args)
    finally:
        if saved is None:
            os.environ.pop("NAPARI_SFF_PRECISION", None)
        else:
            os.environ["NAPARI_SFF_PRECISION"] = saved


def _evaluate(args: argparse.Namespace) -> dict:
    import torch

    device = resolve_device(args.device)
    cache = as_cache(args.data)
    raw, truth = load_split(str(cache), args.split, args.max_images)
    rows, maes = {}, {}
    feature_distance = None
    # The DDPM (slow) may score an evenly spread subset; per-image MAEs are kept with their image indices so that
    # paired tests pair the same images. The example panels show images every model scored.
    every = np.arange(len(raw))
    ddpm_index = evenly_spaced(len(raw), args.ddpm_max_images) if args.ddpm else every
    example_index = ddpm_index[:EXAMPLE_IMAGES]
    examples = {"t2w": raw[example_index], "truth": truth[example_index]}
    summary, image_maes = score(identity_prediction(raw), truth, raw)
    maes["identity"] = (every, image_maes)
    rows["identity"] = {**summary, "ms_per_image": 0.0}
    if args.unet:
        from napari_sff.domain import FeatureRecorder

        unet, _ = load_model("unet", args.unet, device)  # the one run_model gets (loading is cached)
        with FeatureRecorder(unet) as recorder:
            predicted, ms = run_model("unet", args.unet, raw, device=device, batch_size=args.batch_size,
                                      features=recorder, mirror=args.mirror)
        summary, image_maes = score(predicted, truth, raw)
        predicted_main = predicted
        maes["unet"] = (every, image_maes)
        examples["unet"] = predicted[example_index]
        rows["unet"] = {**summary, "ms_per_image": ms}
        feature_distance = feature_check(unet, recorder.features(), image_maes,
                                         split_cases(cache, args.split, args.max_images))
        if args.mirror:  # what the mirror adds, paired: the same weights in one pass per slice
            predicted, ms = run_model("unet", args.unet, raw, device=device, batch_size=args.batch_size, mirror=False)
            summary, image_maes = score(predicted, truth, raw)
            maes["unet_one_pass"] = (every, image_maes)
            rows["unet_one_pass"] = {**summary, "ms_per_image": ms}
        if args.compare_precision:  # the same weights in another precision, paired, and how far the maps move
            other, ms = run_model("unet", args.unet, raw, device=device, batch_size=args.batch_size,
                                  mirror=args.mirror, precision=args.compare_precision)
            summary, image_maes = score(other, truth, raw)
            maes["unet_other_precision"] = (every, image_maes)
            body = np.stack([evaluation_mask(image) for image in raw])
            moved = np.abs(other - predicted_main)[body]
            rows["unet_other_precision"] = {
                **summary, "ms_per_image": ms, "precision": args.compare_precision,
                "map_difference_in_body": {"mean": float(moved.mean()), "p99": float(np.percentile(moved, 99)),
                                           "max": float(moved.max())}}
    if args.unet_reference:  # other U-Net weights on the same images: is the new checkpoint better, paired?
        predicted, ms = run_model("unet", args.unet_reference, raw, device=device, batch_size=args.batch_size,
                                  mirror=args.mirror)
        summary, image_maes = score(predicted, truth, raw)
        maes["unet_reference"] = (every, image_maes)
        rows["unet_reference"] = {**summary, "ms_per_image": ms, "weights": str(args.unet_reference)}
    ablation = []
    if args.ddpm:
        ddpm_raw, ddpm_truth = raw[ddpm_index], truth[ddpm_index]
        for steps in sorted(set(args.ablation) | {args.ddim_steps}):
            predicted, ms = run_model("ddpm", args.ddpm, ddpm_raw, device=device, batch_size=args.batch_size,
                                      ddim_steps=steps, samples=args.samples, seed=args.seed)
            summary, step_maes = score(predicted, ddpm_truth, ddpm_raw)
            ablation.append({"ddim_steps": steps, **summary, "ms_per_image": ms})
            if steps == args.ddim_steps:
                rows["ddpm"] = {**summary, "ms_per_image": ms, "ddim_steps": steps}
                maes["ddpm"] = (ddpm_index, step_maes)
                examples["ddpm"] = predicted[: EXAMPLE_IMAGES]
    samples_ablation = []
    if args.ddpm:
        for samples in args.samples_ablation:  # the mean of K DDIM samples at --ddim-steps
            predicted, ms = run_model("ddpm", args.ddpm, ddpm_raw, device=device, batch_size=args.batch_size,
                                      ddim_steps=args.ddim_steps, samples=samples, seed=args.seed)
            summary, _ = score(predicted, ddpm_truth, ddpm_raw)
            samples_ablation.append({"ddim_steps": args.ddim_steps, "samples": samples, **summary,
                                     "ms_per_image": ms})
    check_steps = args.check_ddim_steps or args.ddim_steps
    models = {name: (weights, check_steps) for name, weights in (("unet", args.unet), ("ddpm", args.ddpm)) if weights}
    # Scores of the main table and the ablation that the robustness table's "none" row would only repeat.
    unperturbed = {"unet": rows["unet"]} if "unet" in rows else {}
    for row in ablation:
        if row["ddim_steps"] == check_steps and args.samples == 1:
            unperturbed["ddpm"] = row
    robustness = (robustness_rows(raw, truth, models, device=device, batch_size=args.batch_size, seed=args.seed,
                                  ddpm_max_images=args.ddpm_max_images, unperturbed=unperturbed, mirror=args.mirror)
                  if args.robustness else [])
    checks = {"rois": None, "rois_all_structures": None, "rois_core": None, "tissues": None}
    if args.rois or args.tissues:  # the reference U-Net too: ROI means are what a reader compares
        volume_models = {**models, **({"unet_reference": (args.unet_reference, check_steps)}
                                      if args.unet_reference else {})}
        checks = volume_checks(cache, args.split, volume_models, device=device, batch_size=args.batch_size,
                               rois=args.rois, tissues=args.tissues, seed=args.seed, mirror=args.mirror)
    spacing = []
    if args.spacing_check:
        spacing = spacing_rows(models, cases=args.spacing_check, device=device, batch_size=args.batch_size,
                               seed=args.spacing_seed, mirror=args.mirror)
    tests = {}
    for first, second in (("unet", "unet_one_pass"), ("unet", "unet_other_precision"), ("unet", "unet_reference"),
                          ("unet", "ddpm"),
                          ("unet", "identity"), ("ddpm", "identity")):
        if first in maes and second in maes:
            (index_a, a), (index_b, b) = maes[first], maes[second]
            _, in_a, in_b = np.intersect1d(index_a, index_b, return_indices=True)
            tests[f"{first}_vs_{second}"] = paired_test(a[in_a], b[in_b])
    report = {
        "data": str(args.data), "split": args.split, "images": int(len(raw)), "device": str(device),
        "batch_size": args.batch_size, "unet_mirror": bool(args.mirror),
        "precision": _precision_used(args, device), "torch": torch.__version__, "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "models": rows, "ddim_ablation": ablation, "paired_tests": tests, "robustness": robustness,
        "robustness_ddim_steps": check_steps if args.ddpm else None, **checks,
        "spacing_check": {"cases_per_size": args.spacing_check, "seed": args.spacing_seed, "rows": spacing},
        "samples_ablation": samples_ablation, "feature_distance": feature_distance,
    }
    if args.figures:
        from training.figures import evaluation_figures

        report["figures"] = [str(path) for path in evaluation_figures(report, examples, args.figures)]
    return report


#: Test images drawn in the example panels (--figures).
EXAMPLE_IMAGES = 3


def _mean_sd_cell(row: dict, name: str, digits: int) -> str:
    """``mean ± SD`` of an image metric; "n/a" for reports made before the metric existed."""
    if name not in row:
        return "n/a"
    return f"{row[name]:.{digits}f} ± {row.get(name + '_sd', float('nan')):.{digits}f}"


def _mae_r_cell(summary: dict) -> str:
    return f"{summary['mae']:.3f} ± {summary['mae_sd']:.3f}; {summary['r']:.3f}"


def markdown(report: dict) -> str:
    """The paper's table for this run, plus the ablation and the paired tests."""
    mirrored = report.get("unet_mirror", False)
    names = {"identity": "Identity (normalised T2w)", "unet": "U-Net, mean with mirror" if mirrored else "U-Net",
             "unet_one_pass": "U-Net, one pass",
             "unet_other_precision": f"U-Net in {report['models'].get('unet_other_precision', {}).get('precision')}"
                                     + (", mean with mirror" if mirrored else ""),
             "unet_reference": "U-Net, reference weights" + (", mean with mirror" if mirrored else ""),
             "ddpm": "DDPM (DDIM)"}
    split = report["split"]
    lines = [f"{split.capitalize()} split: {report['images']} images, device {report['gpu'] or report['device']}, "
             f"batch size {report['batch_size']}, precision {report.get('precision', 'float32')}.", "",
             "| model | r (body, pooled) | r per image (mean) | MAE ± SD over images (body) | SSIM ± SD (body) | "
             "PSNR ± SD dB (body) | r (whole image) | MAE ± SD (whole image) | ms/image |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, row in report["models"].items():
        label = names[key] + (f", {row['ddim_steps']} steps" if "ddim_steps" in row else "")
        if key == "ddpm" and row["images"] != report["images"]:
            label += f" ({row['images']} images)"
        lines.append(f"| {label} | {row['r']:.3f} | {row['r_image_mean']:.3f} | {row['mae']:.3f} ± "
                     f"{row['mae_sd']:.3f} | {_mean_sd_cell(row, 'ssim', 3)} | {_mean_sd_cell(row, 'psnr', 1)} | "
                     f"{row['r_full']:.3f} | {row['mae_full']:.3f} ± {row['mae_full_sd']:.3f} | "
                     f"{row['ms_per_image']:.1f} |")
    other = report["models"].get("unet_other_precision")
    if other:
        moved = other["map_difference_in_body"]
        lines += ["", f"{names['unet_other_precision']}: its maps lie {100 * moved['mean']:.2f} pp from the main "
                      f"run's on average in the body ({100 * moved['p99']:.2f} pp at the 99th percentile, "
                      f"{100 * moved['max']:.1f} pp at most)."]
    if report["ddim_ablation"]:
        lines += ["", "| DDIM steps | samples | r | MAE ± SD | SSIM ± SD | PSNR ± SD dB | ms/image |",
                  "|---|---|---|---|---|---|---|"]
        for row in report["ddim_ablation"]:
            lines.append(f"| {row['ddim_steps']} | {row.get('samples', 1)} | {row['r']:.3f} | {row['mae']:.3f} ± "
                         f"{row['mae_sd']:.3f} | {_mean_sd_cell(row, 'ssim', 3)} | {_mean_sd_cell(row, 'psnr', 1)} | "
                         f"{row['ms_per_image']:.1f} |")
    if report.get("samples_ablation"):
        lines += ["", "| DDPM samples averaged | DDIM steps | r | MAE ± SD | SSIM ± SD | PSNR ± SD dB | ms/image |",
                  "|---|---|---|---|---|---|---|"]
        for row in report["samples_ablation"]:
            lines.append(f"| {row['samples']} | {row['ddim_steps']} | {row['r']:.3f} | {row['mae']:.3f} ± "
                         f"{row['mae_sd']:.3f} | {_mean_sd_cell(row, 'ssim', 3)} | {_mean_sd_cell(row, 'psnr', 1)} | "
                         f"{row['ms_per_image']:.1f} |")
    if report.get("robustness"):
        present = [key for key in names if key in report["robustness"][0]]
        ddpm_steps = f" (DDPM: {report['robustness_ddim_steps']} DDIM steps)" if "ddpm" in present else ""
        lines += ["", f"| perturbation{ddpm_steps}: MAE ± SD over images (body); r | "
                  + " | ".join(names[k] for k in present) + " |",
                  "|---|" + "---|" * len(present)]
        for row in report["robustness"]:
            cells = " | ".join(_mae_r_cell(row[k]) for k in present)
            lines.append(f"| {row['perturbation']} | {cells} |")
    if report.get("rois") and not report["rois"]["rois"]:
        lines += ["", f"ROI means: no labelled ROIs in the {split} volumes (no <case>_labels files)."]
    elif report.get("rois"):
        rois = report["rois"]
        lines += ["", f"ROI means ({rois['rois']} labelled muscles in {rois['cases']} whole {split} volumes; "
                  f"mean true SFF {rois['truth_mean']:.3f}):", "",
                  "| model | MAE of ROI means | r | Bland–Altman bias | 95 % limits of agreement |",
                  "|---|---|---|---|---|"]
        for key in names:
            if key in rois:
                row = rois[key]
                label = names[key] + (f", {row['steps']} steps" if key == "ddpm" else "")
                lines.append(f"| {label} | {row['mae']:.3f} | {row['r']:.3f} | {row['bias']:+.3f} | "
                             f"{row['loa_low']:+.3f} to {row['loa_high']:+.3f} |")
        core = report.get("rois_core")
        if core and core["rois"]:
            cells = ", ".join(f"{names[key]} {core[key]['mae']:.3f} (bias {core[key]['bias']:+.3f}, r "
                              f"{core[key]['r']:.3f})" for key in names if key in core)
            lines += ["", f"The same muscle ROIs without their rim ({CORE_RIM} voxel in-plane beside another label "
                      f"or the background; {core['rois']} ROIs keep a core), MAE of ROI means: {cells}."]
        every = report.get("rois_all_structures")
        if every and every["rois"] != rois["rois"]:  # the labels held other structures too: said apart
            cells = ", ".join(f"{names[key]} {every[key]['mae']:.3f}" for key in names if key in every)
            lines += ["", f"Muscle ROIs are labels with at least {100 * MUSCLE_ROI_SHARE:.0f} % muscle tissue; all "
                      f"{every['rois']} labelled structures (with fat, marrow, fluid, nerves, masses), MAE of ROI "
                      f"means: {cells}."]
    if report.get("tissues"):
        lines += ["", *tissue_markdown(report["tissues"], names, split)]
    spacing = report.get("spacing_check", {}).get("rows")
    if spacing:
        check = report["spacing_check"]
        present = [key for key in spacing[0] if key not in ("size", "spacing_mm")]
        label = {"identity": names["identity"], **{f"{k}_{how}": f"{names[k]} {how}" for k in ("unet", "ddpm")
                                                   for how in ("native", "resampled")}}
        lines += ["", f"Pixel spacing check: {check['cases_per_size']} fresh simulated cases per matrix size "
                  f"(seed {check['seed']}); MAE ± SD over images (body); r. *native*: predicted on the input "
                  "grid; *resampled*: moved into the model's training spacing and back.", "",
                  "| matrix (pixel spacing) | " + " | ".join(label[k] for k in present) + " |",
                  "|---|" + "---|" * len(present)]
        for row in spacing:
            cells = " | ".join(_mae_r_cell(row[k]) for k in present)
            low, high = row["spacing_mm"]
            lines.append(f"| {row['size']}² ({low:.2f}–{high:.2f} mm) | {cells} |")
    check = report.get("feature_distance")
    if check:
        flagged = ", ".join(check["cases_flagged"]) or "none"
        lines += ["", f"U-Net feature distance (napari_sff.domain; training slices' 99th percentile "
                  f"{check['threshold']:.2f}): median {check['median_distance']:.2f}, "
                  f"{100 * check['images_beyond_threshold']:.0f} % of images beyond; cases predict flags: "
                  f"{len(check['cases_flagged'])} of {check['cases']} ({flagged}); Spearman with image MAE "
                  f"{check['spearman_distance_vs_image_mae']:.2f} (p = {check['spearman_p']:.2g}); MAE of the "
                  f"nearer / farther half {check['mae_nearer_half']:.3f} / {check['mae_farther_half']:.3f}."]
    for figure in report.get("figures", []):
        lines += ["", f"![{Path(figure).stem.replace('_', ' ')}]({figure})"]
    if report["paired_tests"]:
        lines += ["", "| paired Wilcoxon on per-image MAE | n | median difference | p |", "|---|---|---|---|"]
        for name, test in report["paired_tests"].items():
            lines.append(f"| {name.replace('_', ' ')} | {test['n']} | {test['median_difference']:+.4f} | "
                         f"{test['p_value']:.2g} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="slice cache or folder of <case>_t2w/_sff NIfTI pairs")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--unet", help="U-Net checkpoint")
    parser.add_argument("--unet-reference", help="other U-Net weights scored on the same images, with a paired test "
                                                 "against --unet (e.g. the shipped ones against a retrained one)")
    parser.add_argument("--ddpm", help="DDPM checkpoint")
    parser.add_argument("--ddim-steps", type=int, default=50)
    parser.add_argument("--ablation", type=lambda s: [int(v) for v in s.split(",") if v], default=[],
                        help="comma-separated DDIM step counts, e.g. 1,5,10,25,50")
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--samples-ablation", type=lambda s: [int(v) for v in s.split(",") if v], default=[],
                        help="comma-separated DDPM sample counts averaged at --ddim-steps, e.g. 1,4,8")
    parser.add_argument("--figures", help="write PNG figures here: DDIM-steps and samples ablation, "
                                          "Bland-Altman of ROI means (with --rois), example panels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-images", type=int)
    parser.add_argument("--ddpm-max-images", type=int, help="evaluate the DDPM on N of the images only, spread "
                                                            "evenly (the slow model, every case still represented)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--rois", action="store_true",
                        help="compare mean SFF per labelled ROI over whole test volumes (needs <case>_labels files)")
    parser.add_argument("--tissues", action="store_true",
                        help="break the voxel error of whole test volumes down by tissue class (needs "
                             "<case>_tissues files, as python -m training.phantoms writes)")
    parser.add_argument("--check-ddim-steps", type=int, help="DDIM steps of the DDPM in --rois and --robustness (default: --ddim-steps)")
    parser.add_argument("--robustness", action="store_true",
                        help="also score every model on perturbed copies (orientation, noise, bias, 8-bit)")
    parser.add_argument("--spacing-check", type=int, default=0, metavar="CASES",
                        help="also score CASES fresh simulated cases at matrix sizes "
                             f"{', '.join(map(str, SPACING_CHECK_SIZES))} (other pixel spacings), native and resampled")
    parser.add_argument("--spacing-seed", type=int, default=777, help="simulator seed of --spacing-check")
    parser.add_argument("--no-mirror", dest="mirror", action="store_false",
                        help="U-Net: one pass per slice (default: the mean with the mirrored slice, as predict does)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=("auto", *PRECISIONS),
                        help="auto: as predict runs on this device (its calibration or default); float32 for tables "
                             "that compare across machines")
    parser.add_argument("--compare-precision", choices=PRECISIONS,
                        help="also score the U-Net in this precision on the same images: paired test, and how far "
                             "its maps lie from the main run's in the body")
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("--markdown", help="write the markdown table here")
    args = parser.parse_args(argv)
    report = evaluate(args)
    table = markdown(report)
    print(table)
    for path, text in ((args.out, json.dumps(report, indent=1)), (args.markdown, table)):
        if path:
            atomic_write_text(path, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
