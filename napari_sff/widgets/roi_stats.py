"""ROI fat-fraction statistics: Labels/Shapes ROIs x SFF maps -> the numbers a radiologist reports, with plots.

Every number comes from :func:`compute_rows`, a thin call of :func:`napari_sff.stats.roi_table`. The widget only
gathers arrays on the GUI thread, lines the ROIs up with the maps' voxel grid, and computes in a napari thread
worker after a short debounce, so painting a label never blocks the GUI.

Grids
    Statistics are computed on the voxel grid of the reference map (the first selected map without one), with
    that map's ``scale`` as voxel size in mm. A map or a Labels layer on another grid that covers the same world
    box (within half a voxel) -- a Dixon series with another matrix, say -- is resampled onto it by world
    coordinates (maps linearly, labels nearest neighbour); anything else is refused with a notification rather
    than giving numbers for misplaced ROIs.

ROI ids
    Labels keep their own ids. Shape k of the Shapes layer (1-based, in the layer's order) is called "shape k" and
    gets id ``base + k``, where ``base`` is the smallest power of ten above the largest label id (at least 10; 0
    without a Labels layer): labels 1-4 and two shapes give ids 1-4, 11, 12. Shapes are rasterised apart from
    the labels, so a shape drawn inside a muscle and the muscle both count their shared voxels.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton, Select
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QFileDialog,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
)

from napari_sff import io, report, stats
from napari_sff.roi import (  # noqa: F401  (plain geometry and computation, shared; importable from here too)
    RoiRequest,
    RoiResult,
    affine_of,
    compute,
    compute_rows,
    data_to_data,
    grid_plan,
    resample_to_grid,
    shape_label_base,
    world_box,
)
from napari_sff.widgets import _layers
from napari_sff.widgets._layers import SCOPES

DEBOUNCE_MS = 300
#: RoiRow attribute of each table column, in the order of :func:`stats.table_header`.
COLUMN_KEYS = [key for key, _ in stats.ID_COLUMNS] + [key for key, _ in stats.STAT_COLUMNS]
#: Layer events after which the numbers may have changed (those a layer type lacks are skipped).
WATCHED_EVENTS = ("data", "paint", "features", "scale", "translate", "rotate", "shear", "affine", "name")


def label_names(layer: Any) -> dict[int, str]:
    """Label id -> name from the layer's ``features`` (``index``/``name`` columns; row number without index)."""
    features = layer.features
    if "name" not in features:
        return {}
    index = features["index"] if "index" in features else range(len(features))
    return {int(i): str(name) for i, name in zip(index, features["name"], strict=True)}


def _stacked(header: str) -> str:
    """A summary header on lines as narrow as its words: "U-Net %" -> "U-Net / %", "Δ U-Net pp" -> "Δ / U-Net / pp"."""
    name, _, unit = header.rpartition(" ")
    if not name:
        return header
    return f"Δ\n{name[2:]}\n{unit}" if name.startswith("Δ ") else f"{name}\n{unit}"


class _SortItem(QTableWidgetItem):
    """A cell that shows formatted text but sorts by its value (numbers numerically, missing values last)."""

    def __init__(self, text: str, value: Any):
        super().__init__(text)
        missing = value is None or (isinstance(value, float) and not math.isfinite(value))
        self.key = (1, 0) if missing else (0, value)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        return self.key < getattr(other, "key", (1, 0))


# ----------------------------------------------------------------------------------------------------- widget
class RoiStatsWidget(Container):
    """Dock widget: ROI fat-fraction table for predicted maps and ground truth side by side, with agreement plots.

    ``refresh()`` recomputes now; ``rows`` holds the last :class:`stats.RoiRow` list; ``busy`` says whether an
    update is still due (tests and scripts wait on it).
    """

    def __init__(self, napari_viewer: Any):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.rows: list[stats.RoiRow] = []
        self.shape_base: int | None = None
        self.reference_name: str | None = None
        self.updates = 0
        self._generation = 0
        self._worker = None
        self._pending = False
        self._closed = False
        self._watched: list[Any] = []
        self._reported: set[str] = set()
        self._notes: list[str] = []

        self.labels_layer = ComboBox(label="labels ROIs", choices=self._choices(_layers.is_labels), nullable=True)
        self.shapes_layer = ComboBox(label="shape ROIs", choices=self._choices(_layers.is_shapes), nullable=True)
        self.values = Select(label="SFF maps", choices=self._choices(_layers.is_map))
        self.values.native.setMaximumHeight(100)
        self.reference = ComboBox(label="reference", choices=self._choices(_layers.is_map), nullable=True)
        self.scope = ComboBox(label="scope", choices=list(SCOPES), value=SCOPES[0])
        self.refresh_button = PushButton(text="Refresh")
        self.copy_button = PushButton(text="Copy")
        self.export_button = PushButton(text="Export CSV…")
        self.report_button = PushButton(text="Export report…")
        self.report_button.tooltip = "One PDF (or PNG + CSV): the slice on screen with its colour bar, table, plots"
        rows = [Container(widgets=pair, layout="horizontal", labels=False)
                for pair in ((self.refresh_button, self.copy_button), (self.export_button, self.report_button))]
        for row in rows:
            row.margins = (0, 0, 0, 0)
        buttons = Container(widgets=rows, labels=False)
        buttons.margins = (0, 0, 0, 0)
        self.status = Label(label="status", value="")
        self.status.native.setWordWrap(True)  # long layer names wrap instead of widening the dock
        for combo in (self.labels_layer, self.shapes_layer, self.reference, self.scope):
            combo.native.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.native.setMinimumContentsLength(12)
        self.extend([self.labels_layer, self.shapes_layer, self.values, self.reference, self.scope, buttons,
                     self.status])

        self.table = QTableWidget(0, len(COLUMN_KEYS))
        self.table.setHorizontalHeaderLabels(stats.table_header())
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSortIndicator(0, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        self.table.setMinimumHeight(160)
        # What a radiologist reads (ROI, volume, mean of each map, Δ vs reference) fits the dock; all columns one
        # tab away.
        self.summary = QTableWidget(0, 0)
        self.summary.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.summary.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.summary.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.summary.verticalHeader().setVisible(False)  # ROIs in label order; the full table sorts
        self.tabs = QTabWidget()
        self.tabs.addTab(self.summary, "Summary")
        self.tabs.addTab(self.table, "All columns")
        self.tabs.setMinimumHeight(180)
        self.figure, self.canvas = self._make_figure()
        self.native.layout().addWidget(self.tabs)
        self.native.layout().addWidget(self.canvas)

        self._timer = QTimer(self.native)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._start)

        for widget in (self.labels_layer, self.shapes_layer, self.values, self.reference, self.scope):
            widget.changed.connect(self._on_settings_changed)
        self.refresh_button.changed.connect(self.refresh)
        self.copy_button.changed.connect(self.copy_to_clipboard)
        self.export_button.changed.connect(self._export_dialog)
        self.report_button.changed.connect(self._report_dialog)
        self.table.itemSelectionChanged.connect(self._on_row_selected)
        self.summary.itemSelectionChanged.connect(self._on_summary_selected)
        layer_events = self.viewer.layers.events
        self._viewer_hooks = [(layer_events.inserted, self._on_layers_changed),
                              (layer_events.removed, self._on_layers_changed),
                              (layer_events.changed, self._on_layers_changed),
                              (self.viewer.dims.events.current_step, self._on_dims),
                              (self.viewer.dims.events.ndisplay, self._on_dims),
                              (self.viewer.dims.events.order, self._on_dims),
                              (self.viewer.events.theme, self._draw_plots)]
        for emitter, callback in self._viewer_hooks:
            emitter.connect(callback)
        self.native.destroyed.connect(self._teardown)
        for layer in self.viewer.layers:  # layers opened before the widget was docked
            _layers.style_layer(layer)
        self._on_layers_changed()
        self.values.value = [layer for _, layer in self._choices(_layers.is_map)()
                             if _layers.is_predicted_sff(layer) or layer is self.reference.value]
        self._draw_plots()

    # --------------------------------------------------------------------------------------- choices
    def _choices(self, kind: Any) -> Any:
        def choices(_widget: Any = None) -> list[tuple[str, Any]]:
            return [(layer.name, layer) for layer in self.viewer.layers if kind(layer)]

        return choices

    def _on_layers_changed(self, event: Any = None) -> None:
        """New or removed layers: refresh the lists, pick sensible defaults, select new predictions."""
        for widget in (self.labels_layer, self.shapes_layer, self.values, self.reference):
            widget.reset_choices()
        for combo, kind in ((self.labels_layer, _layers.is_labels), (self.shapes_layer, _layers.is_shapes)):
            if combo.value is None:
                combo.value = next((layer for _, layer in self._choices(kind)()), None)
        if self.reference.value is None:
            self.reference.value = _layers.find_ground_truth(self.viewer)
        added = getattr(event, "value", None) if getattr(event, "type", "") in ("inserted", "changed") else None
        if added is not None and getattr(event, "type", "") == "inserted":
            _layers.style_layer(added)  # colour bar on maps, outlines on labels, as with the Predict widget docked
        if added is not None and (_layers.is_predicted_sff(added) or added is self.reference.value):
            self.values.value = [*self.values.value, added]
        self._on_settings_changed()

    def _on_settings_changed(self, *_: Any) -> None:
        self._reported.clear()  # the user acted: say again what is still wrong
        self._rewire()
        self.schedule()

    def _rewire(self) -> None:
        """Listen to exactly the layers in use, so painting or editing them updates the numbers."""
        for emitter in self._watched:
            emitter.disconnect(self._on_layer_event)
        self._watched = []
        used = [self.labels_layer.value, self.shapes_layer.value, self.reference.value, *self.values.value]
        for layer in {id(layer): layer for layer in used if layer is not None}.values():
            for name in WATCHED_EVENTS:
                emitter = getattr(layer.events, name, None)
                if emitter is not None:
                    emitter.connect(self._on_layer_event)
                    self._watched.append(emitter)

    def _on_layer_event(self, event: Any) -> None:
        if event.type == "name":
            for widget in (self.labels_layer, self.shapes_layer, self.values, self.reference):
                widget.reset_choices()
        self.schedule()

    def _on_dims(self, *_: Any) -> None:
        if self.scope.value == SCOPES[1]:
            self.schedule()

    # ------------------------------------------------------------------------------------ scheduling
    @property
    def busy(self) -> bool:
        """True while an update is waiting for the debounce, running, or queued behind a running one."""
        return not self._closed and (self._timer.isActive() or self._worker is not None or self._pending)

    def schedule(self, *_: Any) -> None:
        """Recompute after DEBOUNCE_MS of quiet; results of computations started earlier are dropped."""
        if self._closed:
            return
        self._generation += 1
        self._timer.start()

    def refresh(self, *_: Any) -> None:
        """Recompute now (still in a worker); wait for ``busy`` to turn False for the new ``rows``."""
        if self._closed:
            return
        self._generation += 1
        self._timer.stop()
        self._start()

    def _start(self) -> None:
        from napari.qt.threading import create_worker

        if self._closed:
            return
        if self._worker is not None:  # one computation at a time; the latest request runs next
            self._pending = True
            return
        request = self._make_request()
        if request is None:
            self._show(RoiResult(self._generation, []))
            return
        worker = create_worker(compute, request, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(lambda error, generation=request.generation: self._on_errored(error, generation))
        worker.finished.connect(self._on_finished)
        self._worker = worker
        worker.start()

    def _on_returned(self, result: RoiResult) -> None:
        if not self._closed and result.generation == self._generation:  # else a newer request supersedes it
            self._show(result)

    def _on_errored(self, error: Exception, generation: int) -> None:
        if self._closed or generation != self._generation:  # a newer request will meet the problem again
            return
        self._notes = []
        self._report(f"napari-sff ROI statistics: {error}")
        self._show(RoiResult(self._generation, []))

    def _on_finished(self) -> None:
        self._worker = None
        if self._pending and not self._closed:
            self._pending = False
            self._start()

    def _teardown(self, *_: Any) -> None:
        self._closed = True
        self._pending = False
        for emitter, callback in self._viewer_hooks:
            emitter.disconnect(callback)
        for emitter in self._watched:
            emitter.disconnect(self._on_layer_event)
        self._watched = []

    def _report(self, message: str) -> None:
        """A note for the status line plus one notification per distinct problem (not one per brush stroke)."""
        from napari.utils.notifications import show_error

        self._notes.append(message.removeprefix("napari-sff: "))
        self.status.value = "; ".join(self._notes)
        if message not in self._reported:
            self._reported.add(message)
            show_error(message)

    # --------------------------------------------------------------------------------------- request
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
                             grid_to_values=grid_to_values, reference=None if reference is None else reference.name)
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
        if self.scope.value == SCOPES[1]:
            where = _layers.current_slice(self.viewer, grid)
            if where is None:
                scope = "whole volume (3D view has no current slice)"
            elif not 0 <= where[1] < grid.data.shape[where[0]]:
                self.status.value = f"the current slice is outside '{grid.name}'"
                return False
            else:
                request.slice_axis, request.slice_index = where
                scope = f"slice {where[1]} of axis {where[0]}"
        self.status.value = "; ".join([f"{scope}, reference: {request.reference or 'none'}", *self._notes])
        return True

    # ---------------------------------------------------------------------------------------- output
    def _show(self, result: RoiResult) -> None:
        self.rows = result.rows
        self.shape_base = result.shape_base
        self.reference_name = result.reference
        self._fill_table()
        self._draw_plots()
        self.updates += 1

    def _fill_table(self) -> None:
        table = self.table
        table.setSortingEnabled(False)  # Qt: fill unsorted, then re-apply the user's sort column
        table.clearContents()
        table.setRowCount(len(self.rows))
        for r, (row, texts) in enumerate(zip(self.rows, stats.format_rows(self.rows), strict=True)):
            for c, (key, text) in enumerate(zip(COLUMN_KEYS, texts, strict=True)):
                item = _SortItem(text, getattr(row, key))
                item.setData(Qt.ItemDataRole.UserRole, r)
                table.setItem(r, c, item)
        table.setSortingEnabled(True)
        table.resizeColumnsToContents()
        self._fill_summary()

    def short_names(self) -> dict[str, str]:
        """Column names of the summary and the report: "GT", "U-Net", "DDPM"... (:func:`report.short_map_names`)."""
        sources = list(dict.fromkeys(row.source for row in self.rows))
        models = {layer.name: layer.metadata["napari_sff"]["model"] for layer in self.viewer.layers
                  if layer.name in sources and _layers.is_predicted_sff(layer)}
        return report.short_map_names(sources, self.reference_name, models)

    def compact(self) -> stats.CompactTable:
        """The summary's numbers: :func:`stats.compact_table` of ``rows``."""
        return stats.compact_table(self.rows, reference=self.reference_name, short_names=self.short_names())

    def _fill_summary(self) -> None:
        """One row per ROI, a column per map: the ROI column takes the width left, so nothing scrolls sideways."""
        compact = self.compact()
        table = self.summary
        table.clear()
        table.setColumnCount(len(compact.header))
        table.setRowCount(len(compact.values))
        table.setHorizontalHeaderLabels([_stacked(h) for h in compact.header])
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        for r, (label, texts) in enumerate(zip(compact.labels, compact.formatted(), strict=True)):
            for c, text in enumerate(texts):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, label)
                if c:
                    item.setTextAlignment(right)
                else:
                    item.setToolTip(text)
                table.setItem(r, c, item)
        header = table.horizontalHeader()
        for c in range(table.columnCount()):
            mode = QHeaderView.ResizeMode.Stretch if c == 0 else QHeaderView.ResizeMode.ResizeToContents
            header.setSectionResizeMode(c, mode)

    def summary_text(self) -> str:
        """The summary as shown (ROIs in label order), tab-separated with its one-line header."""
        table = self.summary
        lines = ["\t".join(table.horizontalHeaderItem(c).text().replace("\n", " ") for c in range(table.columnCount()))]
        for r in range(table.rowCount()):
            lines.append("\t".join(table.item(r, c).text() for c in range(table.columnCount())))
        return "\n".join(lines) + "\n"

    def table_text(self) -> str:
        """The table as shown (sort order included), tab-separated with the header."""
        lines = ["\t".join(stats.table_header())]
        for r in range(self.table.rowCount()):
            lines.append("\t".join(self.table.item(r, c).text() for c in range(self.table.columnCount())))
        return "\n".join(lines) + "\n"

    def copy_to_clipboard(self, *_: Any) -> str:
        """Put the table on the clipboard as TSV (pastes into a spreadsheet or a report)."""
        text = self.table_text()
        QApplication.clipboard().setText(text)
        return text

    def export_csv(self, path: str | Path, *, overwrite: bool = True) -> Path:
        """Write ``rows`` as CSV with units (see :func:`stats.rows_to_csv`); the dialog has asked about overwriting."""
        return stats.rows_to_csv(self.rows, path, overwrite=overwrite)

    def _export_dialog(self, *_: Any) -> None:
        from napari.utils.notifications import show_error, show_info

        path, _ = QFileDialog.getSaveFileName(self.native, "Export ROI statistics", "roi_sff.csv", "CSV (*.csv)")
        if not path:
            return
        path = path if path.lower().endswith(".csv") else f"{path}.csv"
        try:
            show_info(f"napari-sff: saved {self.export_csv(path)}")
        except OSError as error:
            show_error(f"napari-sff: could not save {path}: {error}")

    def overlay_layer(self) -> Any:
        """The SFF map on screen: the topmost visible layer among the chosen maps and the reference (or None)."""
        chosen = [layer for layer in [*self.values.value, self.reference.value] if layer is not None]
        return next((layer for layer in reversed(self.viewer.layers)
                     if layer.visible and any(layer is c for c in chosen)), None)

    def export_report(self, path: str | Path, *, overwrite: bool = True) -> list[Path]:
        """Write the reading report of what is on screen now (:func:`report.write_report`); the paths written.

        Gathers only plain values: a canvas screenshot, ``rows``, the overlay's colours and contrast limits
        (as fractions, like the rows), the layer names and each map's model, weights and device. Nothing else
        of the layers' metadata is passed on, so DICOM identifiers kept there never reach the report.
        """
        overlay = self.overlay_layer()
        screenshot = np.asarray(self.viewer.screenshot(canvas_only=True, flash=False))
        sources = {row.source for row in self.rows}
        maps = {}
        for layer in self.viewer.layers:
            info = layer.metadata.get("napari_sff") or {}
            if layer.name in sources and info:
                maps[layer.name] = {key: info.get(key) for key in ("model", "weights", "device")}
        view = "3D view"
        where = _layers.current_slice(self.viewer, overlay) if overlay is not None else None
        if overlay is None:
            view = ""
        elif where is not None:
            view = f"slice {where[1]} of {overlay.data.shape[where[0]]} along axis {where[0]}"
        scope = "whole volume"
        if self.scope.value == SCOPES[1]:
            scope = f"current slice ({view})" if where is not None else "whole volume (3D view has no slice)"
        limits = None if overlay is None else \
            tuple(float(limit) / io.layer_value_scale(overlay.metadata) for limit in overlay.contrast_limits)
        return report.write_report(
            path, rows=self.rows, screenshot=screenshot, reference=self.reference_name,
            short_names=self.short_names(), overlay=None if overlay is None else overlay.name,
            colormap=None if overlay is None else overlay.colormap.map(np.linspace(0.0, 1.0, 256)),
            contrast_limits=limits, maps=maps, view=view, scope=scope, overwrite=overwrite)

    def _report_dialog(self, *_: Any) -> None:
        from napari.utils.notifications import show_error, show_info

        path, chosen = QFileDialog.getSaveFileName(self.native, "Export report", "sff_report.pdf",
                                                   "PDF (*.pdf);;PNG + CSV (*.png)")
        if not path:
            return
        if not path.lower().endswith((".pdf", ".png")):
            path = f"{path}.png" if "png" in chosen.lower() else f"{path}.pdf"
        try:
            written = self.export_report(path)
        except (OSError, ValueError) as error:
            show_error(f"napari-sff: could not save the report {path}: {error}")
            return
        show_info(f"napari-sff: saved {' and '.join(str(p) for p in written)}")

    # ------------------------------------------------------------------------------------- highlight
    def _on_row_selected(self) -> None:
        items = self.table.selectedItems()
        if items:
            self.highlight(self.rows[items[0].data(Qt.ItemDataRole.UserRole)])

    def _on_summary_selected(self) -> None:
        items = self.summary.selectedItems()
        if items:
            label = items[0].data(Qt.ItemDataRole.UserRole)
            row = next((row for row in self.rows if row.label == label), None)
            if row is not None:
                self.highlight(row)

    def highlight(self, row: stats.RoiRow) -> None:
        """Show the row's ROI: select the label (or shape) and, in whole-volume scope, go to a slice holding it."""
        is_shape = self.shape_base is not None and row.label > self.shape_base
        layer = self.shapes_layer.value if is_shape else self.labels_layer.value
        if layer is None:
            return
        if is_shape:
            index = row.label - self.shape_base - 1
            if index >= layer.nshapes:
                return
            layer.selected_data = {index}
            present = np.unique(np.floor(np.asarray(layer.data[index]) + 0.5).astype(int), axis=0)
        else:
            layer.selected_label = row.label
            layer.show_selected_label = True
            present = None
        if self.scope.value == SCOPES[0]:
            self._go_to_slice(layer, row.label, present)

    def _go_to_slice(self, layer: Any, label: int, shape_points: np.ndarray | None) -> None:
        where = _layers.current_slice(self.viewer, layer)
        if where is None:
            return
        axis, index = where
        if shape_points is not None:
            slices = np.unique(shape_points[:, axis])
        else:
            others = tuple(a for a in range(layer.ndim) if a != axis)
            slices = np.flatnonzero(np.any(np.asarray(layer.data) == label, axis=others))
        if slices.size == 0 or index in slices:
            return
        point = np.asarray(layer.world_to_data(self.viewer.dims.point), dtype=float)
        point[axis] = slices[slices.size // 2]
        world_axis = axis + self.viewer.dims.ndim - layer.ndim
        self.viewer.dims.set_point(world_axis, layer.data_to_world(point)[axis])

    # ------------------------------------------------------------------------------------------ plots
    def _make_figure(self) -> tuple[Any, Any]:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(5, 2.6), layout="constrained")
        figure.subplots(1, 2)
        canvas = FigureCanvasQTAgg(figure)
        canvas.setMinimumHeight(240)
        return figure, canvas

    def _draw_plots(self, *_: Any) -> None:
        """(1) predicted vs reference ROI means with the identity line; (2) Bland-Altman per predicted source."""
        from napari.utils.theme import get_theme

        theme = get_theme(self.viewer.theme)
        background, text = theme.background.as_hex(), theme.text.as_hex()
        scatter, agreement = self.figure.axes
        report.draw_agreement(scatter, agreement, self.rows, self.reference_name, names=self.short_names(),
                              text_color=text)
        self.figure.set_facecolor(background)
        for ax in (scatter, agreement):
            ax.set_facecolor(background)
            ax.tick_params(colors=text, labelsize=6)
            ax.xaxis.label.set(color=text, fontsize=7)
            ax.yaxis.label.set(color=text, fontsize=7)
            for spine in ax.spines.values():
                spine.set_color(text)
        self.canvas.draw_idle()
