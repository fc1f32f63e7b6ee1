"""Saving what the widget shows: the ROI table as CSV and the reading report (PDF, or PNG + CSV)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import QFileDialog

from napari_sff import io, report, stats
from napari_sff.widgets import _layers
from napari_sff.widgets._background import save_in_background
from napari_sff.widgets._layers import SCOPES


class ExportMixin:
    """CSV and report export. Uses the widget's ``viewer``, ``rows``, ``rows_exclude_rim``, ``reference_name``,
    ``values``, ``reference``, ``scope`` and ``short_names``."""

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
        """Write the reading report of what is on screen now (:func:`report.write_report`); the paths written."""
        return report.write_report(path, overwrite=overwrite, **self.report_content())

    def export_report_in_background(self, path: str | Path) -> Any:
        """What *Export report…* does: the content gathered now (the screenshot is of the canvas as it is), the
        file written in a napari thread worker (a PDF took 1.15 s on the GUI thread), a notification when done;
        the worker, started."""
        return save_in_background(
            report.write_report, path, overwrite=True, **self.report_content(),
            saved=lambda written: f"napari-sff: saved {' and '.join(str(p) for p in written)}",
            failed=lambda error: f"napari-sff: could not save the report {path}: {error}")

    def report_content(self) -> dict[str, Any]:
        """:func:`report.write_report`'s content, gathered on the GUI thread as plain values: a canvas
        screenshot, ``rows``, the overlay's colours and contrast limits (as fractions, like the rows), the layer
        names and each map's model, weights and device. Nothing else of the layers' metadata is passed on, so
        DICOM identifiers kept there never reach the report."""
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
        if self.rows_exclude_rim:
            rim = self.rows_exclude_rim
            scope += (f"; each ROI without its border of {rim} voxel{'s' * (rim > 1)} "
                      "(voxels and volumes are the cores')")
        limits = None if overlay is None else \
            tuple(float(limit) / io.layer_value_scale(overlay.metadata) for limit in overlay.contrast_limits)
        return dict(rows=list(self.rows), screenshot=screenshot, reference=self.reference_name,
                    short_names=self.short_names(), overlay=None if overlay is None else overlay.name,
                    colormap=None if overlay is None else overlay.colormap.map(np.linspace(0.0, 1.0, 256)),
                    contrast_limits=limits, maps=maps, view=view, scope=scope)

    def _report_dialog(self, *_: Any) -> None:
        path, chosen = QFileDialog.getSaveFileName(self.native, "Export report", "sff_report.pdf",
                                                   "PDF (*.pdf);;PNG + CSV (*.png)")
        if not path:
            return
        if not path.lower().endswith((".pdf", ".png")):
            path = f"{path}.png" if "png" in chosen.lower() else f"{path}.pdf"
        self.export_report_in_background(path)
