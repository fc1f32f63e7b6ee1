"""napari-sff: signal fat fraction (SFF) maps from T2-weighted MRI, in napari.

Heavy imports (torch, Qt, napari) happen inside the functions that need them, so that the plugin's
menus and the command line start fast.
"""

__version__ = "0.1.0"
