"""The dock widget itself: its controls, the signals that tie them to the viewer and the chosen layers, and
the debounced updates computed in a napari thread worker (:func:`napari_sff.roi.compute`).

The rest is mixed in: :mod:`.request` (layers -> request), :mod:`.table`, :mod:`.export`, :mod:`.plots`.
"""

from __future__ import annotations

from typing import Any

from magicgui.widgets import ComboBox, Container, Label, PushButton, Select
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QAbstractItemView, QComboBox, QTableWidget, QTabWidget

from napari_sff import stats
from napari_sff.roi import RoiResult, compute
from napari_sff.widgets import _layers
from napari_sff.widgets._layers import SCOPES
from napari_sff.widgets.roi_stats.export import ExportMixin
from napari_sff.widgets.roi_stats.plots import PlotsMixin
from napari_sff.widgets.roi_stats.request import RequestMixin
from napari_sff.widgets.roi_stats.table import COLUMN_KEYS, TableMixin

DEBOUNCE_MS = 300
#: The ROI border setting: (shown, voxels of each ROI's border left out; stats.roi_rim)
RIM_CHOICES = [("whole ROIs", 0), ("1 voxel left out", 1), ("2 voxels left out", 2), ("3 voxels left out", 3)]
#: Layer events after which the numbers may have changed (those a layer type lacks are skipped).
WATCHED_EVENTS = ("data", "paint", "features", "scale", "translate", "rotate", "shear", "affine", "name")


class RoiStatsWidget(RequestMixin, TableMixin, ExportMixin, PlotsMixin, Container):
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
        self.rows_exclude_rim = 0  # the ROI border the rows were computed without (the report says so)
        self._rim_plane: tuple[int, int | None] | None = None  # _viewed_plane() of the last request
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
        self.exclude_rim = ComboBox(label="ROI border", choices=RIM_CHOICES, value=0,
                                    tooltip="leave out each ROI's voxels within this many voxels (in-plane) of "
                                            "another label or the background: partial volume with the fat or "
                                            "fascia beside a muscle reads it fattier")
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
        self.extend([self.labels_layer, self.shapes_layer, self.values, self.reference, self.scope,
                     self.exclude_rim, buttons, self.status])

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
        self.native.layout().addWidget(self.tabs)
        self._start_plots()

        self._timer = QTimer(self.native)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._start)

        for widget in (self.labels_layer, self.shapes_layer, self.values, self.reference, self.scope,
                       self.exclude_rim):
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
        elif self.exclude_rim.value and self._viewed_plane() != self._rim_plane:  # the border's plane changed
            self.schedule()

    def _viewed_plane(self) -> tuple[int, int | None]:
        """(ndisplay, the world axis sliced on screen): what the ROI border's plane follows."""
        hidden = self.viewer.dims.not_displayed
        return self.viewer.dims.ndisplay, (hidden[-1] if hidden else None)

    @property
    def busy(self) -> bool:
        """True while an update is waiting for the debounce, running, or queued behind a running one, or the
        plots are not made yet."""
        return not self._closed and (self._timer.isActive() or self._worker is not None or self._pending
                                     or self.plots_busy)

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

    def _show(self, result: RoiResult) -> None:
        self.rows = result.rows
        self.shape_base = result.shape_base
        self.reference_name = result.reference
        self.rows_exclude_rim = result.exclude_rim
        self._fill_table()
        self._draw_plots()
        self.updates += 1
