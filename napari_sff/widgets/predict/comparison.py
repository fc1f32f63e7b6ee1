"""The comparison grid: one titled cell per map (ground truth, U-Net, DDPM, DDPM − U-Net; |error| and SD on
demand), each over its own copy of the T2w, and back to one overlay.

Its own part because it is the one place that reorders and hides the user's layers (and must put them back),
and that keeps anatomy cells in step with their maps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_sff import io
from napari_sff.inference import ARCH_LABELS
from napari_sff.widgets import _layers
from napari_sff.widgets._layers import is_predicted_sff

#: Grid cells of the comparison, in reading order: (title, kind, arch, shown at once). The others are on demand:
#: ticking a hidden map's eye in the layer list shows it in its own cell with its anatomy.
COMPARISON_CELLS = (("U-Net SFF", "sff", "unet", True), ("DDPM SFF", "sff", "ddpm", True),
                    ("DDPM − U-Net", "difference", None, True), ("|U-Net − ground truth|", "error", "unet", False),
                    ("|DDPM − ground truth|", "error", "ddpm", False), ("DDPM SD", "std", "ddpm", False))
#: A cell's T2w copy is named (and its cell titled) "<title> on T2w": in the layer list it reads as the anatomy.
ANATOMY_SUFFIX = " on T2w"
#: Grid spacing between comparison cells (a fraction of a cell), so each map reads as its own panel.
GRID_SPACING = 0.03


class ComparisonMixin:
    """The widget's comparison grid. Uses the widget's ``viewer``, ``ground_truth``, ``_source`` and
    ``_anatomy`` (the last run's T2w layer and volume), ``_closed``, ``_cell_links``, ``_hidden_for_grid`` and
    ``_style_pending``, and the output layers' ``_map`` and ``_present``."""

    def _on_removed(self, event: Any) -> None:
        """A comparison map removed takes its anatomy cell with it; the run's T2w removed ends the comparison."""
        from qtpy.QtCore import QTimer

        gone = event.value
        self._style_pending.pop(gone.name, None)
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
