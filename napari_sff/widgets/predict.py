"""Predict SFF from the selected T2w layer with the U-Net, the DDPM or both, in a napari thread worker.

The widget only gathers settings, starts :func:`napari_sff.inference.predict_volume` in a worker, and turns its
:class:`~napari_sff.inference.Prediction` into layers placed exactly like the source. Everything it computes,
the CLI computes too.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch  # noqa: F401  (before Qt where we control the order; this module loads only when docked)
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, ProgressBar, PushButton, SpinBox
from qtpy.QtCore import QObject, Signal

from napari_sff import io
from napari_sff.inference import ARCH_LABELS, PredictionCancelled, available_devices, predict_volume
from napari_sff.widgets import _layers
from napari_sff.widgets._layers import SCOPES, output_name

MODEL_CHOICES = {"U-Net": ("unet",), "DDPM": ("ddpm",), "Both (compare)": ("unet", "ddpm")}
ERROR_COLORMAP = "magma"
DIFFERENCE_COLORMAP = "bwr"


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


class _ProgressBridge(QObject):
    """Carries progress from the worker thread to the GUI thread (Qt queues cross-thread signals)."""

    progressed = Signal(int, int, str)


class PredictWidget(Container):
    """Dock widget: T2w layer -> SFF layer(s), with live slice mode and model comparison."""

    def __init__(self, napari_viewer: Any):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self._worker = None
        self._closed = False
        self._cancel = threading.Event()
        self._live_done: set[tuple] = set()  # (layer id, axis, index) already in the live layer
        self._bridge = _ProgressBridge()
        self._bridge.progressed.connect(self._on_progress)

        self.image = ComboBox(label="T2w image", choices=self._image_choices)
        self.time_point = SpinBox(label="volume (4D)", min=0, max=0, visible=False)
        self.model = ComboBox(label="model", choices=list(MODEL_CHOICES), value="U-Net")
        self.unet_weights = FileEdit(label="U-Net weights", filter="*.safetensors", value="")
        self.ddpm_weights = FileEdit(label="DDPM weights", filter="*.safetensors", value="")
        self.device = ComboBox(label="device", choices=["auto", *available_devices()], value="auto")
        self.ddim_steps = SpinBox(label="DDIM steps", min=1, max=1000, value=50)
        self.samples = SpinBox(label="DDPM samples", min=1, max=64, value=1)
        self.scope = ComboBox(label="scope", choices=list(SCOPES), value=SCOPES[0])
        self.batch_size = SpinBox(label="batch size", min=1, max=256, value=8)
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
        self.side_by_side.changed.connect(lambda on: setattr(self.viewer.grid, "enabled", bool(on)))
        self.live.changed.connect(self._on_live_toggled)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_choices)
        self.viewer.dims.events.current_step.connect(self._on_step)
        self.viewer.mouse_move_callbacks.append(self._on_mouse_move)
        self.native.destroyed.connect(self._shutdown)
        self._on_model_changed(self.model.value)
        self._refresh_choices()
        self._on_image_changed(self.image.value)

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
        return RunRequest(layer=layer, volume=volume, archs=archs,
                          weights={"unet": self._weights(self.unet_weights), "ddpm": self._weights(self.ddpm_weights)},
                          device=self.device.value, ddim_steps=self.ddim_steps.value, samples=self.samples.value,
                          batch_size=self.batch_size.value, slice_axis=slice_axis, slice_indices=indices,
                          ground_truth=self.ground_truth.value, resample=self.resample.value)

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
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        worker.start()
        return worker

    def _compute(self, request: RunRequest) -> RunRequest | None:
        """Worker thread: run each model in turn; no napari or Qt objects are touched here.

        Returns None when stopped: cancelling is not an error, and nothing is half-made.
        """
        try:
            return self._predict_all(request)
        except PredictionCancelled:
            return None

    def _predict_all(self, request: RunRequest) -> RunRequest:
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
        self._worker = None
        if self._closed:
            return
        self._set_running(False)

    # ---------------------------------------------------------------------------------------- results
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
            name = output_name("sff", arch, layer.name)
            sff = self._merge_slices(name, prediction.sff, prediction, request)
            self._add(layer, request, name, sff, arch, prediction, colormap=io.SFF_COLORMAP,
                      contrast_limits=(0.0, 1.0), blending="additive", opacity=0.7)
            if prediction.std is not None:
                name = output_name("std", arch, layer.name)
                std = self._merge_slices(name, prediction.std, prediction, request)
                self._add(layer, request, name, std, arch, prediction, colormap="viridis",
                          contrast_limits=(0.0, max(0.05, float(std.max()))), blending="additive", visible=False)
            truth = request.ground_truth
            if truth is not None and truth is not layer and np.shape(truth.data) == sff.shape:
                error = np.abs(sff - np.asarray(truth.data, np.float32))
                self._add(layer, request, output_name("error", arch, layer.name), error.astype(np.float32), arch,
                          prediction, colormap=ERROR_COLORMAP, contrast_limits=(0.0, 0.2), visible=False)
        if {"unet", "ddpm"} <= set(request.results):
            names = [output_name("sff", a, layer.name) for a in ("ddpm", "unet")]
            difference = self.viewer.layers[names[0]].data - self.viewer.layers[names[1]].data
            self._add(layer, request, output_name("difference", None, layer.name), difference.astype(np.float32),
                      None, None, colormap=DIFFERENCE_COLORMAP, contrast_limits=(-0.2, 0.2), visible=False)
        self.timing.value = "; ".join(timings)

    def _merge_slices(self, name: str, values: np.ndarray, prediction, request: RunRequest) -> np.ndarray:
        """Whole-volume runs replace the map; single-slice runs fill that slice of the existing layer ``name``."""
        if request.slice_indices is None:
            return values
        if name in self.viewer.layers and self.viewer.layers[name].data.shape == values.shape:
            merged = np.array(self.viewer.layers[name].data, dtype=np.float32)
            take = [slice(None)] * values.ndim
            take[prediction.slice_axis] = prediction.slice_indices
            merged[tuple(take)] = values[tuple(take)]
            return merged
        return values

    def _add(self, layer, request: RunRequest, name: str, data: np.ndarray, arch, prediction, **kwargs) -> Any:
        derived = request.volume.like(data)
        info = {"model": arch, "source_layer": layer.name}
        if prediction is not None:
            info.update(device=prediction.device, ms_per_slice=prediction.ms_per_slice,
                        weights=request.weights.get(arch) or "shipped", model_spacing_mm=prediction.model_spacing)
        metadata = {"nifti": derived.source, "napari_sff": info}
        return _layers.upsert_image(self.viewer, name, data, layer, metadata=metadata, **kwargs)

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
            self._live_done.add(key)
            self._start(request, live=True)

    # ------------------------------------------------------------------------------------------ readout
    def _on_mouse_move(self, viewer: Any, event: Any) -> None:
        """Fat fraction under the cursor, in percent, for every SFF layer (predictions and ground truth)."""
        parts = []
        for layer in viewer.layers:
            is_sff = _layers.made_by_us(layer) or layer is self.ground_truth.value
            if not (_layers.is_image(layer) and is_sff):
                continue
            value = _layers.value_at(layer, viewer.cursor.position)
            if value is not None and np.isfinite(value):
                parts.append(f"{layer.name.split(' [')[0]}: {100 * float(value):.1f} %")
        self.readout.value = "; ".join(parts)
        if parts:  # napari's status bar shows raw fractions; its help field shows ours in percent
            viewer.help = self.readout.value

