"""The report's page geometry in inches and :class:`_Sheet`, a figure laid out from its top-left corner."""

from __future__ import annotations

from typing import Any

_PAGE = (8.27, 11.69)  # A4 portrait, inches
_MARGIN = 0.6
_ROW = 0.22  # table row height, inches
_IMAGE_HEIGHT = 4.6
_PLOTS_HEIGHT = 3.3


class _Sheet:
    """A figure laid out in inches from its top-left corner (deterministic, no layout engine)."""

    def __init__(self, height: float):
        from matplotlib.figure import Figure

        self.width, self.height = _PAGE[0], height
        self.figure = Figure(figsize=(self.width, height), facecolor="white")

    def text(self, top: float, text: str, *, left: float = _MARGIN, **kwargs: Any) -> None:
        kwargs.setdefault("fontsize", 7)
        self.figure.text(left / self.width, 1 - top / self.height, text, va="top", ha="left", **kwargs)

    def axes(self, top: float, height: float, left: float = _MARGIN, width: float | None = None) -> Any:
        width = self.width - 2 * _MARGIN if width is None else width
        return self.figure.add_axes((left / self.width, 1 - (top + height) / self.height, width / self.width,
                                     height / self.height))
