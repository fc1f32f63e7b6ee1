"""What a run computes in its worker thread: the predictions, then every output layer's values, handed to the GUI
thread one layer step at a time.

No Qt and no napari here (only plain data in, plain data out): the widget captures a :class:`RunRequest` on the
GUI thread, and the worker talks back only through a :class:`WorkerLink` of callables. That is what keeps
volume-sized work (prediction, percent conversion, |error|, differences, slice merging, the ground truth's
resampling) off the GUI thread (issue #11).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_sff import io, roi
from napari_sff.inference import PredictionCancelled, predict_volume
from napari_sff.preprocess import input_kind_warning
from napari_sff.widgets._colorbar import PART_STEPS
from napari_sff.widgets._layers import output_name
from napari_sff.widgets.predict.layers import layer_options


@dataclass
class LayerOutput:
    """One layer a run shows, with its values computed in the worker (the GUI thread only hands it to napari)."""

    name: str
    data: np.ndarray
    kind: str
    arch: str | None
    prediction: Any
    options: dict


@dataclass
class RunRequest:
    """Everything one run needs, captured on the GUI thread so the worker never touches widgets."""

    layer: Any
    volume: Any
    archs: tuple[str, ...]
    weights: dict[str, str | None]
    device: str
    ddim_steps: int
    samples: int
    batch_size: int | None  # None: the calibrated (or device default) batch size
    slice_axis: int | str
    slice_indices: list[int] | None
    ground_truth: Any = None
    resample: bool = True
    mirror: bool = True  # U-Net: the mean with the mirrored slices' maps
    precision: str | None = None  # None: the calibrated (or device default) precision
    results: dict = field(default_factory=dict)
    # (layer data, its value scale, plan, prediction-grid voxel -> truth voxel) captured on the GUI thread; the
    # worker converts it to fractions and resamples it into ``truth``
    truth_source: tuple | None = None
    truth: np.ndarray | None = None  # the ground truth on the prediction's grid
    live: bool = False
    # the input layer's value scale (io.LAYER_SCALE_KEY): its fractions are checked for labels / SFF maps in the
    # worker (converting 26 M voxels, or importing dask to defer it, costs the GUI thread 50-600 ms)
    value_scale: float = 1.0
    # slice runs: the data of the layers they merge into (read on the GUI thread; copied in the worker)
    existing: dict[str, Any] = field(default_factory=dict)
    outputs: list[LayerOutput] = field(default_factory=list)


@dataclass
class WorkerLink:
    """How the worker reaches the widget without touching it: each callable is safe to call from the worker."""

    warn: Callable[[str], None]  # a warning, shown once on the GUI thread
    progress: Callable[[int, int, str], None]  # (done, total, arch); RuntimeError once the widget is gone
    cancelled: Callable[[], bool]  # Stop was pressed (or the widget is closing)
    shown: threading.Event  # set by the GUI thread once it has shown the step the worker yielded
    closed: Callable[[], bool]  # the widget was closed: nobody will show the next step


#: The GUI thread's steps for each output layer, one per event-loop turn. napari's costs for a new SFF map on a
#: 2-core AMD EPYC: adding an image layer (50-90 ms: 30-40 without its layer controls, which take 20-35 ms;
#: _insertion), building its colour bar (60-90 ms of Python) and the colour bar's first draw (65-105 ms,
#: compiling five shader programs, with _shader_parsing; 100-110 ms without), which Qt runs right after the step
#: that asks for it. So a new layer is added unselected and without its controls ("add"), which come next
#: ("controls"); a new map that will be shown is added hidden, its colour bar built while hidden and turned off
#: again ("style"), the map shown ("show": only the image is drawn) and then its colour bar, a part per step
#: ("colorbar": nothing drawn, then _colorbar.PART_STEPS); each its own stall instead of one of 150-230 ms.
#: Before adding a layer and before building a colour bar, a full garbage collection runs in a step of its own
#: ("collect") when Python's would come due in the next (imports.collect_if_due): inside the step it added
#: 30-50 ms. A step with nothing to do for a layer does nothing.
LAYER_STEPS = ("collect", "add", "controls", "collect", "style", "show", "colorbar", *PART_STEPS)


def compute(request: RunRequest, link: WorkerLink) -> Iterator[tuple[str, LayerOutput]]:
    """Worker thread (a generator): run each model in turn and compute every output layer's values; no napari
    or Qt objects are touched here. Then yield the layers one step at a time (:data:`LAYER_STEPS`), waiting
    until the GUI thread has shown each, so that it returns to its event loop between steps instead of freezing
    for all of them.

    Returns None when stopped: cancelling is not an error, and nothing is half-made.
    """
    problem = input_kind_warning(fractions(request.volume.array, request.value_scale))
    if problem:
        link.warn(f"napari-sff: '{request.layer.name}': {problem}; predicting anyway")
    try:
        predict_all(request, link)
    except PredictionCancelled:
        return None
    request.outputs = layer_outputs(request)
    for output in request.outputs:
        for step in LAYER_STEPS:
            link.shown.clear()
            yield step, output
            while not link.shown.wait(0.05):
                if link.closed():
                    return None
    return request


def layer_outputs(request: RunRequest) -> list[LayerOutput]:
    """Every layer of the run in the layers' unit (percent), merged into the existing slice-run layers."""
    outputs = []
    source = request.layer.name
    sff_by_arch = {}
    for arch, prediction in request.results.items():
        # layers hold percent: each new map is converted before it is merged into an existing layer
        name = output_name("sff", arch, source)
        sff = merge_slices(name, io.to_layer_percent(prediction.sff), prediction, request)
        sff_by_arch[arch] = sff
        outputs.append(LayerOutput(name, sff, "sff", arch, prediction, layer_options("sff", sff)))
        if prediction.std is not None:
            name = output_name("std", arch, source)
            std = merge_slices(name, io.to_layer_percent(prediction.std), prediction, request)
            outputs.append(LayerOutput(name, std, "std", arch, prediction, layer_options("std", std)))
        if request.truth is not None:  # on the prediction's grid (resampled in the worker if need be)
            error = np.abs(sff - io.to_layer_percent(request.truth)).astype(np.float32, copy=False)
            outputs.append(LayerOutput(output_name("error", arch, source), error, "error", arch, prediction,
                                       layer_options("error", error)))
    if {"unet", "ddpm"} <= set(sff_by_arch):  # both in percent: the difference is in pp
        difference = (sff_by_arch["ddpm"] - sff_by_arch["unet"]).astype(np.float32, copy=False)
        outputs.append(LayerOutput(output_name("difference", None, source), difference, "difference", None,
                                   None, layer_options("difference", difference)))
    return outputs


def fractions(data: Any, value_scale: float) -> Any:
    """A layer's values as fat fractions (:func:`io.layer_fraction`), in the worker."""
    return io.layer_fraction(data, {io.LAYER_SCALE_KEY: value_scale})


def predict_all(request: RunRequest, link: WorkerLink) -> RunRequest:
    """The ground truth onto the prediction's grid, then each model's prediction into ``request.results``."""
    if request.truth_source is not None:
        data, scale, how, grid_to_truth = request.truth_source
        array = fractions(data, scale)
        grid_shape = request.volume.array.shape[-array.ndim:]
        truth = array if how == "same" else roi.resample_to_grid(array, grid_to_truth, grid_shape, labels=False)
        request.truth = np.asarray(truth, np.float32).reshape(request.volume.array.shape)
    for arch in request.archs:
        def progress(done: int, total: int, arch: str = arch) -> None:
            try:
                link.progress(done, total, arch)
            except RuntimeError:  # the widget was closed under us: stop quietly
                raise PredictionCancelled("widget closed") from None

        request.results[arch] = predict_volume(
            request.volume.array, request.volume.spacing, arch, weights=request.weights[arch],
            device=request.device, slice_axis=request.slice_axis, slice_indices=request.slice_indices,
            batch_size=request.batch_size, ddim_steps=request.ddim_steps, samples=request.samples,
            progress=progress, cancel=link.cancelled, resample=request.resample, mirror=request.mirror,
            precision=request.precision, calibrate=False,  # auto: a calibration cached by napari-sff predict, else the device's default
        )
    return request


def merge_slices(name: str, values: np.ndarray, prediction: Any, request: RunRequest) -> np.ndarray:
    """Whole-volume runs replace the map; single-slice runs fill that slice of the existing layer ``name``
    (``values`` in the layer's unit, percent; the layer's data captured on the GUI thread, merged here in the
    worker)."""
    if request.slice_indices is None:
        return values
    existing = request.existing.get(name)
    if existing is not None and existing.shape == values.shape:
        merged = np.array(existing, dtype=np.float32)
        take = [slice(None)] * values.ndim
        take[prediction.slice_axis] = prediction.slice_indices
        merged[tuple(take)] = values[tuple(take)]
        return merged
    return values
