"""The row of an ROI table (:class:`RoiRow`) and its columns: attribute, header with units, kind."""

from __future__ import annotations

from dataclasses import dataclass

#: Identity columns that start every CSV / table row: (RoiRow attribute, header).
ID_COLUMNS: list[tuple[str, str]] = [("label", "label"), ("name", "name"), ("source", "source")]

# (RoiRow attribute, header without unit, kind).  The kind decides the unit and the formatting:
# "count" -> integer, "volume" -> mL, "fraction" -> % (or fraction), "difference" -> pp.
_STAT_SPECS: tuple[tuple[str, str, str], ...] = (
    ("n_voxels", "voxels", "count"),
    ("volume_ml", "volume", "volume"),
    ("mean", "mean", "fraction"),
    ("median", "median", "fraction"),
    ("sd", "SD", "fraction"),
    ("iqr", "IQR", "fraction"),
    ("p05", "P5", "fraction"),
    ("p95", "P95", "fraction"),
    ("diff_mean", "Δ mean vs reference", "difference"),
    ("mae", "MAE vs reference", "difference"),
    ("n_excluded", "excluded voxels (non-finite or rim)", "count"),
)
_KIND = {key: kind for key, _, kind in _STAT_SPECS} | {key: "text" for key, _ in ID_COLUMNS}


def _header(base: str, kind: str, percent: bool) -> str:
    """Header text with its unit, so an exported CSV is self-describing."""
    unit = {
        "count": None,
        "volume": "mL",
        "fraction": "%" if percent else "fraction",
        "difference": "pp" if percent else "fraction",
    }[kind]
    return base if unit is None else f"{base} [{unit}]"


#: Statistic columns in display/CSV order after ID_COLUMNS: (RoiRow attribute, header with units)
#: as written with ``percent=True``; "pp" = percentage points (a difference of two percentages).
#: With ``percent=False`` the % / pp units read "fraction" (see :func:`table_header`).
STAT_COLUMNS: list[tuple[str, str]] = [(key, _header(base, kind, True)) for key, base, kind in _STAT_SPECS]


@dataclass(frozen=True)
class RoiRow:
    """Statistics of one source inside one ROI; fat fractions are fractions (0-1), not percent.

    ``diff_mean`` and ``mae`` compare with the reference source; they are None for the
    reference itself or when no reference was given, and NaN when there is nothing to compare.
    """

    label: int
    name: str
    source: str
    n_voxels: int
    volume_ml: float
    mean: float
    median: float
    sd: float
    iqr: float
    p05: float
    p95: float
    diff_mean: float | None
    mae: float | None
    n_excluded: int = 0
