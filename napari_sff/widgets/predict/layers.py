"""A run's output layers on the GUI thread: their look, adding or updating them placed like the source, styling
them, and which one the user sees after a run.

Apart from the worker because this is napari's side of a run (every call here is napari's, one step per
event-loop turn); apart from the comparison grid because these are the plain overlay's rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_sff import io
from napari_sff.imports import collect_if_due
from napari_sff.inference import ARCH_LABELS
from napari_sff.widgets import _layers
from napari_sff.widgets._colorbar import PART_STEPS, reveal_colorbar
from napari_sff.widgets._layers import output_name

if TYPE_CHECKING:  # the worker imports this module for layer_options
    from napari_sff.widgets.predict.worker import RunRequest

ERROR_COLORMAP = "magma"
#: Diverging with a dark centre (matplotlib's "berlin"), so DDPM - U-Net adds onto the anatomy beneath it
#: (napari's "bwr" is white at 0 and would wash the anatomy out); "bwr" where matplotlib lacks it.
DIFFERENCE_COLORMAP = "berlin"
#: Colour scales of the derived layers, in the layers' unit (percent, :data:`io.SFF_LAYER_PERCENT`): |error|
#: and DDPM − U-Net up to 20 percentage points, the SD from 0 to its maximum (at least 5 pp).
ERROR_LIMITS = (0.0, 20.0)
DIFFERENCE_LIMITS = (-20.0, 20.0)
MIN_STD_LIMIT = 5.0


def layer_options(kind: str, data: np.ndarray) -> dict:
    """napari's options for a run's layer of this kind (in percent); computed in the worker, as the SD's colour
    scale reads the map's maximum. The difference's colour map is added on the GUI thread
    (:func:`difference_colormap` asks napari)."""
    if kind == "sff":
        return dict(colormap=io.SFF_COLORMAP, contrast_limits=(0.0, io.SFF_LAYER_PERCENT), blending="additive",
                    opacity=0.7)
    if kind == "std":
        return dict(colormap="viridis", contrast_limits=(0.0, max(MIN_STD_LIMIT, float(data.max()))),
                    blending="additive", visible=False)
    if kind == "error":
        return dict(colormap=ERROR_COLORMAP, contrast_limits=ERROR_LIMITS, blending="additive", visible=False)
    if kind == "difference":
        return dict(contrast_limits=DIFFERENCE_LIMITS, blending="additive", visible=False)
    raise ValueError(f"unknown output kind {kind!r}; expected sff, std, error or difference")


def difference_colormap() -> str:
    """:data:`DIFFERENCE_COLORMAP`, or "bwr" where napari (matplotlib) lacks it."""
    from napari.utils.colormaps import ensure_colormap

    try:
        ensure_colormap(DIFFERENCE_COLORMAP)
    except (KeyError, ValueError):
        return "bwr"
    return DIFFERENCE_COLORMAP


class OutputLayersMixin:
    """The widget's output layers. Uses the widget's ``viewer``, ``side_by_side``, ``_source`` (the T2w layer
    of the last run), ``_adding``, ``_style_pending``, ``_revealing`` and ``_deferred_controls``, and the
    comparison grid's ``show_comparison`` and ``arranging``; ``_shown_maps`` (a ``Steps``) styles the hidden maps
    the user shows, one after another; ``_colorbar_parts`` holds, by layer name, the colour bars being shown
    a part per step (closed early, a generator of :func:`reveal_colorbar` shows every part)."""

    def _on_inserted(self, event: Any) -> None:
        if not self._adding:  # a run's own layers are styled in the step after their insertion
            _layers.style_layer(event.value)

    def _map(self, kind: str, arch: str | None) -> Any:
        """The run's derived layer of this kind and model, or None."""
        if self._source is None:
            return None
        name = output_name(kind, arch, self._source.name)
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _add(self, layer, request: RunRequest, name: str, data: np.ndarray, arch, prediction, *, kind: str,
             **kwargs) -> Any:
        derived = request.volume.like(data)
        info = {"model": arch, "source_layer": layer.name, "kind": kind}
        if prediction is not None:
            info.update(device=prediction.device, ms_per_slice=prediction.ms_per_slice,
                        weights=request.weights.get(arch) or "shipped", model_spacing_mm=prediction.model_spacing,
                        mirrored=prediction.mirrored, precision=prediction.precision)
            if kind == "sff" and prediction.feature_distance is not None:  # the readout shows the slice's
                info.update(slice_axis=prediction.slice_axis, feature_threshold=prediction.feature_threshold,
                            feature_distance=self._slice_distances(name, prediction))
        metadata = {"nifti": derived.source, "napari_sff": info, io.LAYER_SCALE_KEY: io.SFF_LAYER_PERCENT}
        reveal = self._adding and kind == "sff" and name not in self.viewer.layers and kwargs.get("visible", True)
        if reveal:  # shown in later steps (worker.LAYER_STEPS)
            kwargs["visible"] = False
        # a run's new layers are not selected as napari adds them (_present selects the map the user is to see),
        # and get their layer controls in the next step ("controls")
        inserting = self._deferred_controls.inserting() if self._adding else None
        added = _layers.upsert_image(self.viewer, name, data, layer, metadata=metadata, inserting=inserting, **kwargs)
        if reveal:  # by name: the viewer napari hands a plugin gives a new proxy of a layer at each lookup
            self._revealing.add(name)
        if not self._adding:  # else the next step: napari builds the colour bar in ~60-120 ms on its own
            self._style(added, kind)
        return added

    def _reveal_step(self, step: str, layer: Any, kind: str) -> None:
        """One of :data:`~napari_sff.widgets.predict.worker.LAYER_STEPS` after "add" for ``layer``: a new layer
        gets its layer controls ("controls"); a map added hidden to be revealed gets its colour bar built while
        hidden ("style"), is shown ("show"), then its colour bar: turned on ("colorbar"), then a part drawn at
        each of :data:`~napari_sff.widgets._colorbar.PART_STEPS`; any other layer is styled at "style"."""
        revealing = layer.name in self._revealing
        if step == "controls":
            self._deferred_controls.build(layer)
        elif step == "style":
            if not revealing:  # a hidden map (|error|, SD, difference) gets its colour bar when first shown
                self._style(layer, kind)
                return
            _layers.style_layer(layer)  # napari builds the colour bar's visuals now (60-90 ms), nothing is drawn
            layer.colorbar.visible = False  # kept built: turned on again it is only drawn
        elif revealing and step == "show":
            layer.visible = True
        elif revealing and step == "colorbar":
            self._revealing.discard(layer.name)
            parts = reveal_colorbar(self.viewer, layer)
            next(parts, None)  # on, with nothing drawn in this turn; a part at each of PART_STEPS
            self._colorbar_parts[layer.name] = parts
        elif step in PART_STEPS and layer.name in self._colorbar_parts:
            if next(self._colorbar_parts[layer.name], StopIteration) is StopIteration:
                del self._colorbar_parts[layer.name]

    def _slice_distances(self, name: str, prediction: Any) -> dict[int, float]:
        """Slice index -> the U-Net's feature distance, merged into the layer's earlier ones (a current-slice run
        adds its slice to the map)."""
        earlier = {}
        if name in self.viewer.layers:
            info = self.viewer.layers[name].metadata.get("napari_sff", {})
            if info.get("slice_axis") == prediction.slice_axis:
                earlier = dict(info.get("feature_distance") or {})
        return {**earlier, **{int(k): float(d) for k, d in zip(prediction.slice_indices, prediction.feature_distance,
                                                                strict=True)}}

    def _style(self, layer: Any, kind: str) -> None:
        """The layer's colour bar; for a hidden map (|error|, SD, difference) when it is first shown, in steps
        (:meth:`_first_shown_steps`): napari builds a colour bar in 60-90 ms even for a layer nobody looks at,
        and built, drawn and the map drawn in one turn were one stall of 170-240 ms."""
        if not layer.visible:
            if layer.name not in self._style_pending:  # by name: each lookup of a layer gives a new proxy
                def on_shown(_event: Any = None, layer: Any = layer, kind: str = kind) -> None:
                    if layer.visible:
                        layer.events.visible.disconnect(on_shown)
                        self._style_pending.pop(layer.name, None)
                        self._shown_maps.queue(self._first_shown_steps(layer, kind))

                self._style_pending[layer.name] = on_shown
                layer.events.visible.connect(on_shown)
            return
        if kind != "sff" and hasattr(layer, "colorbar"):  # an SFF map may be shown with one of these: no overlap
            layer.colorbar.position = "top_right" if self.viewer.grid.enabled else "bottom_right"  # a cell's own
        _layers.style_layer(layer)  # placed first: napari lays a shown colour bar out again at each setting

    def _first_shown_steps(self, layer: Any, kind: str) -> Iterator[None]:
        """A hidden map the user (or the grid) has just shown: its own first draw in this turn, then its colour
        bar (:meth:`_colorbar_steps`). While the comparison grid is being arranged it waits: the grid styles its
        cells' colour bars itself."""
        yield  # the map's first draw
        while self.arranging:
            yield
        yield from self._colorbar_steps(layer, kind)

    def _colorbar_steps(self, layer: Any, kind: str) -> Iterator[None]:
        """The colour bar of a shown map that has none on: a full collection first if one is due (a turn of its
        own, not inside the build), then the colour bar built and turned on with nothing drawn (60-90 ms), then
        drawn a part per turn (_colorbar)."""
        if collect_if_due():
            yield
        if layer.name not in self.viewer.layers or layer.colorbar.visible:  # removed, or the grid placed it
            return
        if not layer.visible:  # hidden again meanwhile: styled when shown
            self._style(layer, kind)
            return
        self._style(layer, kind)
        yield from reveal_colorbar(self.viewer, layer)

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
                if other is not None and other.name != main.name and other.visible:  # by name: proxies (_style)
                    other.visible = False
            if not main.visible:  # napari refreshes the layer and its scene graph at each setting, even to True
                main.visible = True
            self.viewer.layers.move(self.viewer.layers.index(main), len(self.viewer.layers))
        self.viewer.layers.selection.active = main
