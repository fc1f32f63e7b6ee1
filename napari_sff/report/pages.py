"""The sections drawn on a report sheet: header, slice with colour bar, ROI table, agreement plots, footer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from napari_sff import stats
from napari_sff.report.plots import draw_agreement
from napari_sff.report.sheet import _IMAGE_HEIGHT, _MARGIN, _PLOTS_HEIGHT, _ROW, _Sheet

RESEARCH_USE = "Research tool, not for diagnosis."
_MAX_NAME = 40  # characters of an ROI name in the printed table


def _header(sheet: _Sheet, lines: Sequence[str], created: str, version: str) -> float:
    sheet.text(0.45, "napari-sff ROI report", fontsize=14, weight="bold")
    sheet.text(0.75, f"Report created {created}  ·  napari-sff {version}", fontsize=8)
    sheet.text(0.95, RESEARCH_USE, fontsize=9, weight="bold", color="#a00000")
    top = 1.25
    for line in lines:
        sheet.text(top, line)
        top += 0.17
    return top + 0.1


def _image(sheet: _Sheet, top: float, screenshot: np.ndarray | None, caption: str, colormap: Any,
           limits: tuple[float, float] | None) -> float:
    """The screenshot, as large as fits, and beside it the overlay's colour bar in percent."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    sheet.text(top, caption)
    top += 0.2
    if screenshot is None:
        sheet.text(top, "(no screenshot)")
        return top + 0.4
    rows, cols = screenshot.shape[:2]
    scale = min((sheet.width - 2 * _MARGIN - 1.2) / cols, _IMAGE_HEIGHT / rows)
    width, height = cols * scale, rows * scale
    ax = sheet.axes(top, height, width=width)
    ax.imshow(screenshot, interpolation="none")
    ax.set_axis_off()
    if colormap is not None and limits is not None:
        cax = sheet.axes(top, height, left=_MARGIN + width + 0.15, width=0.18)
        bar = sheet.figure.colorbar(ScalarMappable(Normalize(100 * limits[0], 100 * limits[1]), colormap), cax=cax)
        bar.set_label("SFF [%]", fontsize=7)
        bar.ax.tick_params(labelsize=7)
    return top + height + 0.3


def _table(sheet: _Sheet, top: float, header: Sequence[str], cells: Sequence[Sequence[str]]) -> float:
    """The compact ROI table as text cells (searchable in the PDF), numbers right-aligned, shaded every other row."""
    width = sheet.width - 2 * _MARGIN
    first = min(2.2, 0.32 * width)
    rest = (width - first) / max(1, len(header) - 1)
    edges = [0.0, first, *[first + rest * (k + 1) for k in range(len(header) - 1)]]
    ax = sheet.axes(top, _ROW * (len(cells) + 1), width=width)
    ax.set_xlim(0, width)
    ax.set_ylim(len(cells) + 1, 0)
    ax.set_axis_off()
    for r, line in enumerate([list(header), *cells]):
        if r % 2 == 0 and r:
            ax.axhspan(r, r + 1, color="#f0f0f0", zorder=0)
        for c, text in enumerate(line):
            if c == 0 and len(text) > _MAX_NAME:
                text = text[: _MAX_NAME - 1] + "…"
            x = edges[c] + 0.05 if c == 0 else edges[c + 1] - 0.05
            ax.text(x, r + 0.5, text, ha="left" if c == 0 else "right", va="center", fontsize=7,
                    weight="bold" if r == 0 else "normal")
    ax.axhline(1, color="black", linewidth=0.6)
    return top + _ROW * (len(cells) + 1) + 0.25


def _plots(sheet: _Sheet, top: float, rows: Sequence[stats.RoiRow], reference: str | None,
           names: Mapping[str, str]) -> float:
    ref = names.get(reference, reference) if reference else "the reference"
    sheet.text(top, f"Agreement of ROI means with {ref}", fontsize=9, weight="bold")
    sheet.text(top + 0.22, "Left: one point per ROI and predicted map; dotted: identity. Right: Bland-Altman, "
                           "bias (solid) and 95 % limits of agreement (dashed).")
    top += 0.75  # room for the legend above the scatter axes
    width = (sheet.width - 2 * _MARGIN - 1.3) / 2  # room for each plot's tick labels and y label
    scatter = sheet.axes(top, _PLOTS_HEIGHT - 0.6, left=_MARGIN + 0.5, width=width)
    agreement = sheet.axes(top, _PLOTS_HEIGHT - 0.6, left=_MARGIN + 1.3 + width, width=width)
    draw_agreement(scatter, agreement, rows, reference, names=names, fontsize=8)
    for ax in (scatter, agreement):
        ax.tick_params(labelsize=7)
        ax.xaxis.label.set_fontsize(8)
        ax.yaxis.label.set_fontsize(8)
    return top + _PLOTS_HEIGHT


def _footer(sheet: _Sheet, version: str, page: int | None = None, pages: int | None = None) -> None:
    where = f"  ·  page {page} of {pages}" if page is not None else ""
    sheet.text(sheet.height - 0.4, f"{RESEARCH_USE}  napari-sff {version}{where}", fontsize=7, color="#555555")


def _table_title(sheet: _Sheet, top: float) -> float:
    sheet.text(top, "ROI table: mean SFF of each map; Δ = map - reference in percentage points (pp)", fontsize=8,
               weight="bold")
    return top + 0.25
