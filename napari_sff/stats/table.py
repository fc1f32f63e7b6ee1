"""Rows -> what people read: headers with units, formatted cells, the compact per-ROI table, CSV files."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from napari_sff.io.atomic import atomic_write
from napari_sff.stats.rows import _KIND, _STAT_SPECS, ID_COLUMNS, RoiRow, _header

# --------------------------------------------------------------------------------------------
# Formatting and export
# --------------------------------------------------------------------------------------------


def table_header(percent: bool = True) -> list[str]:
    """Column headers (with units) shared by :func:`format_rows` and :func:`rows_to_csv`."""
    return [h for _, h in ID_COLUMNS] + [_header(base, kind, percent) for _, base, kind in _STAT_SPECS]


def _cell(value: object, kind: str, percent: bool, missing: str) -> str:
    """One formatted value; one formatter for widget and CSV so they never disagree."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    if kind in ("text", "count"):
        return str(value)
    if not percent:
        return repr(float(value))
    text = f"{value:.2f}" if kind == "volume" else f"{100.0 * value:.1f}"
    return "0.0" if text == "-0.0" else text


def _format(rows: Sequence[RoiRow], percent: bool, missing: str) -> list[list[str]]:
    keys = [k for k, _ in ID_COLUMNS] + [k for k, _, _ in _STAT_SPECS]
    return [[_cell(getattr(row, k), _KIND[k], percent, missing) for k in keys] for row in rows]


def format_rows(rows: Sequence[RoiRow], *, percent: bool = True, missing: str = "—") -> list[list[str]]:
    """Display strings for a table widget, columns as :func:`table_header`.

    Fat fractions in percent with one decimal, volume in mL with two; ``missing`` stands for
    None/NaN (no reference, an ROI without voxels, SD of one voxel).
    """
    return _format(rows, percent, missing)


@dataclass(frozen=True)
class CompactTable:
    """What a radiologist reads, one row per ROI: name, volume, mean of each map, Δ of each map vs the reference.

    ``values`` hold raw numbers (fractions, mL) for sorting; :meth:`formatted` gives the display strings with the
    same formatter as the full table, so both tables and the CSV always show the same digits.
    """

    header: list[str]
    kinds: list[str]  # per column: "text", "volume", "fraction" (shown in %), "difference" (shown in pp)
    labels: list[int]  # ROI label id of each row
    values: list[list[object]]

    def formatted(self, missing: str = "—") -> list[list[str]]:
        return [[_cell(value, kind, True, missing) for value, kind in zip(row, self.kinds, strict=True)]
                for row in self.values]


def compact_table(
    rows: Sequence[RoiRow],
    *,
    reference: str | None = None,
    short_names: Mapping[str, str] | None = None,
) -> CompactTable:
    """Pivot :func:`roi_table` rows (one per ROI and map) into one row per ROI with a column per map.

    Columns: ``ROI``, ``mL`` (the ROI volume of the reference, else of the first map with a row for the ROI: maps
    differ only by excluded non-finite voxels), ``<map> %`` for each map (the reference first) and ``Δ <map> pp`` (mean - reference mean,
    percentage points) for each other map when ``reference`` is one of the maps.  ``short_names`` maps source
    names to column names (e.g. "GT", "U-Net"); sources without one keep their name.  ROIs keep the rows' order.
    """
    names = dict(short_names or {})
    sources = list(dict.fromkeys(row.source for row in rows))
    if reference in sources:
        sources.remove(reference)
        sources.insert(0, reference)
    else:
        reference = None
    others = [source for source in sources if source != reference]
    by_key = {(row.label, row.source): row for row in rows}
    labels = list(dict.fromkeys(row.label for row in rows))
    short = [names.get(source, source) for source in sources]
    header = ["ROI", "mL", *[f"{name} %" for name in short]]
    kinds = ["text", "volume", *["fraction"] * len(sources)]
    if reference is not None:
        header += [f"Δ {names.get(source, source)} pp" for source in others]
        kinds += ["difference"] * len(others)
    values = []
    for label in labels:
        present = [by_key.get((label, source)) for source in sources]
        first = next(row for row in present if row is not None)
        volume_row = present[0] or first
        line: list[object] = [first.name, volume_row.volume_ml]
        line += [None if row is None else row.mean for row in present]
        if reference is not None:
            line += [None if row is None else row.diff_mean for row in present[1:]]
        values.append(line)
    return CompactTable(header, kinds, labels, values)


def rows_to_csv(
    rows: Sequence[RoiRow],
    path_or_file: str | os.PathLike[str] | IO[str],
    *,
    percent: bool = True,
    overwrite: bool = False,
) -> Path | None:
    """Write rows as CSV (UTF-8, header with units); returns the path written, if one was given.

    With ``percent=True`` fat fractions are percent with one decimal and volumes have two
    decimals; ``percent=False`` writes full-precision fractions for further analysis.  Missing
    values are empty cells.  A path is written atomically (temporary file in the same folder,
    then renamed), so a crash never leaves a half-written table, and an existing file is only
    replaced with ``overwrite=True``.  An open file object (opened with ``newline=""``) is
    written to as is.
    """
    table = [table_header(percent), *_format(rows, percent, missing="")]
    if not isinstance(path_or_file, (str, os.PathLike)):
        csv.writer(path_or_file).writerows(table)
        return None

    path = Path(path_or_file)
    with atomic_write(path, overwrite=overwrite) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(table)
    return path
