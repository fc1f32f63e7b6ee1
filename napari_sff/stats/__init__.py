"""Region-of-interest (ROI) fat-fraction statistics as plain functions.

Parts: :mod:`.rows` (the row and its columns), :mod:`.engine` (:func:`roi_table`), :mod:`.table` (formatting, the
compact table, CSV), :mod:`.agreement` (Bland-Altman, ICC), :mod:`.shapes` (drawn shapes -> labels), :mod:`.rim`
(each ROI's border, which ``roi_table(exclude_rim=N)`` counts out).

Clinicians report the mean signal fat fraction (SFF) of a muscle, so the core of this module is
:func:`roi_table`: value maps (one per *source*, e.g. a predicted SFF map and a Dixon reference)
plus an integer label image and the voxel spacing go in, one :class:`RoiRow` per (label, source)
comes out.  Everything is a function of arrays: no Qt, napari or torch, so it can be tested and
used from scripts.

Conventions
-----------
* Fat fractions are fractions in [0, 1] inside this module; only the CSV/table formatters turn
  them into percent (differences into percentage points, "pp").
* Every non-zero label present anywhere in ``labels`` is an ROI, listed in ascending order.  With
  ``slice_index`` a label that is absent from the chosen slice still gets a row (0 voxels, NaN
  statistics) so that a table does not change shape when the user scrolls through slices.
* Non-finite values (NaN, +-inf) are *counted out*: they are excluded from that source's
  statistics, ``n_voxels`` and ``volume_ml`` count only the voxels that were used, and
  ``n_excluded`` says how many voxels of the ROI were dropped.  ``exclude_rim=N`` counts out each ROI's
  border (voxels within N in-plane steps of another label or the background) the same way.
* SD is the sample standard deviation (``ddof=1``, as ITK / 3D Slicer label statistics); it is
  NaN for an ROI with a single voxel.
* Percentiles (median, IQR = P75 - P25, P5, P95) use linear interpolation and match
  ``np.percentile``'s default method to floating-point precision.
* ``diff_mean`` is ``mean - mean of the reference`` for the same ROI (each over its own finite
  voxels, so it equals the difference of the displayed means); ``mae`` is the mean of
  ``|value - reference|`` over the voxels where both are finite.

Speed
-----
No Python loop runs over voxels (loops run over blocks of 2**20 voxels and over ROIs).  Each
source's ROI voxels are first grouped ROI by ROI - per block, by sorting the runs of equal
labels along the scan order (a radix argsort of the voxels for fragmented label images) - so
that every ROI is one contiguous segment.  Weighted ``np.bincount`` over the label image was
measured ~30x slower than contiguous reductions on compact ROIs, because consecutive voxels hit
the same bin.  Per ROI the mean is a float64 pairwise sum, the SD is two-pass, and percentiles
come from a 4096-bucket histogram (``np.bincount``) that locates the few buckets holding the
needed ranks, so only those values get partitioned: exactly the values of sorting by
(label, value), measured ~5x faster than ``np.partition`` and ~10x faster than ``np.sort``.
Full-volume temporaries are per block, so extra memory is about the ROI voxels of each source.
"""

from napari_sff.stats.agreement import bland_altman, icc_absolute_agreement
from napari_sff.stats.engine import roi_table
from napari_sff.stats.rim import roi_rim
from napari_sff.stats.rows import ID_COLUMNS, STAT_COLUMNS, RoiRow
from napari_sff.stats.shapes import rasterize_shapes
from napari_sff.stats.table import CompactTable, compact_table, format_rows, rows_to_csv, table_header

__all__ = [
    "ID_COLUMNS",
    "STAT_COLUMNS",
    "CompactTable",
    "RoiRow",
    "bland_altman",
    "compact_table",
    "format_rows",
    "icc_absolute_agreement",
    "rasterize_shapes",
    "roi_rim",
    "roi_table",
    "rows_to_csv",
    "table_header",
]
