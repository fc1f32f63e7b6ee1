"""The single inference entry point: a T2w volume -> batched 2D slices -> an SFF volume.

The CLI, the widgets and the evaluation all call :func:`predict_volume`. It never imports Qt or napari;
progress and cancellation are plain callbacks, checked between batches (and between DDIM steps).

Parts: :mod:`.devices` (device choice, per-device defaults, the hardware's description), :mod:`.settings`
(:class:`RunSettings`, the one-time calibration and its cache), :mod:`.loading` (:func:`load_model` and its
cache), :mod:`.geometry` (slice axis, the model's pixel spacing, :func:`resample_slices`, slice plans),
:mod:`.batches` (the batch loop: out-of-memory back-off, cancellation) and :mod:`.predict`
(:func:`predict_slices`, :func:`predict_volume`, :func:`predict_volumes`, :class:`Prediction`).

To replace a function in a test, patch the part that uses it (``napari_sff.inference.settings._time_once``):
the names here are re-exports, and patching them changes nothing the parts call.
"""

from napari_sff.inference.batches import CancelCallback, PredictionCancelled, ProgressCallback
from napari_sff.inference.devices import (
    DEFAULT_BATCH,
    DEFAULT_CHANNELS_LAST,
    _physical_cores,
    available_devices,
    default_batch_size,
    device_description,
    resolve_device,
)
from napari_sff.inference.geometry import (
    SlicePlan,
    choose_slice_axis,
    finish_slices,
    model_input_spacing,
    plan_slices,
    resample_slices,
)
from napari_sff.inference.loading import ARCH_LABELS, input_normalisation, load_model
from napari_sff.inference.predict import Prediction, predict_slices, predict_volume, predict_volumes
from napari_sff.inference.settings import (
    CALIBRATION_BATCHES,
    CALIBRATION_FILE,
    CALIBRATION_SHAPE,
    CALIBRATION_SIDES,
    RunSettings,
    _candidate_name,
    cache_dir,
    cached_calibrations,
    calibrate,
    calibration_candidates,
    calibration_key,
    choose_settings,
    default_settings,
    read_calibration,
    run_settings,
    size_class,
)

__all__ = [
    "ARCH_LABELS",
    "CALIBRATION_BATCHES",
    "CALIBRATION_FILE",
    "CALIBRATION_SHAPE",
    "CALIBRATION_SIDES",
    "DEFAULT_BATCH",
    "DEFAULT_CHANNELS_LAST",
    "CancelCallback",
    "Prediction",
    "PredictionCancelled",
    "ProgressCallback",
    "RunSettings",
    "SlicePlan",
    # Private, re-exported for benchmarks/bench_predict.py, which names calibration candidates and CPU cores.
    "_candidate_name",
    "_physical_cores",
    "available_devices",
    "cache_dir",
    "cached_calibrations",
    "calibrate",
    "calibration_candidates",
    "calibration_key",
    "choose_settings",
    "choose_slice_axis",
    "default_batch_size",
    "default_settings",
    "device_description",
    "finish_slices",
    "input_normalisation",
    "load_model",
    "model_input_spacing",
    "plan_slices",
    "predict_slices",
    "predict_volume",
    "predict_volumes",
    "read_calibration",
    "resample_slices",
    "resolve_device",
    "run_settings",
    "size_class",
]
