"""The widget's two tables (a summary that fits the dock, all columns one tab away), their text for the
clipboard, and highlighting the ROI of a selected row in the viewer."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication, QHeaderView, QTableWidgetItem

from napari_sff import report, stats
from napari_sff.widgets import _layers
from napari_sff.widgets._layers import SCOPES

#: RoiRow attribute of each table column, in the order of :func:`stats.table_header`.
COLUMN_KEYS = [key for key, _ in stats.ID_COLUMNS] + [key for key, _ in stats.STAT_COLUMNS]


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



class TableMixin:
    """Fills and reads the tables. Uses the widget's ``viewer``, ``rows``, ``reference_name``, ``shape_base``,
    ``table``, ``summary``, ROI layer choices and ``scope``."""

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
