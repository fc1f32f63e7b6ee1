"""The entry points: raw T2w slices or volumes in, SFF (and the DDPM's SD) on the input grid out.

:func:`predict_volume` is what the CLI, the widgets, the cohort and the evaluation call; :func:`predict_volumes`
shares batches between volumes. Everything else in the package serves these.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_sff.domain import FeatureRecorder, feature_distance, outside_training_range, unlike_training
from napari_sff.inference.batches import CancelCallback, ProgressCallback, _predict_batches
from napari_sff.inference.devices import resolve_device
from napari_sff.inference.geometry import SlicePlan, finish_slices, plan_slices
from napari_sff.inference.loading import input_normalisation, load_model
from napari_sff.inference.settings import RunSettings, _settings_applied, run_settings, with_precision
from napari_sff.preprocess import normalise_t2w

if TYPE_CHECKING:
    import torch


@dataclass
class Prediction:
    """SFF (and, for several DDPM samples, its per-voxel SD) on the input grid, with timing."""

    sff: np.ndarray
    std: np.ndarray | None
    slice_axis: int
    slice_indices: list[int]
    seconds: float
    device: str
    arch: str
    # In-plane spacing (mm) the model predicted at, when the input's lay outside what it was trained on.
    model_spacing: tuple[float, float] | None = None
    # Why the scan lies outside what the model was trained on (napari_sff.domain), or None.
    out_of_distribution: str | None = None
    # Per predicted slice (in slice_indices' order): how unlike the training slices the U-Net finds it (about 1
    # for a training slice; napari_sff.domain.feature_distance); None for the DDPM or checkpoints without it.
    feature_distance: np.ndarray | None = None
    # The distance beyond which a slice counts as unlike the training slices (their 99th percentile), or None.
    feature_threshold: float | None = None
    # The U-Net's map is the mean of the slices' and their left-right mirror images' (test-time augmentation).
    mirrored: bool = False
    # The precision the network ran in ("float32", or "bfloat16" / "float16" autocast): RunSettings.precision.
    precision: str = "float32"

    @property
    def ms_per_slice(self) -> float:
        return 1000.0 * self.seconds / max(1, len(self.slice_indices))


def predict_slices(
    model: Any, slices: np.ndarray, *, device: torch.device, batch_size: int | None = None, ddim_steps: int = 50,
    samples: int = 1, eta: float = 0.0, seed: int = 0, progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None, settings: RunSettings | None = None, features: Any = None,
    mirror: bool = True, normalised: np.ndarray | None = None, precision: str | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Raw T2w slices (N, H, W) -> SFF (N, H, W) in [0, 1], and the DDPM SD when ``samples`` > 1.

    Batches back off (halve) on out-of-memory; ``progress(done, total)`` counts slices for the U-Net and
    slice-steps for the DDPM; ``cancel()`` is checked between batches and DDIM steps. ``settings`` (batch size,
    memory format, threads) default to :func:`run_settings`; an explicit ``batch_size`` overrides theirs.
    ``features`` (a :class:`napari_sff.domain.FeatureRecorder` on the model) collects the slices' features.
    ``mirror`` (U-Net only; the DDPM averages ``samples`` instead) returns the mean of each slice's map and its
    left-right mirror image's: lower error on every held-out set of the model card at twice the network time.
    ``normalised``: ``normalise_t2w(slices)`` when the caller has it already (predict_volume's out-of-distribution
    check reads it too). ``precision`` ("float32", "bfloat16", "float16") overrides the settings' (see
    :func:`napari_sff.inference.settings.with_precision`).
    """
    is_ddpm = getattr(model, "arch", "unet") == "ddpm"
    steps_per_slice = ddim_steps if is_ddpm else 1
    total = len(slices) * steps_per_slice
    sff = np.zeros(slices.shape, dtype=np.float32)
    std = np.zeros(slices.shape, dtype=np.float32) if is_ddpm and samples > 1 else None
    if normalised is None:
        normalised = normalise_t2w(np.asarray(slices, dtype=np.float32), input_normalisation(model))
    if settings is None:
        settings = run_settings(model, device, batch_size, shape=slices.shape[1:])
    elif batch_size is not None:
        settings = dataclasses.replace(settings, batch_size=max(1, int(batch_size)), source="caller")
    settings = with_precision(settings, precision)
    with _settings_applied(model, settings):
        _predict_batches(model, normalised, sff, std, device, settings, is_ddpm, ddim_steps, samples, eta, seed,
                         progress, cancel, steps_per_slice, total, features, _mirrors(model, mirror))
    return sff, std


def _model_on(arch: str, weights: str | Path | None, device: str, model: Any) -> tuple[Any, Any]:
    torch_device = resolve_device(device)
    if model is None:
        model, _ = load_model(arch, weights, torch_device)
    else:
        model = model.to(torch_device).eval()
    return model, torch_device


def predict_volume(
    array: np.ndarray, spacing: Sequence[float], arch: str = "unet", *, weights: str | Path | None = None,
    device: str = "auto", slice_axis: int | str = "auto", slice_indices: Sequence[int] | None = None,
    batch_size: int | None = None, ddim_steps: int = 50, samples: int = 1, eta: float = 0.0, seed: int = 0,
    progress: ProgressCallback | None = None, cancel: CancelCallback | None = None, model: Any = None,
    resample: bool = True, mirror: bool = True, calibrate: bool | None = None, precision: str | None = None,
) -> Prediction:
    """Predict SFF for a 3D T2w array (display order) on its own grid.

    ``slice_indices`` restricts the work to some slices (e.g. the one on screen); the others stay 0.
    With ``resample``, slices whose in-plane spacing lies outside the range the model was trained on (its
    checkpoint's ``input_spacing_mm``) are resized into it, predicted, and the SFF resized back (cubic).
    ``mirror``: see :func:`predict_slices`. Without a ``batch_size``, the settings are the cached calibration,
    else one made now (``calibrate``: None = unless ``NAPARI_SFF_CALIBRATE=0``; False = the device default
    instead, as the widget asks: seconds of timing inside a Run would look like a hang). ``precision``: None = the
    settings' (a CPU with native bfloat16 may have calibrated to it), or "float32" / "bfloat16" / "float16".
    """
    array = np.asarray(array)
    model, torch_device = _model_on(arch, weights, device, model)
    started = time.perf_counter()
    plan = plan_slices(array, spacing, model, slice_axis=slice_axis, slice_indices=slice_indices, resample=resample)
    planned = time.perf_counter()
    settings = with_precision(run_settings(model, torch_device, batch_size, shape=plan.slices.shape[1:],
                                            calibrate_if_missing=calibrate), precision)
    started += time.perf_counter() - planned  # a first calibration is not the scan's time
    normalised = normalise_t2w(np.asarray(plan.slices, dtype=np.float32), input_normalisation(model))
    with _feature_recorder(model) as recorder:
        sff_slices, std_slices = predict_slices(
            model, plan.slices, device=torch_device, ddim_steps=ddim_steps, samples=samples,
            eta=eta, seed=seed, progress=progress, cancel=cancel, settings=settings, features=recorder,
            mirror=mirror, normalised=normalised,
        )
    sff, std = finish_slices(plan, sff_slices, std_slices)
    seconds = time.perf_counter() - started
    distances = _feature_distances(recorder, model)
    return Prediction(
        sff=sff, std=std, slice_axis=plan.axis, slice_indices=plan.indices, seconds=seconds,
        device=str(torch_device), arch=getattr(model, "arch", arch), model_spacing=plan.target,
        out_of_distribution=_out_of_distribution(plan, model, distances, normalised), feature_distance=distances,
        feature_threshold=_feature_threshold(model, distances), mirrored=_mirrors(model, mirror),
        precision=settings.precision_on(torch_device),
    )


def _mirrors(model: Any, mirror: bool) -> bool:
    """Whether ``model`` runs with the mirror: the U-Net when asked; the DDPM never (it averages samples)."""
    return bool(mirror) and getattr(model, "arch", "unet") != "ddpm"


def _feature_threshold(model: Any, distances: np.ndarray | None) -> float | None:
    recorded = getattr(model, "feature_statistics", None)
    return None if distances is None or not recorded else float(recorded["threshold"])


def _feature_recorder(model: Any):
    """A :class:`napari_sff.domain.FeatureRecorder` when the checkpoint recorded its training features."""
    return FeatureRecorder(model) if getattr(model, "feature_statistics", None) else contextlib.nullcontext()


def _feature_distances(recorder: Any, model: Any) -> np.ndarray | None:
    features = recorder.features() if recorder is not None else None
    return None if features is None else feature_distance(features, model.feature_statistics)


def _out_of_distribution(plan: SlicePlan, model: Any, distances: np.ndarray | None = None,
                         normalised: np.ndarray | None = None) -> str | None:
    """The scan's slices, as the model sees them, against the ranges its checkpoint recorded, and (U-Net) the
    slices whose features lie beyond the training slices'."""
    found = [outside_training_range(plan.slices, getattr(model, "input_statistics", None), normalised,
                                    input_normalisation(model)),
             unlike_training(distances, plan.indices, getattr(model, "feature_statistics", None))]
    found = [message for message in found if message]
    return "; ".join(found) if found else None


def predict_volumes(
    volumes: Sequence[tuple[np.ndarray, Sequence[float]]], arch: str = "unet", *, weights: str | Path | None = None,
    device: str = "auto", slice_axis: int | str = "auto", batch_size: int | None = None, ddim_steps: int = 50,
    samples: int = 1, eta: float = 0.0, seed: int = 0, model: Any = None, resample: bool = True,
    mirror: bool = True, precision: str | None = None,
) -> list[Prediction]:
    """:func:`predict_volume` for several (array, spacing) volumes, their slices batched together.

    Slices of consecutive volumes that share an in-plane shape (at the model's pixel size) fill the same batches,
    so a GPU stays busy when volumes have fewer slices than a batch. Each volume's result equals what
    :func:`predict_volume` gives it (each slice is predicted on its own; DDPM seeds follow the slice's place in
    the group); its ``seconds`` is its share of its group's time, by slices.
    """
    model, torch_device = _model_on(arch, weights, device, model)
    plans = [plan_slices(array, spacing, model, slice_axis=slice_axis, resample=resample)
             for array, spacing in volumes]
    predictions: list[Prediction] = []
    start = 0
    while start < len(plans):
        stop = start + 1
        while stop < len(plans) and plans[stop].slices.shape[1:] == plans[start].slices.shape[1:]:
            stop += 1
        group = plans[start:stop]
        settings = with_precision(run_settings(model, torch_device, batch_size,
                                                shape=group[0].slices.shape[1:]), precision)  # cached
        started = time.perf_counter()
        slices = np.concatenate([plan.slices for plan in group])
        normalised_all = normalise_t2w(np.asarray(slices, dtype=np.float32), input_normalisation(model))
        with _feature_recorder(model) as recorder:
            sff_all, std_all = predict_slices(model, slices, device=torch_device, ddim_steps=ddim_steps,
                                              samples=samples, eta=eta, seed=seed, settings=settings,
                                              features=recorder, mirror=mirror, normalised=normalised_all)
        seconds = time.perf_counter() - started
        distances_all = _feature_distances(recorder, model)
        total = sum(len(plan.slices) for plan in group)
        offset = 0
        for plan in group:
            n = len(plan.slices)
            sff, std = finish_slices(plan, sff_all[offset:offset + n],
                                     None if std_all is None else std_all[offset:offset + n])
            distances = None if distances_all is None else distances_all[offset:offset + n]
            predictions.append(Prediction(
                sff=sff, std=std, slice_axis=plan.axis, slice_indices=plan.indices, seconds=seconds * n / total,
                device=str(torch_device), arch=getattr(model, "arch", arch), model_spacing=plan.target,
                out_of_distribution=_out_of_distribution(plan, model, distances, normalised_all[offset:offset + n]),
                feature_distance=distances,
                feature_threshold=_feature_threshold(model, distances), mirrored=_mirrors(model, mirror),
                precision=settings.precision_on(torch_device)))
            offset += n
        start = stop
    return predictions
