"""The QC table of a cohort run: one row per input of this share, what happened to it and what the model thought of
the scan, read back from each map's sidecar (:mod:`napari_sff.provenance`), so maps made by earlier runs (skipped
now) keep their rows. Sorting it by ``feature_distance_max`` puts the scans to look at first on top.
"""

from __future__ import annotations

import csv
import io as _io
import os
from collections.abc import Sequence
from pathlib import Path

from napari_sff import io
from napari_sff.provenance import read_sidecar

QC_COLUMNS = ("output", "status", "reason", "model", "weights", "mirrored", "slices", "ms_per_slice", "device",
              "model_spacing_mm", "feature_distance_median", "feature_distance_max", "share_beyond_threshold",
              "out_of_distribution")


def qc_table_path(out_dir: str | os.PathLike, rank: int = 0, world: int = 1) -> Path:
    """``<out>/qc.csv``, or one file per share (``qc.rank0of4.csv``) so that ranks never write the same file."""
    return Path(out_dir) / ("qc.csv" if world <= 1 else f"qc.rank{rank}of{world}.csv")


def qc_rows(items: Sequence, out_dir: str | os.PathLike, suffix: str, summary) -> list[dict]:
    """Rows for ``items`` (:class:`~napari_sff.cohort.CohortItem`) after ``summary`` (their CohortSummary)."""
    failed = dict(summary.failed)
    done = {Path(p) for p in summary.done}
    rows = []
    for item in items:
        target = item.output(out_dir, suffix)
        row = dict.fromkeys(QC_COLUMNS, "")
        row["output"] = str(target.relative_to(out_dir))
        if item.path in failed:
            row.update(status="failed", reason=failed[item.path])
            rows.append(row)
            continue
        row["status"] = "done" if target in done else "skipped (made earlier)"
        info = read_sidecar(target)
        if info is None:
            row["reason"] = "no sidecar (made before napari-sff wrote them)"
            rows.append(row)
            continue
        distance = info.get("feature_distance") or {}
        spacing = info.get("model_spacing_mm")
        row.update(model=info.get("model", ""), weights=info.get("weights", ""), mirrored=info.get("mirrored", ""),
                   slices=info.get("slices", ""), ms_per_slice=info.get("ms_per_slice", ""),
                   device=info.get("device", ""),
                   model_spacing_mm="" if not spacing else " x ".join(f"{v:.2f}" for v in spacing),
                   feature_distance_median=_rounded(distance.get("median")),
                   feature_distance_max=_rounded(distance.get("max")),
                   share_beyond_threshold=_rounded(distance.get("share_beyond_threshold")),
                   out_of_distribution=info.get("out_of_distribution") or "")
        rows.append(row)
    return rows


def _rounded(value: float | None) -> object:
    return "" if value is None else round(float(value), 4)


def write_qc_table(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """The rows as CSV, atomically (a rerun replaces the table of its share)."""
    text = _io.StringIO()
    writer = csv.DictWriter(text, fieldnames=QC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return io.atomic_write_text(path, text.getvalue())
