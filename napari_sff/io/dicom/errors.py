"""The error of the DICOM writer: a map that cannot be written; its message says what to do."""

from __future__ import annotations


class DicomWriteError(ValueError):
    """A map that cannot be written as DICOM (no source study, bad folder, bad values); says what to do."""
