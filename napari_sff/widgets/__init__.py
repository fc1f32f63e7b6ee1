"""napari dock widgets: thin shells over :mod:`napari_sff.inference` and :mod:`napari_sff.stats`."""
