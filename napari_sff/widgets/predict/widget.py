"""The dock widget itself: its controls and their layout, the signals that tie them to the viewer, the layer
choices, and closing cleanly.

The work is in the other parts, mixed in here: :mod:`.request` (controls -> a run), :mod:`.runs` (the worker's
life on the GUI thread), :mod:`.worker` (what the run computes), :mod:`.layers` (output layers),
:mod:`.comparison` (the grid), :mod:`.readout` (warnings and values under the cursor), :mod:`.export` (DICOM).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, ProgressBar, PushButton, SpinBox
from qtpy.QtCore import QObject, QTimer, Signal

from napari_sff import io
from napari_sff.imports import heap_frozen_here
from napari_sff.widgets import _layers
from napari_sff.widgets._background import when_set
from napari_sff.widgets._insertion import DeferredControls
from napari_sff.widgets._layers import SCOPES
from napari_sff.widgets._turns import Steps
from napari_sff.widgets.predict.comparison import TITLE_GLYPHS, ComparisonMixin
from napari_sff.widgets.predict.export import ExportMixin
from napari_sff.widgets.predict.layers import OutputLayersMixin
from napari_sff.widgets.predict.preload import (
    COLORBAR_GLYPHS,
    DDPM_PRELOADED,
    DEVICES,
    PRELOADED,
    freeze_heap_until_a_removal,
    start_ddpm_preload,
    start_preload,
    warm_canvas_text,
    when_preloaded,
)
from napari_sff.widgets.predict.readout import ReadoutMixin
from napari_sff.widgets.predict.request import MODEL_CHOICES, RequestMixin
from napari_sff.widgets.predict.runs import RunMixin
from napari_sff.widgets.predict.worker import RunRequest, WorkerLink

#: The batch size choices: (shown, slices per batch; 0 = auto, the calibrated or the device's default)
BATCH_CHOICES = [("auto", 0), *((str(n), n) for n in (1, 2, 4, 8, 16, 32, 64, 128, 256))]
#: The precision choices: (shown, asked of predict_volume; "" = auto, the calibrated or the device's default)
PRECISION_CHOICES = [("auto", ""), ("float32 (full)", "float32"), ("bfloat16", "bfloat16"), ("float16", "float16")]


class _ProgressBridge(QObject):
    """Carries progress from the worker thread to the GUI thread (Qt queues cross-thread signals)."""

    progressed = Signal(int, int, str)
    warned = Signal(str)


class PredictWidget(RequestMixin, RunMixin, OutputLayersMixin, ComparisonMixin, ReadoutMixin, ExportMixin,
                    Container):
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
        self._arrangement = Steps()  # the comparison grid's set-up or take-down, a step per event-loop turn
        self._text_warmup = Steps()  # rendering the glyphs of colour bars and grid titles after docking
        self._shown_maps = Steps()  # the colour bars of hidden maps the user shows, a part per turn (layers.py)
        self._release_heap: Any = None  # undoes the garbage collector's freeze after the preload (preload.py)
        self._ddpm_asked = False  # the Model choice asked for the DDPM: its modules are preloaded then
        self._bridge = _ProgressBridge()
        self._bridge.progressed.connect(self._on_progress)
        self._bridge.warned.connect(self._warn_once)
        self._shown = threading.Event()  # the GUI thread has shown the layer step the worker yielded
        self._adding = False  # inside a step that adds a layer: its styling is the next step
        self._style_pending: dict[str, Any] = {}  # hidden map's name -> callback styling it once shown
        self._revealing: set[str] = set()  # new maps added hidden, until their colour bar is on (layers.py)
        self._colorbar_parts: dict[str, Iterator[None]] = {}  # colour bars being shown a part per step (layers.py)
        self._deferred_controls = DeferredControls(napari_viewer)  # a new layer's controls: a step of their own
        # the worker's only way back (the bridge is looked up at each call: once closed, emit raises RuntimeError)
        self._link = WorkerLink(warn=lambda message: self._bridge.warned.emit(message),
                                progress=lambda done, total, arch: self._bridge.progressed.emit(done, total, arch),
                                cancelled=self._cancel.is_set, shown=self._shown, closed=lambda: self._closed)

        self.image = ComboBox(label="T2w image", choices=self._image_choices)
        self.time_point = SpinBox(label="volume (4D)", min=0, max=0, visible=False)
        self.model = ComboBox(label="model", choices=list(MODEL_CHOICES), value="U-Net")
        self.unet_weights = FileEdit(label="U-Net weights", filter="*.safetensors", value="")
        self.ddpm_weights = FileEdit(label="DDPM weights", filter="*.safetensors", value="")
        self.device = ComboBox(label="device", choices=self._device_choices, value="auto")
        self.ddim_steps = SpinBox(label="DDIM steps", min=1, max=1000, value=50)
        self.samples = SpinBox(label="DDPM samples", min=1, max=64, value=1)
        self.scope = ComboBox(label="scope", choices=list(SCOPES), value=SCOPES[0])
        self.batch_size = ComboBox(label="batch size", choices=BATCH_CHOICES, value=0,
                                   tooltip="slices per network call; auto: the fastest that napari-sff predict "
                                           "measured on this device (napari-sff info shows it), else the "
                                           "device's default (1 on CPUs, 8 on GPUs)")
        self.precision = ComboBox(label="precision", choices=PRECISION_CHOICES, value="",
                                  tooltip="auto: what napari-sff predict calibrated on this device (bfloat16 only on "
                                          "CPUs with it in hardware, when clearly faster and within 0.5 pp of "
                                          "float32), else float32 (float16 on GPUs); float32 for full precision")
        self.ground_truth = ComboBox(label="ground truth", choices=self._image_choices, nullable=True)
        self.resample = CheckBox(text="resample to the model's training pixel size", value=True,
                                 tooltip="pixels outside the spacing the model was trained on are resized into it "
                                         "for the model and the SFF back to the image grid")
        self.mirror = CheckBox(text="U-Net: mean with the mirrored slice", value=True,
                               tooltip="average each slice's map with its left-right mirror image's: lower error "
                                       "(model card) at twice the U-Net's time")
        self.live = CheckBox(text="live U-Net on the viewed slice")
        self.side_by_side = CheckBox(text="side by side (grid)")
        self.run_button = PushButton(text="Run")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.device_badge = Label(label="device", value="")
        self.timing = Label(label="time/slice", value="")
        self.readout = Label(label="under cursor", value="")
        self.extend([self.image, self.time_point, self.model, self.unet_weights, self.ddpm_weights, self.device,
                     self.ddim_steps, self.samples, self.scope, self.batch_size, self.precision, self.ground_truth,
                     self.resample,
                     self.mirror, self.live,
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
        # Last (and it starts after napari has shown the dock): a preload thread started earlier would contend for
        # the GIL with every Qt call above (construction took 1.4 s instead of 0.6 while it loaded torch)
        start_preload()
        # the font lookup (8 ms) outside docking's turn, then a glyph per step
        QTimer.singleShot(0, lambda: warm_canvas_text(self.viewer, COLORBAR_GLYPHS + TITLE_GLYPHS, self._text_warmup))
        when_preloaded(self._on_preloaded)

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

    def _device_choices(self, _widget=None) -> list[str]:
        """``auto`` and the devices torch can use, as the background preload found them; until then (or if it
        failed: the run reports why) ``auto`` and cpu. Asking torch here would import it, and initialise the GPU
        driver, on the GUI thread: seconds of frozen viewer."""
        return ["auto", *(DEVICES if PRELOADED.is_set() and DEVICES else ["cpu"])]

    def _on_preloaded(self) -> None:
        if self._closed:
            return
        self.device.reset_choices()
        self._freeze_heap()

    def _freeze_heap(self) -> None:
        """Freeze the collector's heap once the preload's imports are in (the DDPM's too, when they were asked
        for): never during a run (its objects are not frozen with the rest), and not again once a removal ended
        the freeze (preload.freeze_heap_until_a_removal)."""
        ddpm_pending = self._ddpm_asked and not DDPM_PRELOADED.is_set()
        if self._closed or self._worker is not None or self._release_heap is not None or ddpm_pending:
            return
        if PRELOADED.is_set():
            self._release_heap = freeze_heap_until_a_removal(self.viewer)

    def _preload_ddpm(self) -> None:
        """The Model choice asked for the DDPM: import MONAI in the background once the preload is done."""
        if self._ddpm_asked or DDPM_PRELOADED.is_set():
            return
        self._ddpm_asked = True
        when_preloaded(self._start_ddpm_preload)

    def _start_ddpm_preload(self) -> None:
        if self._closed:
            return
        if self._release_heap is not None and heap_frozen_here():  # the freeze of the preload, still in force:
            self._release_heap()  # undone, so that the import moves MONAI's objects out of the young generation
            self._release_heap = None  # (imports.import_quietly), and renewed over everything once it is in
        start_ddpm_preload()
        when_set(DDPM_PRELOADED, self._freeze_heap)

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
        self.unet_weights.visible = self.mirror.visible = "unet" in archs
        self.side_by_side.visible = len(archs) > 1
        if uses_ddpm:
            self._preload_ddpm()

    # ------------------------------------------------------------------------------------------ closing
    def _shutdown(self, *_: Any) -> None:
        """Widget closing: unhook from the viewer, stop the run and wait for it (no thread outlives us)."""
        self._closed = True
        self._cancel.set()
        self._arrangement.cancel()
        self._text_warmup.cancel()
        self._shown_maps.cancel()
        self._deferred_controls.close()
        for parts in self._colorbar_parts.values():
            parts.close()  # every part shown
        self._colorbar_parts.clear()
        if self._release_heap is not None:
            self._release_heap()
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
