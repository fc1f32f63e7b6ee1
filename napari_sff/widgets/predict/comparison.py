"""The comparison grid: one titled cell per map (ground truth, U-Net, DDPM, DDPM − U-Net; |error| and SD on
demand), each over its own copy of the T2w, and back to one overlay.

Its own part because it is the one place that reorders and hides the user's layers (and must put them back),
and that keeps anatomy cells in step with their maps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from napari_sff import io
from napari_sff.imports import collect_if_due
from napari_sff.inference import ARCH_LABELS
from napari_sff.widgets import _layers
from napari_sff.widgets._colorbar import shown_before_its_colorbar
from napari_sff.widgets._layers import is_predicted_sff
from napari_sff.widgets.predict.preload import canvas_font, glyph_steps

#: Grid cells of the comparison, in reading order: (title, kind, arch, shown at once). The others are on demand:
#: ticking a hidden map's eye in the layer list shows it in its own cell with its anatomy.
COMPARISON_CELLS = (("U-Net SFF", "sff", "unet", True), ("DDPM SFF", "sff", "ddpm", True),
                    ("DDPM − U-Net", "difference", None, True), ("|U-Net − ground truth|", "error", "unet", False),
                    ("|DDPM − ground truth|", "error", "ddpm", False), ("DDPM SD", "std", "ddpm", False))
#: A cell's T2w copy is named (and its cell titled) "<title> on T2w": in the layer list it reads as the anatomy.
ANATOMY_SUFFIX = " on T2w"
TRUTH_TITLE = "Ground truth SFF"
#: Every character of the cells' titles: their glyphs are rendered while the user chooses settings
#: (preload.warm_canvas_text); a title's first draw rendered them in its stall (154 ms with the draw, once measured).
TITLE_GLYPHS = "".join(dict.fromkeys(TRUTH_TITLE + ANATOMY_SUFFIX + "".join(cell[0] for cell in COMPARISON_CELLS)))
#: Grid spacing between comparison cells (a fraction of a cell), so each map reads as its own panel.
GRID_SPACING = 0.03


class ComparisonMixin:
    """The widget's comparison grid. Uses the widget's ``viewer``, ``ground_truth``, ``_source`` and
    ``_anatomy`` (the last run's T2w layer and volume), ``_closed``, ``_cell_links``, ``_hidden_for_grid``,
    ``_style_pending``, ``_deferred_controls`` and ``_arrangement`` (a
    :class:`~napari_sff.widgets._turns.Steps`), and the output layers' ``_map``, ``_colorbar_steps`` and
    ``_present``."""

    def _on_removed(self, event: Any) -> None:
        """A comparison map removed takes its anatomy cell with it; the run's T2w removed ends the comparison."""
        from qtpy.QtCore import QTimer

        gone = event.value
        self._style_pending.pop(gone.name, None)
        if gone is self._source:
            self._source, self._anatomy = None, None
        orphans = [layer for layer in self.viewer.layers
                   if _layers.layer_kind(layer) == "anatomy"
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
            cells.append((TRUTH_TITLE, truth, True))
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

    @property
    def arranging(self) -> bool:
        """The comparison grid is still being set up or taken down (a step per event-loop turn)."""
        return self._arrangement.busy

    def show_comparison(self) -> None:
        """The comparison grid: one titled cell per map (ground truth, U-Net, DDPM, DDPM - U-Net; |error| and SD
        on demand), each map over its own copy of the T2w and with its colour bar, one colour scale for every SFF.

        napari's grid puts ``stride`` consecutive layers in a cell, so the layers are ordered (anatomy, map) per
        cell at the bottom of the list; the layers not in a cell are hidden meanwhile and shown again after.
        Done in steps (:class:`~napari_sff.widgets._turns.Steps`, :attr:`arranging` until the last): in one
        handler it froze the viewer 2.5 s on a 100 x 512 x 512 volume (adding the T2w copies, every change of
        what is shown, then one draw compiling every new cell's shaders).
        """
        self._arrangement.start(self._comparison_steps())

    def _comparison_steps(self) -> Iterator[None]:
        """The grid's set-up, ``yield`` between napari operations. Everything is hidden before the grid is turned
        on and the cells are shown one by one: napari moves every shown visual into the grid's views at once,
        and their first draw there rebuilt all their shaders in one stall."""
        grid = self.viewer.grid
        font = canvas_font(self.viewer)
        cells = self.comparison_cells()
        if not cells:  # nothing predicted yet: napari's plain grid
            grid.enabled = True
            return
        self._unlink_cells()
        style = next((layer for _, layer, _ in cells if is_predicted_sff(layer)), None)
        anatomies = [self._anatomy_cell(layer) for _, layer, _ in cells]
        # shown at once, or an on-demand cell the user opened (its map and anatomy both shown)
        wanted = [shown or (layer.visible and (anatomy is None or anatomy.visible))
                  for (_, layer, shown), anatomy in zip(cells, anatomies, strict=True)]
        for i, ((title, layer, _), anatomy) in enumerate(zip(cells, anatomies, strict=True)):
            if anatomy is None:  # a new T2w copy (napari adds an image layer in 50-100 ms), hidden
                if collect_if_due():  # not inside the add
                    yield
                anatomies[i] = self._add_anatomy_cell(layer, title)
                yield
                self._deferred_controls.build(anatomies[i])  # its layer controls (20-35 ms), a step later
                yield
        ordered = [layer for (_, map_layer, _), anatomy in zip(cells, anatomies, strict=True)
                   for layer in (anatomy, map_layer)]
        for target, layer in enumerate(ordered):
            current = self.viewer.layers.index(layer)
            if current != target:
                self.viewer.layers.move(current, target)
        yield
        for layer in list(self.viewer.layers):
            if layer.visible:
                layer.visible = False
                if layer not in ordered:  # not a cell: shown again when the comparison ends
                    self._hidden_for_grid.append(layer)
                yield
        # the shape the shown cells will fill, fixed meanwhile: napari would re-lay every cell out as each appears
        columns = max(1, math.ceil(math.sqrt(sum(wanted))))
        grid.shape = (max(1, math.ceil(sum(wanted) / columns)), columns)
        grid.stride, grid.spacing, grid.enabled = 2, GRID_SPACING, True
        yield
        for (_, layer, _), anatomy, show in zip(cells, anatomies, wanted, strict=True):
            if style is not None and layer is self._truth_layer():  # one colour scale for every SFF map
                for attribute in ("colormap", "opacity", "blending"):
                    setattr(layer, attribute, getattr(style, attribute))
                # the same fat fractions, in the truth's own unit (percent; fractions if made elsewhere)
                unit = io.layer_value_scale(layer.metadata) / io.layer_value_scale(style.metadata)
                layer.contrast_limits = tuple(unit * limit for limit in style.contrast_limits)
            if hasattr(layer, "colorbar"):
                layer.colorbar.position = "top_right"
            if show:  # the cell appears: its anatomy, its title, its map, its colour bar (each drawn in a turn)
                anatomy.visible = True
                yield
                if not anatomy.name_overlay.visible:
                    if font is not None:  # glyphs the warm-up at docking did not render (a renamed layer)
                        yield from glyph_steps(font, anatomy.name)
                    anatomy.name_overlay.visible = True
                    yield
                # a colour bar on already moves into the cell with its map: drawn a part per turn after the map
                yield from shown_before_its_colorbar(self.viewer, layer, lambda layer=layer: setattr(layer, "visible", True))
            if show and hasattr(layer, "colorbar") and not layer.colorbar.visible:
                # built, with the reading view's size and font and the cell's place, then a part drawn per turn
                yield from self._colorbar_steps(layer, _layers.layer_kind(layer))
                yield
            # a hidden cell's map gets its colour bar when the user opens the cell (_style_pending): turned on
            # now, napari would build it as the grid ends (50-130 ms) for a map nobody has shown
            anatomy.name_overlay.visible = True  # a hidden cell's title, for when the user shows it

            def follow(_event: Any = None, anatomy: Any = anatomy, layer: Any = layer) -> None:
                anatomy.visible = layer.visible

            layer.events.visible.connect(follow)
            self._cell_links.append((layer.events.visible, follow))
        grid.shape = (-1, -1)  # napari's own again (the same for these cells), for the cells opened on demand
        yield
        main = next((layer for _, layer, _ in reversed(cells) if is_predicted_sff(layer)), None)
        if main is not None:
            self.viewer.layers.selection.active = main
        self.viewer.reset_view()

    def end_comparison(self) -> None:
        """Back to one overlay: the anatomy cells go, hidden layers come back, the last SFF map on top; in steps
        as :meth:`show_comparison`."""
        self._arrangement.start(self._end_steps())

    def _end_steps(self) -> Iterator[None]:
        """The grid's take-down, ``yield`` between napari operations: the cells hidden one by one, the T2w copies
        removed (napari collects the garbage at each removal), the grid turned off with nothing shown, then the
        layers it had hidden shown one by one and the last SFF map presented."""
        self._unlink_cells()
        cells = [layer for _, layer, _ in self.comparison_cells()]
        copies = [layer for layer in self.viewer.layers if _layers.layer_kind(layer) == "anatomy"]
        for layer in [*copies, *cells]:
            if layer in self.viewer.layers and layer.visible:
                layer.visible = False  # the cells' maps go back to the layer list; _present shows the SFF map
                yield
        for layer in copies:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
                yield
        self.viewer.grid.enabled = False  # napari rebuilds its scene graph at each: a step each
        yield
        self.viewer.grid.stride = 1
        yield
        hidden, self._hidden_for_grid = self._hidden_for_grid, []
        for layer in hidden:
            if layer in self.viewer.layers and not layer.visible:
                layer.visible = True
                yield
        archs = [arch for arch in ARCH_LABELS if self._map("sff", arch) is not None]
        if self._source is not None and archs:  # the map back in the plain view, then its colour bar
            yield from shown_before_its_colorbar(self.viewer, self._map("sff", archs[-1]),
                                                 lambda: self._present(self._source, [archs[-1]]))

    def _anatomy_cell(self, layer: Any) -> Any:
        """The T2w copy under ``layer`` in its cell, or None."""
        for other in self.viewer.layers:
            if _layers.layer_kind(other) == "anatomy" and other.metadata["napari_sff"].get("cell_of") == layer.name:
                return other
        return None

    def _add_anatomy_cell(self, layer: Any, title: str) -> Any:
        """A new T2w copy (same array, no data copied) for ``layer``'s cell, titled by its name; hidden, not
        selected and without its layer controls yet (``_deferred_controls``: napari's own in the same stall)."""
        source = self._source
        data = self._anatomy if self._anatomy is not None else np.asarray(source.data)
        info = {"kind": "anatomy", "cell_of": layer.name, "source_layer": source.name}
        with self._deferred_controls.inserting():
            anatomy = self.viewer.add_image(data, name=title + ANATOMY_SUFFIX, colormap="gray",
                                            contrast_limits=source.contrast_limits, gamma=source.gamma,
                                            metadata={"napari_sff": info}, visible=False,
                                            **_layers.spatial_placement(source, source.ndim - data.ndim))
        anatomy.name_overlay.font_size = 12  # the title is shown with the cell (_comparison_steps)
        return anatomy

    def _unlink_cells(self) -> None:
        for emitter, callback in self._cell_links:
            emitter.disconnect(callback)
        self._cell_links = []
