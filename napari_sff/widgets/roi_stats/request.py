"""From the chosen layers to a :class:`~napari_sff.roi.RoiRequest`, on the GUI thread: arrays snapshotted (painting
edits labels in place), every map and the labels lined up with the reference map's grid or refused, the scope.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_sff.roi import RoiRequest, data_to_data, grid_plan
from napari_sff.widgets import _layers
from napari_sff.widgets._layers import SCOPES


def label_names(layer: Any) -> dict[int, str]:
    """Label id -> name from the layer's ``features`` (``index``/``name`` columns; row number without index)."""
    features = layer.features
    if "name" not in features:
        return {}
    index = features["index"] if "index" in features else range(len(features))
    return {int(i): str(name) for i, name in zip(index, features["name"], strict=True)}



class RequestMixin:
    """Builds the widget's request. Uses the widget's ``viewer``, layer choices, ``scope``, ``exclude_rim``,
    ``_rim_plane`` / ``_viewed_plane``, ``status``,
    ``_generation``, ``_notes`` and ``_report``."""

    def _make_request(self) -> RoiRequest | None:
        """Snapshot the arrays on the GUI thread; None (after saying why) when there is nothing valid to compute."""
        self._notes = []
        reference = self.reference.value
        sources = list({id(layer): layer for layer in [reference, *self.values.value] if layer is not None}.values())
        roi_layers = [layer for layer in (self.labels_layer.value, self.shapes_layer.value) if layer is not None]
        if not sources or not roi_layers:
            self.status.value = "choose SFF maps and a Labels or Shapes layer" if not sources else \
                "choose a Labels layer or a Shapes layer with ROIs"
            return None
        grid = sources[0]
        if grid.ndim != 3 or grid.rgb or grid.multiscale:
            self._report(f"napari-sff: '{grid.name}' is not a 3-D single-scale grayscale map; choose another")
            return None
        values, grid_to_values = {}, {}
        for layer in sources:
            how, grid_to_layer, reason = grid_plan(layer, grid)
            if how == "incompatible" or layer.multiscale or getattr(layer, "rgb", False):
                self._report(f"napari-sff: {reason or repr(layer.name) + ' is multiscale or RGB'}; left out")
                continue
            values[layer.name] = _layers.fraction_data(layer, defer=True)  # fractions, read in the worker
            if how == "resample":
                grid_to_values[layer.name] = grid_to_layer
        request = RoiRequest(self._generation, values, tuple(np.abs(np.asarray(grid.scale, float)[-3:])),
                             grid_to_values=grid_to_values, reference=None if reference is None else reference.name,
                             exclude_rim=int(self.exclude_rim.value))
        has_labels = self._add_labels(request, grid)
        has_shapes = self._add_shapes(request, grid)
        if not (has_labels or has_shapes) or not self._set_scope(request, grid):
            return None
        return request

    def _add_labels(self, request: RoiRequest, grid: Any) -> bool:
        layer = self.labels_layer.value
        if layer is None:
            return False
        how, grid_to_labels, reason = grid_plan(layer, grid)
        if how == "incompatible" or layer.multiscale:
            self._report(f"napari-sff: labels {reason or 'multiscale labels are not supported'}")
            return False
        request.labels = np.array(layer.data, copy=True)  # painting edits it in place while the worker reads
        request.grid_to_labels = grid_to_labels
        request.label_names = label_names(layer)
        return True

    def _add_shapes(self, request: RoiRequest, grid: Any) -> bool:
        layer = self.shapes_layer.value
        if layer is None or layer.nshapes == 0:
            return False
        if layer.ndim != grid.ndim:
            self._report(f"napari-sff: shapes '{layer.name}' are {layer.ndim}-D but '{grid.name}' is {grid.ndim}-D")
            return False
        to_grid = data_to_data(layer, grid)
        request.shapes = [np.asarray(v, float) @ to_grid[:-1, :-1].T + to_grid[:-1, -1] for v in layer.data]
        request.shape_types = list(layer.shape_type)
        return True

    def _set_scope(self, request: RoiRequest, grid: Any) -> bool:
        scope = "whole volume"
        where = _layers.current_slice(self.viewer, grid)
        if where is not None:  # the ROI border lies in the plane on screen, where shapes are drawn
            request.rim_axis = where[0]
        self._rim_plane = self._viewed_plane()
        if self.scope.value == SCOPES[1]:
            if where is None:
                scope = "whole volume (3D view has no current slice)"
            elif not 0 <= where[1] < grid.data.shape[where[0]]:
                self.status.value = f"the current slice is outside '{grid.name}'"
                return False
            else:
                request.slice_axis, request.slice_index = where
                scope = f"slice {where[1]} of axis {where[0]}"
        border = [f"ROI border of {request.exclude_rim} voxel{'s' * (request.exclude_rim > 1)} left out"
                  ] if request.exclude_rim else []
        self.status.value = "; ".join([f"{scope}, reference: {request.reference or 'none'}", *border, *self._notes])
        return True
