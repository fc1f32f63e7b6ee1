"""Does the input normalisation matter to a model? Its map's response to the slice's scale, and its scores under
each normalisation with the same weights.

    python -m training.input_scale --data CACHE [--split test] [--images 48] [--weights W] [--out scale.json]

Every ``normalise_t2w`` method rescales each slice by one factor (and clips): the percentile rule divides by the
99th percentile, the fat reference by the subcutaneous fat's intensity. The shipped U-Net's convolutions carry no
bias before GroupNorm, and GroupNorm divides out any factor common to the slice, so the network cannot tell two
such rescalings apart: only what each clips differs. This command measures that rather than assume it:

* **scale response**: the mean and largest |map(k x) - map(x)| over the images for factors k (the normalised
  input multiplied, clipped as the percentile rule clips);
* **normalisations, zero-shot**: the same weights scored on the images normalised by each method (body MAE and r
  per image, ``training.metrics``), with the paired Wilcoxon test on per-image MAE.

A model that ignores the per-slice scale gains nothing from a reference that fixes it (fat at 0.5): what a fat
reference could add, the network already reads from the slice's own contrast. The DDPM conditions on the T2w
beside its noisy sample, so the T2w's scale does reach it; ``--arch ddpm`` measures it too (slowly).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_sff.preprocess import CLIP_MAX, NORMALISATIONS, normalise_t2w

#: Factors the normalised input is multiplied by: what a reference tissue read 2x too bright or dark would do.
SCALES = (0.5, 0.8, 1.25, 2.0)


def scale_response(model, normalised: np.ndarray, scales: Sequence[float] = SCALES, *, ddim_steps: int = 10,
                   batch_size: int = 8) -> dict[str, dict[str, float]]:
    """{factor: {"mean": mean |map(k x) - map(x)|, "max": largest}} over the images ``normalised`` (N, H, W)."""
    base = _maps(model, normalised, ddim_steps, batch_size)
    response = {}
    for factor in scales:
        scaled = _maps(model, np.clip(normalised * factor, 0.0, CLIP_MAX), ddim_steps, batch_size)
        difference = np.abs(scaled - base)
        response[f"{factor:g}"] = {"mean": float(difference.mean()), "max": float(difference.max())}
    return response


def _maps(model, normalised: np.ndarray, ddim_steps: int, batch_size: int) -> np.ndarray:
    """The model's clipped maps of already normalised slices, one pass (no mirror), seeded for the DDPM."""
    import torch

    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, len(normalised), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(normalised[start:start + batch_size], np.float32)[:, None])
            x = x.to(device)
            if getattr(model, "arch", "unet") == "ddpm":
                mean, _ = model.sample(x, steps=ddim_steps, generator=torch.Generator(device).manual_seed(start))
            else:
                mean = model(x)
            out.append(mean.float().clamp(0, 1)[:, 0].cpu().numpy())
    return np.concatenate(out)


def normalisation_scores(model, raw: np.ndarray, truth: np.ndarray, methods: Sequence[str], *,
                         ddim_steps: int = 10, batch_size: int = 8) -> dict:
    """The same weights scored on ``raw`` slices normalised by each method; the first method is the reference of
    the paired tests (per-image body MAE, ``training.evaluate.paired_test``)."""
    from training.evaluate import paired_test, score

    scores, maes = {}, {}
    for method in methods:
        summary, maes[method] = score(_maps(model, normalise_t2w(raw, method), ddim_steps, batch_size), truth, raw)
        scores[method] = {key: summary[key] for key in ("mae", "mae_sd", "r")}
    reference = methods[0]
    for method in methods[1:]:
        scores[method]["paired_p_vs_" + reference] = paired_test(maes[method], maes[reference])["p_value"]
    return scores


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.input_scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a slice cache or a folder of pairs (training.evaluate's)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--images", type=int, default=48, help="evenly spaced over the split")
    parser.add_argument("--arch", choices=("unet", "ddpm"), default="unet")
    parser.add_argument("--weights", help="default: the shipped weights of --arch")
    parser.add_argument("--ddim-steps", type=int, default=10)
    parser.add_argument("--out", help="also write the report here (JSON)")
    args = parser.parse_args(argv)

    from napari_sff.inference import load_model
    from napari_sff.io import atomic_write_text
    from training.evaluate.images import load_split

    raw, truth = load_split(args.data, args.split, args.images)
    model, _ = load_model(args.arch, args.weights, "cpu")
    report = {
        "data": args.data, "split": args.split, "images": len(raw), "arch": args.arch,
        "weights": args.weights or "shipped", "trained_on": model.input_normalisation,
        "scale_response": scale_response(model, normalise_t2w(raw, model.input_normalisation),
                                         ddim_steps=args.ddim_steps),
        "normalisations": normalisation_scores(model, raw, truth,
                                               [model.input_normalisation] + [m for m in NORMALISATIONS
                                                                              if m != model.input_normalisation],
                                               ddim_steps=args.ddim_steps),
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        atomic_write_text(Path(args.out), text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
