"""DICOM MR series <-> :class:`~napari_sff.io.volume.Volume`: :mod:`.read` (series in a folder, DICOMDIR or file),
:mod:`.write` (derived SFF series that a PACS shows over the source; with :mod:`.slices` and :mod:`.instances`)."""
