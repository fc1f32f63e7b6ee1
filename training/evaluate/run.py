"""The evaluation itself: every model on the split in the precision asked for, with the checks asked for, as one
JSON-able report (the paired tests pair the same images)."""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np

from napari_sff.inference import load_model, resolve_device
from training.metrics import evaluation_mask
from training.volume_checks import identity_prediction, volume_checks

from .images import as_cache, evenly_spaced, load_split, split_cases
from .robustness import robustness_rows, spacing_rows
from .scoring import feature_check, paired_test, run_model, score


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
    if args.ddpm and args.ddpm_reference:  # other DDPM weights, same images, steps, samples and noise: paired
        predicted, ms = run_model("ddpm", args.ddpm_reference, ddpm_raw, device=device, batch_size=args.batch_size,
                                  ddim_steps=args.ddim_steps, samples=args.samples, seed=args.seed)
        summary, image_maes = score(predicted, ddpm_truth, ddpm_raw)
        maes["ddpm_reference"] = (ddpm_index, image_maes)
        rows["ddpm_reference"] = {**summary, "ms_per_image": ms, "ddim_steps": args.ddim_steps,
                                  "weights": str(args.ddpm_reference)}
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
        references = {f"{arch}_reference": (weights, check_steps) for arch, weights
                      in (("unet", args.unet_reference), ("ddpm", args.ddpm and args.ddpm_reference)) if weights}
        volume_models = {**models, **references}
        checks = volume_checks(cache, args.split, volume_models, device=device, batch_size=args.batch_size,
                               rois=args.rois, tissues=args.tissues, seed=args.seed, mirror=args.mirror)
    spacing = []
    if args.spacing_check:
        spacing = spacing_rows(models, cases=args.spacing_check, device=device, batch_size=args.batch_size,
                               seed=args.spacing_seed, mirror=args.mirror)
    tests = {}
    for first, second in (("unet", "unet_one_pass"), ("unet", "unet_other_precision"), ("unet", "unet_reference"),
                          ("ddpm", "ddpm_reference"), ("unet", "ddpm"),
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
