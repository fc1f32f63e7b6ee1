"""What every checkpoint of a run records about its training data (the cache's splits, the pixel spacings, input
and feature statistics of the training slices), and the weights digest that shows DDP's replicas stayed equal."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch

from training.data import CACHE_INFO, Augmentation

#: What each normalise_t2w method does, in words, beside the name a checkpoint records for inference to read.
NORMALISATION = "napari_sff.preprocess.normalise_t2w (per slice, 99th percentile inside the body mask)"
NORMALISATION_WORDS = {"p99": NORMALISATION,
                       "fat": "napari_sff.preprocess.normalise_t2w method='fat' (per slice, subcutaneous fat -> 0.5)"}


def normalisation_card(method: str) -> dict:
    """A checkpoint's record of its input: ``input_normalisation`` (the name ``load_model`` maps back to the method
    predict normalises with) and ``normalisation`` (the same in words)."""
    from napari_sff.preprocess import NORMALISATIONS

    return {"normalisation": NORMALISATION_WORDS[method], "input_normalisation": NORMALISATIONS[method]}


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over all parameters and buffers in state-dict order."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def describe_data(cache: Path, augmentation: Augmentation | None, normalisation: str = "p99") -> dict:
    """What every checkpoint of a run says about its data: the cache's splits, the pixel spacings seen and the
    input statistics (of slices normalised as the model sees them)."""
    info = json.loads((cache / CACHE_INFO).read_text())
    splits = {k: {"slices": v["slices"], "cases": len(v["cases"]), "in_plane_spacing_mm": v.get("in_plane_spacing_mm")}
              for k, v in info["splits"].items()}
    return {"training_data": {"source": info["data_dir"], "slice_size": info["size"], "splits": splits},
            "input_spacing_mm": seen_spacing_range(splits["train"]["in_plane_spacing_mm"], augmentation),
            "input_statistics": input_statistics(cache, augmentation, normalisation=normalisation)}


#: Training slices whose statistics make a checkpoint's ``input_statistics`` (evenly spaced over the split).
STATISTICS_SLICES = 2000


def input_statistics(cache: Path, augmentation: Augmentation | None, *, max_slices: int = STATISTICS_SLICES,
                     seed: int = 0, normalisation: str = "p99") -> dict[str, list[float]] | None:
    """The ranges of :mod:`napari_sff.domain`'s statistics over (augmented) training slices: what predict
    compares a scan with to warn that it lies outside what the model saw."""
    from napari_sff.domain import slice_statistics, training_ranges

    parts = [slice_statistics(slices, method=normalisation)
             for slices in training_slices(cache, augmentation, max_slices, seed)]
    return training_ranges(parts) if parts else None


#: Training slices whose U-Net features make a checkpoint's ``feature_statistics``.
FEATURE_SLICES = 1000


def training_slices(cache: Path, augmentation: Augmentation | None, max_slices: int, seed: int = 0,
                    chunk: int = 64) -> Iterator[np.ndarray]:
    """Raw training slices in chunks, evenly spaced over the split and augmented as in training but whole (a crop
    would change the share of body): what a checkpoint's records of its training data are computed from."""
    from dataclasses import replace

    from training.data import open_split

    raw, truth = open_split(cache, "train")
    if not len(raw):
        return
    indices = np.unique(np.linspace(0, len(raw) - 1, min(max_slices, len(raw))).round().astype(int))
    whole_slices = None if augmentation is None else replace(augmentation, crop=None)
    for start in range(0, len(indices), chunk):
        part = indices[start:start + chunk]
        slices = raw[part]
        if whole_slices is not None:
            rng = np.random.default_rng((seed, start))
            slices = np.stack([whole_slices(image, sff, rng)[0] for image, sff in zip(slices, truth[part], strict=True)])
        yield np.asarray(slices, dtype=np.float32)


def feature_statistics(model: torch.nn.Module, cache: Path, augmentation: Augmentation | None, *,
                       max_slices: int = FEATURE_SLICES, seed: int = 0) -> dict | None:
    """The U-Net's bottleneck features over its training slices (:func:`napari_sff.domain.feature_statistics`),
    normalised as its checkpoint says: what predict measures each slice's distance from. None for a model without
    a U-Net encoder."""
    return feature_statistics_of([model], cache, augmentation, max_slices=max_slices, seed=seed)[0]


def feature_statistics_of(models: Sequence[torch.nn.Module], cache: Path, augmentation: Augmentation | None, *,
                          max_slices: int = FEATURE_SLICES, seed: int = 0) -> list[dict | None]:
    """:func:`feature_statistics` of several models in one pass over the augmented training slices.

    A run ends by stamping its last and best checkpoints: augmenting the slices once for both halves the part a
    GPU cannot speed up (about 7 ms per slice on one core), and a model whose weights equal an earlier one's (best
    is often last) is not run again, which halves the forward passes on a CPU.
    """
    from napari_sff.domain import FeatureRecorder
    from napari_sff.domain import feature_statistics as describe_features
    from napari_sff.inference import input_normalisation
    from napari_sff.preprocess import normalise_t2w

    first_equal = [next(j for j in range(i + 1) if j == i or _same_weights(models[j], model))
                   for i, model in enumerate(models)]
    runs = {i: models[i].eval() for i in sorted(set(first_equal)) if getattr(models[i], "encoders", None) is not None}
    if not runs:
        return [None] * len(models)
    with ExitStack() as stack, torch.inference_mode():
        recorders = {i: stack.enter_context(FeatureRecorder(model)) for i, model in runs.items()}
        for slices in training_slices(cache, augmentation, max_slices, seed, chunk=16):
            inputs: dict[str, torch.Tensor] = {}  # per normalisation method, made once per chunk
            for i, model in runs.items():
                method = input_normalisation(model)
                if method not in inputs:
                    inputs[method] = torch.from_numpy(normalise_t2w(slices, method)[:, None])
                model(inputs[method].to(next(model.parameters()).device).float())
                recorders[i].keep()
    described = {}
    for i, recorder in recorders.items():
        features = recorder.features()
        described[i] = None if features is None or len(features) < 4 else describe_features(features)
    return [described.get(j) for j in first_equal]


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Equal state dicts (keys, shapes, values) and the same input normalisation: the same features."""
    if getattr(a, "input_normalisation", None) != getattr(b, "input_normalisation", None):
        return False
    left, right = a.state_dict(), b.state_dict()
    return left.keys() == right.keys() and all(
        left[k].shape == right[k].shape and torch.equal(left[k].cpu(), right[k].cpu()) for k in left)


def seen_spacing_range(data_range: Sequence[float] | None, augmentation: Augmentation | None) -> list[float] | None:
    """In-plane pixel spacings (mm) the model saw in training: the training cases' range, widened by zoom.

    A zoom z shows anatomy z times larger, as a pixel spacing divided by z would. Inference resamples slices
    whose spacing lies outside this range into it (``napari_sff.inference``); None for caches that predate it.
    """
    if not data_range:
        return None
    low_zoom, high_zoom = augmentation.zoom if augmentation is not None else (1.0, 1.0)
    return [data_range[0] / high_zoom, data_range[1] / low_zoom]
