"""The report as a whole: :class:`Report` (plain inputs, checked), its pages in order, and writing the file."""

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
from napari_sff.io.atomic import atomic_write
from napari_sff.report.names import short_map_names
from napari_sff.report.pages import RESEARCH_USE, _footer, _header, _image, _plots, _table, _table_title
from napari_sff.report.sheet import _IMAGE_HEIGHT, _PAGE, _PLOTS_HEIGHT, _ROW, _Sheet


class ReportError(ValueError):
    """A report cannot be written from these inputs (bad file type, bad screenshot)."""


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
