"""One fat-fraction table for a whole cohort: labels and maps of many cases -> ROI rows + agreement summary.

``napari-sff roi-stats --labels 'SEG/*_muscle.nii.gz' --map gt='DIXON/{case}_sff.nii.gz' --map
unet='PRED/{case}_t2w_sff.nii.gz' --reference gt -o table.csv`` runs :func:`cohort_rows` then
:func:`agreement_summary`. ``{case}`` is what the labels pattern's ``*`` matched. Each map is brought onto its
labels' grid by world coordinates with :func:`napari_sff.roi.onto_grid` -- the rule the ROI widget applies -- and
the rows are :func:`napari_sff.stats.roi_table`'s, so a case's numbers equal the widget's for the same files.
"""

from __future__ import annotations

import csv
import glob
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_sff import io, stats
from napari_sff.roi import onto_grid, volume_to_world


@dataclass
class CohortRows:
    """ROI rows of every case that could be measured, and why the others could not."""

    rows: list[tuple[str, stats.RoiRow]] = field(default_factory=list)  # (case, row)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (case, reason)


def match_cases(labels_pattern: str) -> dict[str, Path]:
    """case -> labels file for a glob with exactly one ``*`` (the case id); sorted by case."""
    if labels_pattern.count("*") != 1 or any(c in labels_pattern for c in "?["):
        raise ValueError(f"--labels {labels_pattern!r}: use exactly one '*' where the case id stands, e.g. "
                         "'SEG/*_muscle.nii.gz'")
    head, tail = labels_pattern.split("*")
    matcher = re.compile(re.escape(head) + "(.+?)" + re.escape(tail) + r"\Z")
    cases = {}
    for path in sorted(glob.glob(labels_pattern)):
        found = matcher.match(path)
        if found and "/" not in found.group(1) and os.sep not in found.group(1):
            cases[found.group(1)] = Path(path)
    if not cases:
        raise FileNotFoundError(f"--labels {labels_pattern!r} matches no file; check the pattern (quote it)")
    return cases


def parse_map_option(text: str) -> tuple[str, str]:
    """``name=PATTERN`` with ``{case}`` in the pattern."""
    name, sep, pattern = text.partition("=")
    if not sep or not name or "{case}" not in pattern:
        raise ValueError(f"--map {text!r}: use NAME=PATTERN with {{case}} in the pattern, e.g. "
                         "gt='DIXON/{case}_sff.nii.gz'")
    return name.strip(), pattern


def cohort_rows(
    labels_pattern: str, maps: Mapping[str, str], *, reference: str | None = None,
    label_names: Mapping[int, str] | None = None, read: Callable[[Path], io.Volume] | None = None,
    progress: Callable[[str], None] | None = None, exclude_rim: int = 0,
) -> CohortRows:
    """ROI rows per case: labels matched by ``labels_pattern``, each map's pattern filled with ``{case}``;
    ``exclude_rim`` voxels of each ROI's border left out (:func:`napari_sff.stats.roi_table`).

    A case whose files are missing, unreadable or cover another region is reported in ``failed`` and skipped.
    """
    if reference is not None and reference not in maps:
        raise ValueError(f"--reference {reference!r} is not one of the maps ({', '.join(maps)})")
    read = read or io.read_volume
    result = CohortRows()
    for case, labels_path in match_cases(labels_pattern).items():
        try:
            labels = read(labels_path)
            if labels.array.ndim != 3:
                raise ValueError(f"{labels_path}: labels must be one 3D volume, not {labels.array.ndim}D")
            grid = volume_to_world(labels)
            values = {}
            for name, pattern in maps.items():
                path = Path(pattern.replace("{case}", case))
                if not path.exists():
                    raise FileNotFoundError(f"map {name!r}: {path} does not exist")
                volume = read(path)
                values[name] = onto_grid(io.sff_as_fraction(volume.array), volume_to_world(volume), grid,
                                         labels.array.shape, name=f"{name} ({path.name})",
                                         grid_name=f"labels ({labels_path.name})")
            rows = stats.roi_table(values, np.asarray(labels.array).astype(np.int64), labels.spacing,
                                   reference=reference, label_names=dict(label_names or {}),
                                   exclude_rim=exclude_rim)
        except (ValueError, OSError) as exc:
            result.failed.append((case, str(exc).splitlines()[0]))
            if progress:
                progress(case)
            continue
        result.rows += [(case, row) for row in rows]
        if progress:
            progress(case)
    return result


def write_cohort_csv(result: CohortRows, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """The ROI widget's CSV columns with a leading ``case`` column (percent, as the widget exports)."""
    formatted = stats.format_rows([row for _, row in result.rows], percent=True, missing="")
    table = [["case", *stats.table_header(True)], *([case, *cells] for (case, _), cells in
                                                    zip(result.rows, formatted, strict=True))]
    with io.atomic_write(path, overwrite=overwrite) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(table)
    return Path(path)


def agreement_summary(result: CohortRows, reference: str) -> list[dict]:
    """Per ROI name and overall, for each map against ``reference``: bias and 95 % limits of agreement
    (Bland-Altman), ICC(A,1) and Pearson r of the ROI means over cases (percent / percentage points)."""
    means: dict[tuple[str, str, str], float] = {}  # (case, roi, source) -> mean %
    for case, row in result.rows:
        if row.n_voxels > 0 and math.isfinite(row.mean):
            means[(case, row.name, row.source)] = 100.0 * row.mean
    sources = sorted({source for _, _, source in means} - {reference})
    rois = sorted({roi for _, roi, _ in means})
    summary = []
    for source in sources:
        for roi in [*rois, None]:
            keys = [(case, name) for case, name, s in means if s == reference and (roi is None or name == roi)]
            pairs = [(means[(c, n, source)], means[(c, n, reference)]) for c, n in keys if (c, n, source) in means]
            pred = np.array([p for p, _ in pairs])
            ref = np.array([r for _, r in pairs])
            agreement = stats.bland_altman(pred, ref)
            summary.append({
                "map": source, "roi": "all ROIs" if roi is None else roi, "n": agreement["n"],
                "bias_pp": agreement["bias"], "loa_low_pp": agreement["loa_low"], "loa_high_pp": agreement["loa_high"],
                "icc_a1": stats.icc_absolute_agreement(np.stack([pred, ref], axis=1)) if len(pairs) > 1 else math.nan,
                "pearson_r": float(np.corrcoef(pred, ref)[0, 1]) if len(pairs) > 2 and np.ptp(ref) > 0
                and np.ptp(pred) > 0 else math.nan,
            })
    return summary


SUMMARY_COLUMNS = ("map", "roi", "n", "bias_pp", "loa_low_pp", "loa_high_pp", "icc_a1", "pearson_r")


def write_summary_csv(summary: Sequence[dict], path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    def cell(value: object) -> object:
        return "" if isinstance(value, float) and not math.isfinite(value) else \
            f"{value:.3f}" if isinstance(value, float) else value

    with io.atomic_write(path, overwrite=overwrite) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(SUMMARY_COLUMNS)
        writer.writerows([cell(entry[key]) for key in SUMMARY_COLUMNS] for entry in summary)
    return Path(path)


def bland_altman_figure(result: CohortRows, reference: str, path: str | os.PathLike, *,
                        overwrite: bool = False) -> Path:
    """Bland-Altman plot of ROI means (every case x ROI) per map against ``reference``, as PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    by_key = {(case, row.label, row.source): 100.0 * row.mean for case, row in result.rows
              if row.n_voxels > 0 and math.isfinite(row.mean)}
    sources = sorted({source for _, _, source in by_key} - {reference})
    figure = Figure(figsize=(4.5 * max(1, len(sources)), 3.6), layout="constrained")
    axes = figure.subplots(1, max(1, len(sources)), squeeze=False)[0]
    for ax, source in zip(axes, sources, strict=False):
        keys = [(c, label) for c, label, s in by_key if s == reference and (c, label, source) in by_key]
        pred = np.array([by_key[(c, label, source)] for c, label in keys])
        ref = np.array([by_key[(c, label, reference)] for c, label in keys])
        ax.scatter((pred + ref) / 2, pred - ref, s=10)
        agreement = stats.bland_altman(pred, ref)
        for value, style in ((agreement["bias"], "-"), (agreement["loa_low"], "--"), (agreement["loa_high"], "--")):
            if math.isfinite(value):
                ax.axhline(value, linestyle=style, linewidth=0.8, color="k")
        ax.set(title=f"{source} vs {reference} ({agreement['n']} ROIs)", xlabel="mean of the two [%]",
               ylabel=f"{source} - {reference} [pp]")
    with io.atomic_write(path, overwrite=overwrite) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    return Path(path)
