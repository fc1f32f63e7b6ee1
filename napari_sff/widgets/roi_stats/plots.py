"""The agreement plots under the tables: predicted vs reference ROI means, and Bland-Altman per map."""

from __future__ import annotations

from typing import Any

from napari_sff import report


class PlotsMixin:
    """Draws the plots. Uses the widget's ``viewer``, ``figure``, ``canvas``, ``rows``, ``reference_name`` and
    ``short_names``."""

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
