"""The first Run's heavy imports, done in the background as soon as the widget is docked.

Kept apart from the widget because it is process-wide state (one preload per process, an Event the tests wait on),
not part of any one widget.
"""

from __future__ import annotations

import gc
import importlib
import threading

#: What the first Run would otherwise import in its worker (MONAI, scikit-image, the domain check: about 3 s
#: here): imported in the background as soon as the widget is docked. Imports hold the GIL only in short
#: stretches, but their full garbage collections over every object of the process stop the GUI thread too
#: (106-157 ms each, three while importing napari_sff.models, measured with gc.callbacks): better while the
#: user is still choosing settings than between pressing Run and seeing the map.
#: napari_sff.models leaves MONAI to its DDPM part (napari_sff.models.ddpm), which the Model choice may ask for.
PRELOAD_MODULES = ("napari_sff.models", "napari_sff.models.ddpm", "napari_sff.domain", "skimage.transform")
#: Set once :data:`PRELOAD_MODULES` are imported (or failed to: the run then imports and reports them itself).
PRELOADED = threading.Event()
_preload_started = threading.Lock()


def _preload() -> None:
    try:
        for name in PRELOAD_MODULES:
            importlib.import_module(name)
        # The imports leave ~150 k new long-lived objects: Python's next full collection (every object of the
        # process, 130 ms here when idle, 500+ ms when the cores are busy) would fall in the first Run; collect
        # now, while the user is still choosing settings.
        gc.collect()
    finally:
        PRELOADED.set()


def start_preload() -> None:
    """Import :data:`PRELOAD_MODULES` in a worker thread, once per process."""
    if not _preload_started.acquire(blocking=False):
        return
    from napari.qt.threading import create_worker

    create_worker(_preload, _start_thread=True, _ignore_errors=True)  # an import error surfaces in the run
