"""How the scores hold up away from the training data: the same images as a scanner or an export could change them
(``--robustness``) and fresh simulated cases at other pixel spacings, native and resampled (``--spacing-check``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_sff.inference import load_model, predict_volume
from training.data import Augmentation
from training.metrics import image_metrics, summarise
from training.volume_checks import identity_prediction

from .images import evenly_spaced
from .scoring import run_model, score


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
