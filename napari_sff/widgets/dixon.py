"""Fat fraction from Dixon: two image layers (fat, water) -> a measured SFF layer placed like the fat layer.

A thin shell over :func:`napari_sff.dixon.dixon_volume` (what ``napari-sff dixon`` runs): the widget picks the
layers (paired by :func:`napari_sff.dixon.pair_dixon` from their DICOM ImageType / SeriesDescription, or their
names), computes in a thread worker (a lazily read DICOM series is read from disk then, off the GUI thread) and
turns the result into a layer whose metadata marks it as ground truth for the Predict and ROI widgets.
"""

from __future__ import annotations

from typing import Any

import napari.layers
from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label, PushButton

from napari_sff import dixon, io
from napari_sff.widgets import _layers


def layer_name(fat_name: str) -> str:
    """Name of the SFF layer made from a fat layer: re-runs find and update it instead of adding copies."""
    return f"SFF Dixon [{fat_name}]"


def _layer_state(layer: Any) -> tuple[Any, dict[str, Any]]:
    """What :func:`io.volume_from_layer` needs, captured on the GUI thread (the worker never touches layers).
    Values as fractions if the layer holds percent (:func:`_layers.fraction_data`), divided in the worker."""
    return _layers.fraction_data(layer, defer=True), {"metadata": dict(layer.metadata), "scale": layer.scale,
                                                      "translate": layer.translate,
                        "rotate": layer.rotate}


def _compute(fat: tuple, water: tuple, noise_floor: float) -> io.Volume:
    return dixon.dixon_volume(io.volume_from_layer(*fat), io.volume_from_layer(*water), noise_floor=noise_floor)


class DixonWidget(Container):
    """Dock widget "Fat fraction from Dixon": choose fat and water layers, set the noise floor, Run."""

    def __init__(self, napari_viewer: Any):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self._worker = None
        self._closed = False
        self.fat = ComboBox(label="fat", choices=self._choices, nullable=True)
        self.water = ComboBox(label="water", choices=self._choices, nullable=True)
        self.noise_floor = FloatSpinBox(
            label="noise floor", min=0.0, max=1.0, step=0.01, value=dixon.DEFAULT_NOISE_FLOOR,
            tooltip="SFF is 0 where fat + water is at most this fraction of its 99th percentile "
                    "(air, lung, cortical bone: there F / (F + W) is only noise)")
        self.run_button = PushButton(text="Run")
        self.result = Label(label="result", value="")
        self.extend([self.fat, self.water, self.noise_floor, self.run_button, self.result])
        self.run_button.changed.connect(self.run)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh)
        self.native.destroyed.connect(self._teardown)
        self._refresh()

    @property
    def busy(self) -> bool:
        """A run is in progress (its layer is added when it returns)."""
        return self._worker is not None

    def _teardown(self, *_: Any) -> None:
        self._closed = True
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.disconnect(self._refresh)
        if self._worker is not None:
            self._worker.await_workers(msecs=60_000)

    def _candidates(self) -> list[Any]:
        """Grayscale image layers that are inputs (not predictions, not an SFF we computed)."""
        return [layer for layer in self.viewer.layers
                if isinstance(layer, napari.layers.Image) and not layer.rgb and not _layers.made_by_us(layer)
                and not dixon.is_measured_sff(layer)]

    def _choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in self._candidates()]

    def _refresh(self, *_: Any) -> None:
        """New or removed layers: refresh the lists; preselect a fat/water pair while none is chosen."""
        self.fat.reset_choices()
        self.water.reset_choices()
        if self.fat.value is not None and self.water.value is not None and self.fat.value is not self.water.value:
            return
        pairs = dixon.pair_dixon(self._candidates())
        if pairs:
            self.fat.value, self.water.value = pairs[0].fat, pairs[0].water

    def run(self, *_: Any) -> Any:
        """Start computing the SFF layer; returns the worker, or None after a notification (nothing is changed)."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error

        fat, water = self.fat.value, self.water.value
        problem = None
        if fat is None or water is None:
            problem = "choose a fat and a water image layer (open the Dixon series first)"
        elif fat is water:
            problem = f"'{fat.name}' is chosen as both fat and water; choose the water image"
        else:
            flat = [layer for layer in (fat, water) if layer.ndim not in (2, 3)]
            if flat:
                problem = f"'{flat[0].name}' is {flat[0].ndim}D; choose 2D or 3D fat and water images"
        if problem or self._worker is not None:
            if problem:
                show_error(f"napari-sff: {problem}")
            return None
        worker = create_worker(_compute, _layer_state(fat), _layer_state(water), float(self.noise_floor.value),
                               _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda sff: self._on_returned(fat, water, sff))
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.run_button.enabled = False
        self.result.value = "computing…"
        worker.start()
        return worker

    def _on_errored(self, error: Exception) -> None:
        from napari.utils.notifications import show_error

        self.result.value = ""
        if not self._closed:  # a DixonError says what to do; anything else is named by its type
            show_error(f"napari-sff: {error}" if isinstance(error, ValueError)
                       else f"napari-sff: {type(error).__name__}: {error}")

    def _on_finished(self) -> None:
        self._worker = None
        if not self._closed:
            self.run_button.enabled = True

    def _on_returned(self, fat: Any, water: Any, sff: io.Volume) -> None:
        if self._closed or fat not in self.viewer.layers:
            return
        details = sff.source["dixon"]
        info = {"kind": dixon.DIXON_SFF_KIND, "fat_layer": fat.name, "water_layer": water.name,
                **{key: details[key] for key in ("noise_floor", "threshold", "floor_fraction")}}
        percent = io.to_layer_percent(sff.array).reshape(fat.data.shape)  # in percent, like every SFF layer
        layer = _layers.upsert_image(self.viewer, layer_name(fat.name), percent, fat,
                                     metadata={"nifti": sff.source, "napari_sff": info,
                                               io.LAYER_SCALE_KEY: io.SFF_LAYER_PERCENT},
                                     colormap=io.SFF_COLORMAP, contrast_limits=(0.0, io.SFF_LAYER_PERCENT),
                                     blending="additive")
        _layers.style_layer(layer)  # the colour bar every SFF map shows
        self.viewer.layers.selection.active = layer
        self.result.value = f"{100 * info['floor_fraction']:.1f} % of voxels in the noise floor"
