"""The agreement plots under the tables: predicted vs reference ROI means, and Bland-Altman per map.

Nothing of matplotlib runs on the GUI thread: it is imported in the background when the widget is docked (on the
GUI thread that froze the viewer 1.1 s), and every picture is drawn by :func:`napari_sff.report.render_agreement`
in a worker (an Agg draw took 50-160 ms here, at each update of the statistics), then shown as an image. One
drawing at a time; a request made meanwhile is drawn next, with what the widget holds then.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from napari_sff import report
from napari_sff.imports import import_quietly
from napari_sff.widgets._background import run_once_in_background, when_set

PLOT_MODULES = ("matplotlib.figure", "matplotlib.backends.backend_agg")
#: Set once :data:`PLOT_MODULES` are imported (or failed to: the drawing then reports the error).
PLOTS_IMPORTED = threading.Event()
PLOT_HEIGHT = 240
#: The width drawn before the plots' area has one (not laid out yet).
DEFAULT_PLOT_WIDTH = 500


class PlotsMixin:
    """Draws the plots. Uses the widget's ``viewer``, ``native``, ``_closed``, ``rows``, ``reference_name``,
    ``short_names`` and ``_report``; sets ``plot_view`` (the Qt label showing them), ``figure`` and ``canvas``
    (the matplotlib figure last shown and its Agg canvas; None until the first is drawn)."""

    def _start_plots(self) -> None:
        """The plots' area, matplotlib imported in the background, then the first picture."""
        from qtpy.QtWidgets import QLabel, QSizePolicy

        self.figure = self.canvas = None
        self._plot_worker: Any = None
        self._plot_pending = False
        self._plots_tried = False  # a first drawing has ended (or failed: the error was reported)
        self.plot_view = QLabel()
        self.plot_view.setFixedHeight(PLOT_HEIGHT)
        self.plot_view.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)  # the dock sets the width
        self._plot_resized = _when_resized(self.plot_view, self._draw_plots)
        self.native.layout().addWidget(self.plot_view)
        run_once_in_background(PLOTS_IMPORTED, lambda: import_quietly(PLOT_MODULES))
        when_set(PLOTS_IMPORTED, self._draw_plots)

    @property
    def plots_busy(self) -> bool:
        """True until the plots show what the widget holds now (not drawn yet, drawing, or another queued)."""
        return not self._plots_tried or self._plot_worker is not None or self._plot_pending

    def _picture(self) -> report.AgreementPicture:
        from napari.utils.theme import get_theme

        theme = get_theme(self.viewer.theme)
        ratio = float(self.plot_view.devicePixelRatioF())
        width = self.plot_view.width() if self.plot_view.width() > 1 else DEFAULT_PLOT_WIDTH
        return report.AgreementPicture(
            rows=tuple(self.rows), reference=self.reference_name, names=self.short_names(),
            background=theme.background.as_hex(), text_color=theme.text.as_hex(),
            width_px=round(width * ratio), height_px=round(PLOT_HEIGHT * ratio), dpi=100.0 * ratio)

    def _draw_plots(self, *_: Any) -> None:
        """(1) predicted vs reference ROI means with the identity line; (2) Bland-Altman per predicted source:
        drawn in a worker, shown when done."""
        if self._closed or not PLOTS_IMPORTED.is_set():  # drawn once matplotlib is in
            return
        if self._plot_worker is not None:
            self._plot_pending = True
            return
        from napari.qt.threading import create_worker

        self._plot_pending = False
        picture = self._picture()
        worker = create_worker(report.render_agreement, picture, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda drawn, ratio=picture.dpi / 100.0: self._show_plots(*drawn, ratio))
        worker.errored.connect(self._on_plots_failed)
        worker.finished.connect(self._on_plots_finished)
        self._plot_worker = worker
        worker.start()

    def _show_plots(self, figure: Any, pixels: np.ndarray, ratio: float) -> None:
        if self._closed:
            return
        from qtpy.QtGui import QImage, QPixmap

        height, width = pixels.shape[:2]
        pixmap = QPixmap.fromImage(QImage(pixels.data, width, height, 4 * width, QImage.Format.Format_RGBA8888))
        pixmap.setDevicePixelRatio(ratio)
        self.plot_view.setPixmap(pixmap)
        self.figure, self.canvas = figure, figure.canvas

    def _on_plots_failed(self, error: Exception) -> None:
        if not self._closed:
            self._report(f"napari-sff ROI plots: {error}")

    def _on_plots_finished(self) -> None:
        self._plot_worker = None
        self._plots_tried = True
        if self._plot_pending and not self._closed:
            self._draw_plots()


def _when_resized(widget: Any, callback: Any) -> Any:
    """An event filter calling ``callback()`` after each resize of ``widget`` (keep the returned object)."""
    from qtpy.QtCore import QEvent, QObject

    class Resized(QObject):
        def eventFilter(self, watched: Any, event: Any) -> bool:  # noqa: N802 (Qt's name)
            if event.type() == QEvent.Type.Resize:
                callback()
            return False

    watcher = Resized(widget)
    widget.installEventFilter(watcher)
    return watcher
