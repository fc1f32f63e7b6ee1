"""Predict SFF from the selected T2w layer with the U-Net, the DDPM or both, in a napari thread worker.

The widget only gathers settings, starts :func:`napari_sff.inference.predict_volume` in a worker, and turns its
:class:`~napari_sff.inference.Prediction` into layers placed exactly like the source. Everything it computes,
the CLI computes too.

The GUI thread never computes on a volume (issue #11: no stall over 100 ms on 512 x 512 x 100): percent
conversion, |error|, differences and slice merging run in the worker, which then hands the finished layers to
napari one step per event-loop turn; the heavy imports of the first Run happen in the background at docking.
"""

from __future__ import annotations

import gc
import importlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch  # noqa: F401  (before Qt where we control the order; this module loads only when docked)
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, ProgressBar, PushButton, SpinBox
from qtpy.QtCore import QObject, Signal

from napari_sff import io, roi
from napari_sff.inference import (
    ARCH_LABELS,
    PredictionCancelled,
    available_devices,
    default_batch_size,
    predict_volume,
)
from napari_sff.preprocess import input_kind_warning
from napari_sff.widgets import _layers
from napari_sff.widgets._layers import SCOPES, output_name

MODEL_CHOICES = {"U-Net": ("unet",), "DDPM": ("ddpm",), "Both (compare)": ("unet", "ddpm")}
ERROR_COLORMAP = "magma"
#: Diverging with a dark centre (matplotlib's "berlin"), so DDPM - U-Net adds onto the anatomy beneath it
#: (napari's "bwr" is white at 0 and would wash the anatomy out); "bwr" where matplotlib lacks it.
DIFFERENCE_COLORMAP = "berlin"
#: Grid cells of the comparison, in reading order: (title, kind, arch, shown at once). The others are on demand:
#: ticking a hidden map's eye in the layer list shows it in its own cell with its anatomy.
COMPARISON_CELLS = (("U-Net SFF", "sff", "unet", True), ("DDPM SFF", "sff", "ddpm", True),
                    ("DDPM − U-Net", "difference", None, True), ("|U-Net − ground truth|", "error", "unet", False),
                    ("|DDPM − ground truth|", "error", "ddpm", False), ("DDPM SD", "std", "ddpm", False))
#: A cell's T2w copy is named (and its cell titled) "<title> on T2w": in the layer list it reads as the anatomy.
ANATOMY_SUFFIX = " on T2w"
#: Colour scales of the derived layers, in the layers' unit (percent, :data:`io.SFF_LAYER_PERCENT`): |error|
#: and DDPM − U-Net up to 20 percentage points, the SD from 0 to its maximum (at least 5 pp).
ERROR_LIMITS = (0.0, 20.0)
DIFFERENCE_LIMITS = (-20.0, 20.0)
MIN_STD_LIMIT = 5.0
#: The cursor readout: (short name, kind, arch, unit); the ground truth comes first.
READOUT = (("U-Net", "sff", "unet", "%"), ("DDPM", "sff", "ddpm", "%"), ("DDPM − U-Net", "difference", None, "pp"))
#: Grid spacing between comparison cells (a fraction of a cell), so each map reads as its own panel.
GRID_SPACING = 0.03
#: What the first Run would otherwise import in its worker (MONAI, scikit-image, the domain check: about 3 s
#: here): imported in the background as soon as the widget is docked. Imports hold the GIL only in short
#: stretches, but their full garbage collections over every object of the process stop the GUI thread too
#: (106-157 ms each, three while importing napari_sff.models, measured with gc.callbacks): better while the
#: user is still choosing settings than between pressing Run and seeing the map.
PRELOAD_MODULES = ("napari_sff.models", "napari_sff.domain", "skimage.transform")
#: Set once :data:`PRELOAD_MODULES` are imported (or failed to: the run then imports and reports them itself).
PRELOADED = threading.Event()
_preload_started = threading.Lock()


def _preload() -> None:
    try:
        for name in PRELOAD_MODULES:
            importlib.import_module(name)
        # The imports leave ~150 k new long-lived objects: Python's next full collection (every object of the
        # process, 130 ms here when idle, 500+ ms when the cores are busy) would fall in the first Run; collect
        # now, while the user is still choosing settings.
        gc.collect()
    finally:
        PRELOADED.set()


def start_preload() -> None:
    """Import :data:`PRELOAD_MODULES` in a worker thread, once per process."""
    if not _preload_started.acquire(blocking=False):
        return
    from napari.qt.threading import create_worker

    create_worker(_preload, _start_thread=True, _ignore_errors=True)  # an import error surfaces in the run


def _difference_colormap() -> str:
    from napari.utils.colormaps import ensure_colormap

    try:
        ensure_colormap(DIFFERENCE_COLORMAP)
    except (KeyError, ValueError):
        return "bwr"
    return DIFFERENCE_COLORMAP


@dataclass
class LayerOutput:
    """One layer a run shows, with its values computed in the worker (the GUI thread only hands it to napari)."""

    name: str
    data: np.ndarray
    kind: str
    arch: str | None
    prediction: Any
    options: dict


def is_predicted_sff(layer: Any) -> bool:
    """A predicted SFF map (not its SD, |error| or difference, nor a measured map)."""
    info = layer.metadata.get("napari_sff") or {}
    return info.get("kind") == "sff" and bool(info.get("model"))


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
    batch_size: int
    slice_axis: int | str
    slice_indices: list[int] | None
    ground_truth: Any = None
    resample: bool = True
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


class _ProgressBridge(QObject):
    """Carries progress from the worker thread to the GUI thread (Qt queues cross-thread signals)."""

    progressed = Signal(int, int, str)
    warned = Signal(str)


class PredictWidget(Container):
    """Dock widget: T2w layer -> SFF layer(s), with live slice mode and model comparison."""

    def __init__(self, napari_viewer: Any):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self._worker = None
        self._worker_request: RunRequest | None = None  # the run of ``_worker``
        self._closed = False
        self._cancel = threading.Event()
        self._live_done: set[tuple] = set()  # (layer id, axis, index) already in the live layer
        self._said: set[str] = set()  # warnings already shown (live mode re-checks every slice)
        self._source: Any = None  # T2w layer of the last run: the comparison and the readout are about it
        self._anatomy: np.ndarray | None = None  # the T2w volume of the last run (one time point of a 4D layer)
        self._cell_links: list[tuple[Any, Any]] = []  # (map visible event, callback) of the comparison grid
        self._hidden_for_grid: list[Any] = []  # layers the comparison grid hid; shown again when it ends
        self._bridge = _ProgressBridge()
        self._bridge.progressed.connect(self._on_progress)
        self._bridge.warned.connect(self._warn_once)
        self._shown = threading.Event()  # the GUI thread has shown the layer step the worker yielded
        self._adding = False  # inside a step that adds a layer: its styling is the next step
        self._style_pending: dict[int, Any] = {}  # id(hidden layer) -> callback styling it once shown
        start_preload()

        self.image = ComboBox(label="T2w image", choices=self._image_choices)
        self.time_point = SpinBox(label="volume (4D)", min=0, max=0, visible=False)
        self.model = ComboBox(label="model", choices=list(MODEL_CHOICES), value="U-Net")
        self.unet_weights = FileEdit(label="U-Net weights", filter="*.safetensors", value="")
        self.ddpm_weights = FileEdit(label="DDPM weights", filter="*.safetensors", value="")
        self.device = ComboBox(label="device", choices=["auto", *available_devices()], value="auto")
        self.ddim_steps = SpinBox(label="DDIM steps", min=1, max=1000, value=50)
        self.samples = SpinBox(label="DDPM samples", min=1, max=64, value=1)
        self.scope = ComboBox(label="scope", choices=list(SCOPES), value=SCOPES[0])
        self.batch_size = SpinBox(label="batch size", min=1, max=256,
                                  value=default_batch_size(available_devices()[0]))
        self.ground_truth = ComboBox(label="ground truth", choices=self._image_choices, nullable=True)
        self.resample = CheckBox(text="resample to the model's training pixel size", value=True,
                                 tooltip="pixels outside the spacing the model was trained on are resized into it "
                                         "for the model and the SFF back to the image grid")
        self.live = CheckBox(text="live U-Net on the viewed slice")
        self.side_by_side = CheckBox(text="side by side (grid)")
        self.run_button = PushButton(text="Run")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.device_badge = Label(label="device", value="")
        self.timing = Label(label="time/slice", value="")
        self.readout = Label(label="under cursor", value="")
        self.extend([self.image, self.time_point, self.model, self.unet_weights, self.ddpm_weights, self.device,
                     self.ddim_steps, self.samples, self.scope, self.batch_size, self.ground_truth, self.resample,
                     self.live,
                     self.side_by_side, self.run_button, self.stop_button, self.progress, self.device_badge,
                     self.timing, self.readout])
        self._controls = [w for w in self if w not in (self.stop_button, self.progress, self.device_badge,
                                                       self.timing, self.readout, self.side_by_side)]

        self.run_button.changed.connect(self.run)
        self.stop_button.changed.connect(self.stop)
        self.image.changed.connect(self._on_image_changed)
        self.model.changed.connect(self._on_model_changed)
        self.side_by_side.changed.connect(self._on_side_by_side)
        self.live.changed.connect(self._on_live_toggled)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_choices)
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        self.viewer.layers.events.removed.connect(self._on_removed)
        for existing in self.viewer.layers:
            _layers.style_layer(existing)
        self.viewer.dims.events.current_step.connect(self._on_step)
        self.viewer.mouse_move_callbacks.append(self._on_mouse_move)
        self.native.destroyed.connect(self._shutdown)
        self._on_model_changed(self.model.value)
        self._refresh_choices()
        self._on_image_changed(self.image.value)
        self.save_dicom_button = PushButton(text="Save as DICOM…", tooltip="save the selected SFF or SD layer as a "
                                            "new DICOM series in its source study (a new folder)")
        self.append(self.save_dicom_button)
        self.save_dicom_button.changed.connect(self._on_save_dicom)

    # ----------------------------------------------------------------------------------------- choices
    def _image_choices(self, _widget=None) -> list[tuple[str, Any]]:
        """Image layers that are not our own outputs: candidates for the T2w input and the ground truth."""
        return [(layer.name, layer) for layer in self.viewer.layers
                if _layers.is_image(layer) and not _layers.made_by_us(layer)]

    def _refresh_choices(self, *_: Any) -> None:
        self.image.reset_choices()
        self.ground_truth.reset_choices()
        if self.ground_truth.value is None or self.ground_truth.value is self.image.value:
            guess = _layers.find_ground_truth(self.viewer, exclude=self.image.value)
            if guess is not None:
                self.ground_truth.value = guess
        if self.image.value is not None and io.SFF_NAME_PATTERN.search(self.image.value.name):
            better = [layer for _, layer in self._image_choices() if not io.SFF_NAME_PATTERN.search(layer.name)]
            if better:
                self.image.value = better[0]

    def _on_image_changed(self, layer: Any) -> None:
        is_4d = layer is not None and layer.ndim == 4
        self.time_point.visible = is_4d
        if is_4d:
            self.time_point.max = layer.data.shape[0] - 1
            self.time_point.value = int(self.viewer.dims.current_step[0])
        self._live_done.clear()

    def _on_model_changed(self, choice: str) -> None:
        archs = MODEL_CHOICES[choice]
        uses_ddpm = "ddpm" in archs
        for widget in (self.ddim_steps, self.samples, self.ddpm_weights):
            widget.visible = uses_ddpm
        self.unet_weights.visible = "unet" in archs
        self.side_by_side.visible = len(archs) > 1

    # ------------------------------------------------------------------------------------------- runs
    @staticmethod
    def _weights(edit: FileEdit) -> str | None:
        """The user's checkpoint, or None for the shipped weights.

        An emptied FileEdit reports the working directory as its value, so a folder means "no file chosen".
        """
        text = str(edit.line_edit.value).strip()
        return None if text in ("", ".") or Path(text).is_dir() else text

    def current_slice_index(self, layer: Any) -> tuple[int, int]:
        """(axis, index) of the slice on screen in the layer's 3D data (time dropped; axis 0 in a 3D view)."""
        drop = layer.ndim - 3
        found = _layers.current_slice(self.viewer, layer)
        axis, index = found if found is not None else (drop, int(round(layer.world_to_data(self.viewer.dims.point)[drop])))
        return axis - drop, int(np.clip(index, 0, layer.data.shape[axis] - 1))

    def make_request(self, scope: str | None = None, archs: tuple[str, ...] | None = None) -> RunRequest | None:
        """Validate the settings; on a problem show a notification and return None."""
        from napari.utils.notifications import show_error, show_info

        layer = self.image.value
        if layer is None:
            show_error("napari-sff: no T2w image layer; open a T2w NIfTI or File > Open Sample > napari-sff")
            return None
        if layer.ndim not in (2, 3, 4) or getattr(layer, "rgb", False):
            show_error(f"napari-sff: layer '{layer.name}' is {layer.ndim}D/RGB; choose a 2D, 3D or 4D grayscale image")
            return None
        time_index = self.time_point.value if layer.ndim == 4 else None
        if layer.ndim == 4:
            show_info(f"napari-sff: '{layer.name}' is 4D; predicting volume {time_index} (change it in 'volume')")
        volume = _layers.layer_volume(layer, time_index)
        scope = scope or self.scope.value
        slice_axis, indices = "auto", None
        if scope == SCOPES[1] and volume.array.ndim == 3:
            slice_axis, index = self.current_slice_index(layer)
            indices = [index]
        archs = archs or MODEL_CHOICES[self.model.value]
        truth = self.ground_truth.value
        truth = truth if truth is not None and truth is not layer else None
        existing = {}
        if indices is not None:  # merged into in the worker (a copy of a whole volume takes ~50 ms per map)
            for arch in archs:
                for kind in ("sff", "std"):
                    name = output_name(kind, arch, layer.name)
                    if name in self.viewer.layers:
                        existing[name] = self.viewer.layers[name].data
        return RunRequest(layer=layer, volume=volume, archs=archs, existing=existing,
                          value_scale=io.layer_value_scale(layer.metadata),
                          weights={"unet": self._weights(self.unet_weights), "ddpm": self._weights(self.ddpm_weights)},
                          device=self.device.value, ddim_steps=self.ddim_steps.value, samples=self.samples.value,
                          batch_size=self.batch_size.value, slice_axis=slice_axis, slice_indices=indices,
                          ground_truth=truth, resample=self.resample.value,
                          truth_source=None if truth is None else self._truth_plan(truth, layer, volume))

    def _truth_plan(self, truth: Any, layer: Any, volume: io.Volume) -> tuple | None:
        """How the ground truth reaches the prediction's grid (the T2w's spatial grid) by world coordinates, with
        :func:`napari_sff.roi.plan` (the ROI widget's rule); None, after a notification, when it cannot."""
        from napari.layers import Image

        if not isinstance(truth, Image) or truth.rgb or truth.multiscale or truth.ndim != min(layer.ndim, 3):
            self._warn_once(f"napari-sff: ground truth '{truth.name}' is not a {min(layer.ndim, 3)}-D grayscale map "
                            "like the T2w; no |error| layer")
            return None
        ndim = truth.ndim
        how, grid_to_truth, reason = roi.plan(roi.layer_to_world(truth), truth.data.shape,
                                              roi.layer_to_world(layer, ndim), layer.data.shape[-ndim:],
                                              truth.name, layer.name)
        if how == "incompatible":
            self._warn_once(f"napari-sff: ground truth {reason}; no |error| layer")
            return None
        return truth.data, io.layer_value_scale(truth.metadata), how, grid_to_truth  # read in the worker

    def _warn_once(self, message: str) -> None:
        from napari.utils.notifications import show_warning

        if message not in self._said:
            self._said.add(message)
            show_warning(message)

    def run(self, *_: Any, scope: str | None = None):
        """Start a run in a worker; returns the worker (tests wait on it) or None if nothing was started."""
        if self._worker is not None:
            return None
        request = self.make_request(scope)
        if request is None:
            return None
        return self._start(request)

    def _start(self, request: RunRequest, live: bool = False):
        from napari.qt.threading import create_worker

        self._cancel.clear()
        self._set_running(True, live)
        # Errors are ours to report (as notifications), not napari's to re-raise.
        worker = create_worker(self._compute, request, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker, self._worker_request = worker, request
        worker.start()
        return worker

    def _compute(self, request: RunRequest) -> Iterator[tuple[str, LayerOutput]]:
        """Worker thread (a generator): run each model in turn and compute every output layer's values; no napari
        or Qt objects are touched here. Then yield the layers one step at a time ("add", then "style": napari
        spends ~130 ms adding any image layer and ~60-120 ms on its colour bar here), waiting until the GUI thread
        has shown each, so that it returns to its event loop between steps instead of freezing for all of them.

        Returns None when stopped: cancelling is not an error, and nothing is half-made.
        """
        problem = input_kind_warning(self._fractions(request.volume.array, request.value_scale))
        if problem:
            self._bridge.warned.emit(f"napari-sff: '{request.layer.name}': {problem}; predicting anyway")
        try:
            self._predict_all(request)
        except PredictionCancelled:
            return None
        request.outputs = self._outputs(request)
        for output in request.outputs:
            for step in ("add", "style"):
                self._shown.clear()
                yield step, output
                while not self._shown.wait(0.05):
                    if self._closed:
                        return None
        return request

    def _outputs(self, request: RunRequest) -> list[LayerOutput]:
        """Every layer of the run in the layers' unit (percent), merged into the existing slice-run layers."""
        outputs = []
        source = request.layer.name
        sff_by_arch = {}
        for arch, prediction in request.results.items():
            # layers hold percent: each new map is converted before it is merged into an existing layer
            name = output_name("sff", arch, source)
            sff = self._merge_slices(name, io.to_layer_percent(prediction.sff), prediction, request)
            sff_by_arch[arch] = sff
            outputs.append(LayerOutput(name, sff, "sff", arch, prediction, dict(
                colormap=io.SFF_COLORMAP, contrast_limits=(0.0, io.SFF_LAYER_PERCENT), blending="additive",
                opacity=0.7)))
            if prediction.std is not None:
                name = output_name("std", arch, source)
                std = self._merge_slices(name, io.to_layer_percent(prediction.std), prediction, request)
                outputs.append(LayerOutput(name, std, "std", arch, prediction, dict(
                    colormap="viridis", contrast_limits=(0.0, max(MIN_STD_LIMIT, float(std.max()))),
                    blending="additive", visible=False)))
            if request.truth is not None:  # on the prediction's grid (resampled in the worker if need be)
                error = np.abs(sff - io.to_layer_percent(request.truth)).astype(np.float32, copy=False)
                outputs.append(LayerOutput(output_name("error", arch, source), error, "error", arch, prediction,
                                           dict(colormap=ERROR_COLORMAP, contrast_limits=ERROR_LIMITS,
                                                blending="additive", visible=False)))
        if {"unet", "ddpm"} <= set(sff_by_arch):  # both in percent: the difference is in pp
            difference = (sff_by_arch["ddpm"] - sff_by_arch["unet"]).astype(np.float32, copy=False)
            outputs.append(LayerOutput(output_name("difference", None, source), difference, "difference", None,
                                       None, dict(contrast_limits=DIFFERENCE_LIMITS,
                                                  blending="additive", visible=False)))
        return outputs

    @staticmethod
    def _fractions(data: Any, value_scale: float) -> Any:
        """A layer's values as fat fractions (:func:`io.layer_fraction`), in the worker."""
        return io.layer_fraction(data, {io.LAYER_SCALE_KEY: value_scale})

    def _predict_all(self, request: RunRequest) -> RunRequest:
        if request.truth_source is not None:
            data, scale, how, grid_to_truth = request.truth_source
            array = self._fractions(data, scale)
            grid_shape = request.volume.array.shape[-array.ndim:]
            truth = array if how == "same" else roi.resample_to_grid(array, grid_to_truth, grid_shape, labels=False)
            request.truth = np.asarray(truth, np.float32).reshape(request.volume.array.shape)
        for arch in request.archs:
            def progress(done: int, total: int, arch: str = arch) -> None:
                try:
                    self._bridge.progressed.emit(done, total, arch)
                except RuntimeError:  # the widget was closed under us: stop quietly
                    raise PredictionCancelled("widget closed") from None

            request.results[arch] = predict_volume(
                request.volume.array, request.volume.spacing, arch, weights=request.weights[arch],
                device=request.device, slice_axis=request.slice_axis, slice_indices=request.slice_indices,
                batch_size=request.batch_size, ddim_steps=request.ddim_steps, samples=request.samples,
                progress=progress, cancel=self._cancel.is_set, resample=request.resample,
            )
        return request

    def stop(self, *_: Any) -> None:
        """Ask the worker to stop after the current batch (or DDIM step)."""
        self._cancel.set()

    def _shutdown(self, *_: Any) -> None:
        """Widget closing: unhook from the viewer, stop the run and wait for it (no thread outlives us)."""
        self._closed = True
        self._cancel.set()
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.disconnect(self._refresh_choices)
        self.viewer.layers.events.inserted.disconnect(self._on_inserted)
        self.viewer.layers.events.removed.disconnect(self._on_removed)
        self._unlink_cells()
        self.viewer.dims.events.current_step.disconnect(self._on_step)
        if self._on_mouse_move in self.viewer.mouse_move_callbacks:
            self.viewer.mouse_move_callbacks.remove(self._on_mouse_move)
        if self._worker is not None:
            from napari.qt.threading import WorkerBase

            WorkerBase.await_workers(msecs=60_000)

    def _set_running(self, running: bool, live: bool = False) -> None:
        for widget in self._controls:
            widget.enabled = not running
        self.stop_button.enabled = running and not live
        if running:
            self.progress.value = 0

    def _on_progress(self, done: int, total: int, arch: str) -> None:
        if self._closed:
            return
        self.progress.max = max(1, total)
        self.progress.value = min(done, total)
        self.progress.label = f"{ARCH_LABELS[arch]}"

    def _on_errored(self, error: Exception) -> None:
        if self._closed:
            return
        from napari.utils.notifications import show_error

        show_error(f"napari-sff: {error}")

    def _on_finished(self) -> None:
        self._worker, self._worker_request = None, None  # the run's fractions and truth: no longer held
        if self._closed:
            return
        self._set_running(False)

    # ---------------------------------------------------------------------------------------- results
    def _on_yielded(self, step: tuple[str, LayerOutput]) -> None:
        """One layer step of a finished run (see :meth:`_compute`): add or update the layer, or style it."""
        what, output = step
        try:
            if self._closed:
                return
            self.stop_button.enabled = False  # the maps are being shown: too late to stop
            request = self._worker_request
            if what == "add":
                options = dict(output.options)
                if output.kind == "difference":
                    options["colormap"] = _difference_colormap()
                self._adding = True
                try:
                    self._add(request.layer, request, output.name, output.data, output.arch, output.prediction,
                              kind=output.kind, **options)
                finally:
                    self._adding = False
            elif output.name in self.viewer.layers:
                self._style(self.viewer.layers[output.name], output.kind)
        finally:
            # The next step is released two event-loop turns later, not here: Qt handles events posted while it
            # handles posted events in the same pass, so the next step would follow without the timers, input
            # and the canvas's draw of this layer (60-400 ms here) getting their turn in between.
            from qtpy.QtCore import QTimer

            QTimer.singleShot(0, lambda: QTimer.singleShot(0, self._shown.set))

    def _on_returned(self, request: RunRequest | None) -> None:
        if self._closed:
            return
        if request is None:
            from napari.utils.notifications import show_info

            show_info("napari-sff: prediction stopped; no layer was changed")
            return
        layer = request.layer
        timings = []
        for arch, prediction in request.results.items():
            device = prediction.device
            self._badge(request.device, device)
            resampled = (f", at {prediction.model_spacing[0]:.2f} × {prediction.model_spacing[1]:.2f} mm"
                         if prediction.model_spacing else "")
            timings.append(f"{ARCH_LABELS[arch]} {prediction.ms_per_slice:.1f} ms ({device}{resampled})")
            if prediction.out_of_distribution:  # napari_sff.domain: the scan against the checkpoint's training data
                self._warn_once(f"napari-sff: {ARCH_LABELS[arch]} on '{layer.name}': {prediction.out_of_distribution}")
        self.timing.value = "; ".join(timings)
        self._source, self._anatomy = layer, request.volume.array
        if not request.live:  # live mode follows the slider: leave the user's selection alone
            self._present(layer, list(request.results))

    def _merge_slices(self, name: str, values: np.ndarray, prediction, request: RunRequest) -> np.ndarray:
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

    def _add(self, layer, request: RunRequest, name: str, data: np.ndarray, arch, prediction, *, kind: str,
             **kwargs) -> Any:
        derived = request.volume.like(data)
        info = {"model": arch, "source_layer": layer.name, "kind": kind}
        if prediction is not None:
            info.update(device=prediction.device, ms_per_slice=prediction.ms_per_slice,
                        weights=request.weights.get(arch) or "shipped", model_spacing_mm=prediction.model_spacing)
        metadata = {"nifti": derived.source, "napari_sff": info, io.LAYER_SCALE_KEY: io.SFF_LAYER_PERCENT}
        added = _layers.upsert_image(self.viewer, name, data, layer, metadata=metadata, **kwargs)
        if not self._adding:  # else the next step: napari builds the colour bar in ~60-120 ms on its own
            self._style(added, kind)
        return added

    def _style(self, layer: Any, kind: str) -> None:
        """The layer's colour bar; for a hidden map (|error|, SD, difference) when it is first shown: napari
        builds a colour bar in 60-120 ms here even for a layer nobody looks at."""
        if not layer.visible:
            if id(layer) not in self._style_pending:
                def on_shown(_event: Any = None, layer: Any = layer, kind: str = kind) -> None:
                    if layer.visible:
                        layer.events.visible.disconnect(on_shown)
                        self._style_pending.pop(id(layer), None)
                        if not layer.colorbar.visible:  # the comparison grid may have placed it already
                            self._style(layer, kind)

                self._style_pending[id(layer)] = on_shown
                layer.events.visible.connect(on_shown)
            return
        _layers.style_layer(layer)
        if kind != "sff" and hasattr(layer, "colorbar"):  # an SFF map may be shown with one of these: no overlap
            layer.colorbar.position = "bottom_right"

    def _badge(self, requested: str, used: str) -> None:
        fallback = requested == "auto" and used == "cpu"
        self.device_badge.value = "CPU (no GPU available: slower)" if fallback else used

    # -------------------------------------------------------------------------------------- live mode
    def _on_live_toggled(self, on: bool) -> None:
        self._live_done.clear()
        if on:
            self._on_step()

    def _on_step(self, *_: Any) -> None:
        if self._closed or not self.live.value or self._worker is not None or self.image.value is None:
            return
        layer = self.image.value
        if layer.ndim != 3:
            return
        axis, index = self.current_slice_index(layer)
        name = output_name("sff", "unet", layer.name)
        key = (id(layer), axis, index)
        if key in self._live_done and name in self.viewer.layers:
            return
        request = self.make_request(scope=SCOPES[1], archs=("unet",))
        if request is not None:
            request.live = True
            self._live_done.add(key)
            self._start(request, live=True)

    # ------------------------------------------------------------------------------------- reading view
    def _on_inserted(self, event: Any) -> None:
        if not self._adding:  # a run's own layers are styled in the step after their insertion
            _layers.style_layer(event.value)

    def _on_removed(self, event: Any) -> None:
        """A comparison map removed takes its anatomy cell with it; the run's T2w removed ends the comparison."""
        from qtpy.QtCore import QTimer

        gone = event.value
        self._style_pending.pop(id(gone), None)
        if gone is self._source:
            self._source, self._anatomy = None, None
        orphans = [layer for layer in self.viewer.layers
                   if (layer.metadata.get("napari_sff") or {}).get("kind") == "anatomy"
                   and (layer.metadata["napari_sff"].get("cell_of") == gone.name or self._source is None)]
        if orphans:  # not from inside napari's removal (it may be clearing the whole list): right after it
            QTimer.singleShot(0, lambda: self._remove_layers(orphans))

    def _remove_layers(self, layers: list[Any]) -> None:
        if self._closed:
            return
        for layer in layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)

    def _map(self, kind: str, arch: str | None) -> Any:
        """The run's derived layer of this kind and model, or None."""
        if self._source is None:
            return None
        name = output_name(kind, arch, self._source.name)
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _truth_layer(self) -> Any:
        truth = self.ground_truth.value
        return truth if truth is not None and truth in self.viewer.layers and truth is not self._source else None

    def comparison_cells(self) -> list[tuple[str, Any, bool]]:
        """(title, map layer, shown at once) of each cell of the comparison grid, ground truth first."""
        cells = []
        truth = self._truth_layer()
        if truth is not None and self._source is not None:
            cells.append(("Ground truth SFF", truth, True))
        for title, kind, arch, shown in COMPARISON_CELLS:
            layer = self._map(kind, arch)
            if layer is not None:
                cells.append((title, layer, shown))
        return cells

    def _present(self, source: Any, archs: list[str]) -> None:
        """After a run: the new SFF map is the selected layer, on top of the overlay (or the comparison grid)."""
        main = self._map("sff", archs[-1]) if archs else None
        if main is None:
            return
        if self.side_by_side.value:
            self.show_comparison()
        else:
            for arch in ARCH_LABELS:  # two additive SFF overlays would add up: show the new one
                other = self._map("sff", arch)
                if other is not None and other is not main:
                    other.visible = False
            main.visible = True
            self.viewer.layers.move(self.viewer.layers.index(main), len(self.viewer.layers))
        self.viewer.layers.selection.active = main

    def _on_side_by_side(self, on: bool) -> None:
        if on:
            self.show_comparison()
        else:
            self.end_comparison()

    def show_comparison(self) -> None:
        """The comparison grid: one titled cell per map (ground truth, U-Net, DDPM, DDPM - U-Net; |error| and SD
        on demand), each map over its own copy of the T2w and with its colour bar, one colour scale for every SFF.

        napari's grid puts ``stride`` consecutive layers in a cell, so the layers are ordered (anatomy, map) per
        cell at the bottom of the list; the layers not in a cell are hidden meanwhile and shown again after.
        """
        grid = self.viewer.grid
        cells = self.comparison_cells()
        if not cells:  # nothing predicted yet: napari's plain grid
            grid.enabled = True
            return
        self._unlink_cells()
        style = next((layer for _, layer, _ in cells if is_predicted_sff(layer)), None)
        ordered = []
        for title, layer, shown in cells:
            anatomy = self._anatomy_cell(layer, title)
            if style is not None and layer is self._truth_layer():  # one colour scale for every SFF map
                for attribute in ("colormap", "opacity", "blending"):
                    setattr(layer, attribute, getattr(style, attribute))
                # the same fat fractions, in the truth's own unit (percent; fractions if made elsewhere)
                unit = io.layer_value_scale(layer.metadata) / io.layer_value_scale(style.metadata)
                layer.contrast_limits = tuple(unit * limit for limit in style.contrast_limits)
            layer.visible = shown or (layer.visible and anatomy.visible)  # keep on-demand cells the user opened
            anatomy.visible = layer.visible
            if hasattr(layer, "colorbar"):
                layer.colorbar.visible = True
                layer.colorbar.position = "top_right"

            def follow(_event: Any = None, anatomy: Any = anatomy, layer: Any = layer) -> None:
                anatomy.visible = layer.visible

            layer.events.visible.connect(follow)
            self._cell_links.append((layer.events.visible, follow))
            ordered += [anatomy, layer]
        for layer in list(self.viewer.layers):
            if layer not in ordered and layer.visible:
                layer.visible = False
                self._hidden_for_grid.append(layer)
        for target, layer in enumerate(ordered):
            current = self.viewer.layers.index(layer)
            if current != target:
                self.viewer.layers.move(current, target)
        grid.stride, grid.spacing, grid.enabled = 2, GRID_SPACING, True
        main = next((layer for _, layer, _ in reversed(cells) if is_predicted_sff(layer)), None)
        if main is not None:  # adding the anatomy cells selected them: back to the map
            self.viewer.layers.selection.active = main
        self.viewer.reset_view()

    def end_comparison(self) -> None:
        """Back to one overlay: the anatomy cells go, hidden layers come back, the last SFF map on top."""
        self._unlink_cells()
        self.viewer.grid.enabled = False
        self.viewer.grid.stride = 1
        for layer in list(self.viewer.layers):
            if (layer.metadata.get("napari_sff") or {}).get("kind") == "anatomy":
                self.viewer.layers.remove(layer)
        for layer in self._hidden_for_grid:
            if layer in self.viewer.layers:
                layer.visible = True
        self._hidden_for_grid = []
        for _, layer, _ in self.comparison_cells():
            if not is_predicted_sff(layer):
                layer.visible = False  # ground truth, difference, |error|, SD: back to the layer list
        archs = [arch for arch in ARCH_LABELS if self._map("sff", arch) is not None]
        if self._source is not None and archs:
            self._present(self._source, [archs[-1]])

    def _anatomy_cell(self, layer: Any, title: str) -> Any:
        """The T2w copy (same array, no data copied) under ``layer`` in its cell, titled by its name."""
        for other in self.viewer.layers:
            info = other.metadata.get("napari_sff") or {}
            if info.get("kind") == "anatomy" and info.get("cell_of") == layer.name:
                return other
        source = self._source
        data = self._anatomy if self._anatomy is not None else np.asarray(source.data)
        info = {"kind": "anatomy", "cell_of": layer.name, "source_layer": source.name}
        anatomy = self.viewer.add_image(data, name=title + ANATOMY_SUFFIX, colormap="gray",
                                        contrast_limits=source.contrast_limits, gamma=source.gamma,
                                        metadata={"napari_sff": info},
                                        **_layers.spatial_placement(source, source.ndim - data.ndim))
        anatomy.name_overlay.visible = True
        anatomy.name_overlay.font_size = 12
        return anatomy

    def _unlink_cells(self) -> None:
        for emitter, callback in self._cell_links:
            emitter.disconnect(callback)
        self._cell_links = []

    # ------------------------------------------------------------------------------------------ readout
    def readout_values(self, world_position: Any) -> list[tuple[str, str]]:
        """(map, value) at a world position for the ground truth, U-Net, DDPM and DDPM - U-Net that exist, visible
        or not: SFF in percent, the difference in percentage points, "–" outside a map."""
        entries = [("GT", self.ground_truth.value, "%")]
        entries += [(title, self._map(kind, arch), unit) for title, kind, arch, unit in READOUT]
        values = []
        for title, layer, unit in entries:
            if layer is None or layer not in self.viewer.layers:
                continue
            value = _layers.percent_at(layer, world_position)  # percent layers, or a fraction map
            text = "–" if value is None or not np.isfinite(value) else \
                f"{value:.1f} %" if unit == "%" else f"{value:+.1f} pp"
            values.append((title, text))
        return values

    def _on_mouse_move(self, viewer: Any, event: Any) -> None:
        """Every map's value under the cursor, one per line (napari's status bar shows one layer's)."""
        values = self.readout_values(viewer.cursor.position)
        self.readout.value = "\n".join(f"{title}: {value}" for title, value in values)
        if any(value != "–" for _, value in values):  # napari's status bar shows one layer; help, every map
            viewer.help = " · ".join(f"{title} {value}" for title, value in values)

    # ------------------------------------------------------------------------------------- DICOM export
    def _on_save_dicom(self, *_: Any) -> None:
        from qtpy.QtWidgets import QFileDialog

        folder, _ = QFileDialog.getSaveFileName(self.native, "Save as DICOM series: name a new folder")
        if folder:
            self.save_dicom(folder)

    def save_dicom(self, folder: str | Path, layer: Any = None, **options: Any) -> Path | None:
        """Write ``layer`` (default: the selected one) with :func:`io.write_layer_dicom`; problems are notifications."""
        import napari
        from napari.utils.notifications import show_error, show_info

        layer = layer if layer is not None else self.viewer.layers.selection.active
        if not isinstance(layer, napari.layers.Image):
            show_error("napari-sff: select the SFF layer to save as DICOM")
            return None
        meta = {"name": layer.name, "metadata": layer.metadata, "scale": layer.scale, "translate": layer.translate,
                "rotate": layer.rotate}
        try:
            out = io.write_layer_dicom(layer.data, meta, folder, **options)
        except (ValueError, OSError) as exc:
            show_error(f"napari-sff: {exc}")
            return None
        show_info(f"napari-sff: saved '{layer.name}' as a DICOM series in {out}")
        return out
