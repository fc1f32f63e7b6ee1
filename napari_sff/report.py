"""One-file reading report: the viewed slice with its colour bar, the compact ROI table and the agreement plots.

Plain functions of plain inputs (an RGB screenshot, :class:`stats.RoiRow` rows, a colormap, contrast limits, the
maps' ``metadata["napari_sff"]`` dicts), so the ROI widget only gathers them and scripts or tests can write the same
report. A ``.pdf`` path gives one PDF (page 1: header, slice, table; then the plots); a ``.png`` path gives one
PNG with everything plus a CSV of the full rows beside it. Files are written with :func:`napari_sff.io.atomic_write`.

Patient data: the report shows layer names (from SeriesDescription or file names), ROI names and, from each map's
napari-sff metadata, only ``model``, ``weights`` (file name) and ``device``. Nothing else of a layer's metadata is
read, so DICOM identifiers kept there (PatientName, PatientID, dates) never reach the file. The date on the report is
the day it was made, not the study date.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from napari_sff import stats
from napari_sff.inference import ARCH_LABELS
from napari_sff.io.atomic import atomic_write

RESEARCH_USE = "Research tool, not for diagnosis."
REFERENCE_SHORT = "GT"

_PAGE = (8.27, 11.69)  # A4 portrait, inches
_MARGIN = 0.6
_ROW = 0.22  # table row height, inches
_IMAGE_HEIGHT = 4.6
_PLOTS_HEIGHT = 3.3
_MAX_NAME = 40  # characters of an ROI name in the printed table


class ReportError(ValueError):
    """A report cannot be written from these inputs (bad file type, bad screenshot)."""


# ------------------------------------------------------------------------------------------------ names
def short_map_names(
    sources: Sequence[str], reference: str | None = None, models: Mapping[str, str | None] | None = None,
) -> dict[str, str]:
    """Column names a table fits: the architecture label of a prediction ("U-Net", "DDPM"), "GT" for a measured
    reference, else the layer name before " [". Repeats get " 2", " 3", so columns stay distinguishable."""
    models = models or {}
    names: dict[str, str] = {}
    used: dict[str, int] = {}
    for source in sources:
        model = models.get(source)
        if model in ARCH_LABELS:
            name = ARCH_LABELS[model]
        elif source == reference:
            name = REFERENCE_SHORT
        else:
            name = source.split(" [")[0]
        used[name] = used.get(name, 0) + 1
        names[source] = name if used[name] == 1 else f"{name} {used[name]}"
    return names


# ------------------------------------------------------------------------------------------------ plots
def draw_agreement(
    scatter: Any, agreement: Any, rows: Sequence[stats.RoiRow], reference: str | None, *,
    names: Mapping[str, str] | None = None, text_color: str = "black", fontsize: float = 7,
) -> None:
    """(1) predicted vs reference ROI means with the identity line; (2) Bland-Altman per predicted source.

    The legend sits above the scatter axes, outside the data, so its markers never read as one more ROI.
    Shared by the ROI widget and the report.
    """
    names = names or {}
    for ax in (scatter, agreement):
        ax.clear()
    means: dict[str, dict[int, float]] = {}
    for row in rows:
        means.setdefault(row.source, {})[row.label] = 100.0 * row.mean
    predicted = [source for source in means if source != reference] if reference in means else []
    message = ("no reference map: choose one to compare" if reference is None
               else "select a predicted map" if not predicted else "")
    span: list[float] = []
    for k, source in enumerate(predicted):
        colour = f"C{k}"
        labels = [label for label, v in means[source].items()
                  if np.isfinite(v) and np.isfinite(means[reference].get(label, np.nan))]
        if not labels:
            continue
        ref = np.array([means[reference][label] for label in labels])
        pred = np.array([means[source][label] for label in labels])
        span += [ref.min(), ref.max(), pred.min(), pred.max()]
        scatter.scatter(ref, pred, s=14, color=colour, label=names.get(source, source.split(" [")[0]))
        agreement.scatter((ref + pred) / 2, pred - ref, s=14, color=colour)
        ba = stats.bland_altman(pred, ref)
        for value, style in ((ba["bias"], "-"), (ba["loa_low"], "--"), (ba["loa_high"], "--")):
            if np.isfinite(value):
                agreement.axhline(value, color=colour, linestyle=style, linewidth=0.8)
    if span:
        low, high = agreement.get_ylim()  # near-identical maps: keep a readable +-1 pp axis, no offset text
        if high - low < 2.0:
            agreement.set_ylim((low + high) / 2 - 1.0, (low + high) / 2 + 1.0)
        lo, hi = min(span), max(span)
        pad = max(1.0, 0.05 * (hi - lo))
        scatter.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color=text_color, linestyle=":", linewidth=0.8)
        count = len(scatter.collections)
        scatter.legend(loc="lower left", bbox_to_anchor=(0.0, 1.01), ncols=max(1, count), borderaxespad=0.0,
                       fontsize=fontsize - 1, frameon=False, labelcolor=text_color, handletextpad=0.2,
                       columnspacing=1.0)
    elif not message:
        message = "no ROI has values in both maps"
    if message:
        for ax in (scatter, agreement):
            ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color=text_color,
                    fontsize=fontsize, wrap=True)
    ref_name = names.get(reference, reference.split(" [")[0]) if reference else "reference"
    scatter.set(xlabel=f"{ref_name} mean [%]", ylabel="predicted mean [%]")
    agreement.set(xlabel="mean of the two [%]", ylabel="predicted - reference [pp]")


@dataclass(frozen=True)
class AgreementPicture:
    """What the ROI widget's plots show, gathered on the GUI thread; :func:`render_agreement` draws it in a worker
    (an Agg draw of the two plots took 50-160 ms here: on the GUI thread that froze the viewer at each update)."""

    rows: tuple[stats.RoiRow, ...]
    reference: str | None
    names: Mapping[str, str]
    background: str
    text_color: str
    width_px: int
    height_px: int
    dpi: float = 100.0


def render_agreement(picture: AgreementPicture) -> tuple[Any, np.ndarray]:
    """:func:`draw_agreement` on a new off-screen (Agg) figure of the picture's size and colours, drawn: the
    figure and its pixels (height x width x 4, RGBA uint8). No Qt: call it from any one thread at a time."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(picture.width_px / picture.dpi, picture.height_px / picture.dpi), dpi=picture.dpi,
                    layout="constrained", facecolor=picture.background)
    canvas = FigureCanvasAgg(figure)
    scatter, agreement = figure.subplots(1, 2)
    draw_agreement(scatter, agreement, picture.rows, picture.reference, names=picture.names,
                   text_color=picture.text_color)
    for ax in (scatter, agreement):
        ax.set_facecolor(picture.background)
        ax.tick_params(colors=picture.text_color, labelsize=6)
        ax.xaxis.label.set(color=picture.text_color, fontsize=7)
        ax.yaxis.label.set(color=picture.text_color, fontsize=7)
        for spine in ax.spines.values():
            spine.set_color(picture.text_color)
    canvas.draw()
    return figure, np.asarray(canvas.buffer_rgba()).copy()


# ------------------------------------------------------------------------------------------------ report
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


def _colormap(colormap: str | np.ndarray) -> Any:
    import matplotlib
    from matplotlib.colors import ListedColormap

    if isinstance(colormap, str):
        try:
            return matplotlib.colormaps[colormap]
        except KeyError:
            raise ReportError(f"colormap {colormap!r} is not a matplotlib colormap; pass its colours instead") \
                from None
    colours = np.asarray(colormap, dtype=float)
    if colours.ndim != 2 or colours.shape[1] not in (3, 4) or len(colours) < 2:
        raise ReportError(f"colormap colours must be an (N, 3) or (N, 4) array, got shape {colours.shape}")
    return ListedColormap(np.clip(colours[:, :3], 0, 1))


def _provenance(sources: Sequence[str], reference: str | None, names: Mapping[str, str],
                maps: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per map: column name = layer name, and for predictions model, weights file and device only."""
    lines = []
    for source in sources:
        info = maps.get(source) or {}
        line = f"{names.get(source, source)} = {source}"
        if source == reference:
            line += " (reference)"
        if info.get("model"):
            weights = info.get("weights")
            weights = PurePath(str(weights)).name if weights else "unknown"
            line += f": model {info['model']}, weights {weights}, device {info.get('device') or 'unknown'}"
        lines.append(line)
    return lines


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


@dataclass
class Report:
    """Everything a report shows, as plain values; :meth:`figures` draws it, :meth:`write` saves it.

    ``screenshot`` is the viewer canvas, (H, W, 3|4) uint8; ``overlay`` the SFF layer shown on it, whose
    ``colormap`` (a matplotlib name or an (N, 3|4) array of colours 0-1, e.g. napari's ``colormap.map``) and
    ``contrast_limits`` (fractions) make the colour bar, drawn in percent. ``maps`` holds each map's
    ``metadata["napari_sff"]`` (only model, weights and device are read). ``view`` describes the slice on screen,
    ``scope`` where the statistics were taken; ``created`` defaults to now.
    """

    rows: Sequence[stats.RoiRow]
    screenshot: np.ndarray | None = None
    reference: str | None = None
    short_names: Mapping[str, str] | None = None
    overlay: str | None = None
    colormap: str | np.ndarray | None = "inferno"
    contrast_limits: tuple[float, float] | None = (0.0, 1.0)
    maps: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    view: str = ""
    scope: str = "whole volume"
    created: datetime | None = None

    def __post_init__(self) -> None:
        if self.screenshot is not None:
            shot = np.asarray(self.screenshot)
            if shot.ndim != 3 or shot.shape[2] not in (3, 4) or shot.dtype != np.uint8:
                raise ReportError(f"the screenshot must be an (H, W, 3|4) uint8 image, got {shot.shape} {shot.dtype}")
            self.screenshot = shot
        sources = list(dict.fromkeys(row.source for row in self.rows))
        if self.reference not in sources:
            self.reference = None
        self.short_names = {**short_map_names(sources, self.reference), **(self.short_names or {})}

    def figures(self, *, single: bool = False) -> list[Any]:
        """The report's matplotlib figures: A4 pages (page 1: header, slice, table; then the plots), or one tall
        sheet with everything (``single``, the PNG)."""
        import matplotlib

        from napari_sff import __version__

        names = dict(self.short_names or {})
        table = stats.compact_table(self.rows, reference=self.reference, short_names=names)
        cells = table.formatted()
        sources = list(dict.fromkeys(row.source for row in self.rows))
        if self.reference is not None:
            sources = [self.reference, *[source for source in sources if source != self.reference]]
        lines = [*_provenance(sources, self.reference, names, self.maps), f"Statistics: {self.scope}"]
        when = (self.created or datetime.now().astimezone()).strftime("%Y-%m-%d %H:%M %Z").strip()
        shown = f"SFF overlay: {self.overlay}" if self.overlay else "no SFF overlay shown"
        caption = "  ·  ".join(part for part in (shown, self.view) if part)
        cmap = _colormap(self.colormap) if self.colormap is not None and self.overlay else None
        limits = None if self.contrast_limits is None else tuple(float(v) for v in self.contrast_limits)
        header_height = 1.35 + 0.17 * len(lines)
        image_height = 0.5 + (_IMAGE_HEIGHT if self.screenshot is not None else 0.4)

        with matplotlib.rc_context({"pdf.fonttype": 42}):
            if single:
                height = (header_height + image_height + 0.25 + _ROW * (len(cells) + 1) + 0.25 + 0.75
                          + _PLOTS_HEIGHT + 0.6)
                sheets = [_Sheet(height)]
                top = _header(sheets[0], lines, when, __version__)
                top = _image(sheets[0], top, self.screenshot, caption, cmap, limits)
                top = _table_title(sheets[0], top)
                top = _table(sheets[0], top, table.header, cells)
                _plots(sheets[0], top, self.rows, self.reference, names)
                _footer(sheets[0], __version__)
                return [sheets[0].figure]
            first = _Sheet(_PAGE[1])
            top = _header(first, lines, when, __version__)
            top = _image(first, top, self.screenshot, caption, cmap, limits)
            top = _table_title(first, top)
            fit = max(1, math.floor((_PAGE[1] - 0.8 - top) / _ROW) - 1)
            _table(first, top, table.header, cells[:fit])
            sheets = [first]
            rest, per_page = cells[fit:], math.floor((_PAGE[1] - 1.6) / _ROW) - 1
            while rest:
                sheet = _Sheet(_PAGE[1])
                sheet.text(0.5, "ROI table (continued)", fontsize=9, weight="bold")
                _table(sheet, 0.8, table.header, rest[:per_page])
                rest = rest[per_page:]
                sheets.append(sheet)
            sheets.append(_Sheet(_PAGE[1]))
            _plots(sheets[-1], 0.6, self.rows, self.reference, names)
            for page, sheet in enumerate(sheets, start=1):
                _footer(sheet, __version__, page, len(sheets))
            return [sheet.figure for sheet in sheets]

    def write(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> list[Path]:
        """Write ``path`` (``.pdf``; or ``.png`` plus a ``.csv`` of the full rows beside it); the paths written."""
        import matplotlib
        from matplotlib.backends.backend_pdf import PdfPages

        from napari_sff import __version__

        path = Path(path)
        kind = path.suffix.lower()
        if kind not in (".pdf", ".png"):
            raise ReportError(f"a report is a .pdf or a .png file, not '{path.name}'; choose another name")
        targets = [path] if kind == ".pdf" else [path, path.with_suffix(".csv")]
        if not overwrite:
            for target in targets:
                if target.exists():
                    raise FileExistsError(f"{target} exists; choose another name or pass overwrite=True")
        figures = self.figures(single=kind == ".png")
        with matplotlib.rc_context({"pdf.fonttype": 42}), atomic_write(path, overwrite=overwrite) as tmp:
            if kind == ".png":
                figures[0].savefig(tmp, format="png", dpi=150)
            else:
                metadata = {"Title": "napari-sff ROI report", "Subject": RESEARCH_USE,
                            "Creator": f"napari-sff {__version__}"}
                with PdfPages(tmp, metadata=metadata) as pdf:
                    for figure in figures:
                        pdf.savefig(figure)
        if kind == ".png":
            stats.rows_to_csv(self.rows, targets[1], overwrite=overwrite)
        return targets


def write_report(path: str | os.PathLike[str], *, overwrite: bool = True, **content: Any) -> list[Path]:
    """``Report(**content).write(path)``: the one call the widget and scripts need; returns the paths written."""
    return Report(**content).write(path, overwrite=overwrite)


def _table_title(sheet: _Sheet, top: float) -> float:
    sheet.text(top, "ROI table: mean SFF of each map; Δ = map - reference in percentage points (pp)", fontsize=8,
               weight="bold")
    return top + 0.25
