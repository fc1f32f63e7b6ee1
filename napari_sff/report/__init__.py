"""One-file reading report: the viewed slice with its colour bar, the compact ROI table and the agreement plots.

Plain functions of plain inputs (an RGB screenshot, :class:`stats.RoiRow` rows, a colormap, contrast limits, the
maps' ``metadata["napari_sff"]`` dicts), so the ROI widget only gathers them and scripts or tests can write the same
report. A ``.pdf`` path gives one PDF (page 1: header, slice, table; then the plots); a ``.png`` path gives one
PNG with everything plus a CSV of the full rows beside it. Files are written with :func:`napari_sff.io.atomic_write`.

Patient data: the report shows layer names (from SeriesDescription or file names), ROI names and, from each map's
napari-sff metadata, only ``model``, ``weights`` (file name) and ``device``. Nothing else of a layer's metadata is
read, so DICOM identifiers kept there (PatientName, PatientID, dates) never reach the file. The date on the report is
the day it was made, not the study date.

Parts: :mod:`.names` (the maps' short column names, :func:`short_map_names`), :mod:`.plots` (the agreement plots:
:func:`draw_agreement`, and :class:`AgreementPicture` + :func:`render_agreement`, which the ROI widget runs in a
worker), :mod:`.sheet` (page geometry in inches, the ``_Sheet`` layout helper), :mod:`.pages` (the sections drawn on
a sheet: header, slice and colour bar, table, plots, footer), :mod:`.document` (:class:`Report`,
:func:`write_report`, :class:`ReportError`: inputs checked, provenance lines, pages in order, the file written).
The ROI widget looks ``report.write_report`` and ``report.render_agreement`` up on this package when it calls them,
so a patch of the package's attribute reaches it.
"""

from napari_sff.report.document import Report, ReportError, write_report
from napari_sff.report.names import REFERENCE_SHORT, short_map_names
from napari_sff.report.pages import RESEARCH_USE
from napari_sff.report.plots import AgreementPicture, draw_agreement, render_agreement

__all__ = [
    "REFERENCE_SHORT",
    "RESEARCH_USE",
    "AgreementPicture",
    "Report",
    "ReportError",
    "draw_agreement",
    "render_agreement",
    "short_map_names",
    "write_report",
]
