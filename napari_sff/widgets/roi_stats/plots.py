"""The agreement plots under the tables: predicted vs reference ROI means, and Bland-Altman per map.

matplotlib is imported in the background when the widget is docked (on the GUI thread it froze the viewer
1.1 s of docking): the plots take the place of a blank area of their size once it is in.
"""

from __future__ import annotations

import threading
from typing import Any

from napari_sff import report
from napari_sff.widgets._background import import_quietly, run_once_in_background, when_set

PLOT_MODULES = ("matplotlib.figure", "matplotlib.backends.backend_qtagg")
#: Set once :data:`PLOT_MODULES` are imported (or failed to: making the figure then raises the error).
PLOTS_IMPORTED = threading.Event()
PLOT_HEIGHT = 240


class PlotsMixin:
    """Draws the plots. Uses the widget's ``viewer``, ``native``, ``_closed``, ``rows``, ``reference_name`` and
    ``short_names``; sets ``figure`` and ``canvas`` (None until matplotlib is in)."""

    def _start_plots(self) -> None:
        """A blank area where the plots go, matplotlib imported in the background, then the figure."""
        from qtpy.QtWidgets import QWidget

        self.figure = self.canvas = None
        self._plots_placeholder = QWidget()
        self._plots_placeholder.setMinimumHeight(PLOT_HEIGHT)
        self.native.layout().addWidget(self._plots_placeholder)
        run_once_in_background(PLOTS_IMPORTED, lambda: import_quietly(PLOT_MODULES))
        when_set(PLOTS_IMPORTED, self._make_figure)

    def _make_figure(self) -> None:
        if self._closed or self.figure is not None:
            return
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(5, 2.6), layout="constrained")
        figure.subplots(1, 2)
        canvas = FigureCanvasQTAgg(figure)
        canvas.setMinimumHeight(PLOT_HEIGHT)
        self.native.layout().replaceWidget(self._plots_placeholder, canvas)
        self._plots_placeholder.deleteLater()
        self.figure, self.canvas = figure, canvas
        self._draw_plots()

    def _draw_plots(self, *_: Any) -> None:
        """(1) predicted vs reference ROI means with the identity line; (2) Bland-Altman per predicted source."""
        if self.figure is None:  # drawn when it is made
            return
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
