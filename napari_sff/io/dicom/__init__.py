"""DICOM MR series <-> :class:`~napari_sff.io.volume.Volume`: :mod:`.series` (the series in a folder, DICOMDIR or
file, from headers), :mod:`.read` (one series -> a Volume), :mod:`.write` (derived SFF series that a PACS shows
over the source; with :mod:`.slices` and :mod:`.instances`)."""
