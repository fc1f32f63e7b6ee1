"""The first Run's one-off costs, paid as soon as the widget is docked while the user is still choosing settings:
the heavy imports in a background thread (started just after docking), and the glyphs of napari's first colour
bar and of the comparison grid's titles on the GUI thread, one per event-loop turn.

Kept apart from the widget because it is process-wide state (one preload per process, an Event the tests wait on),
not part of any one widget.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from napari_sff.imports import freeze_heap, import_quietly, open_torch_library, unfreeze_heap
from napari_sff.widgets._background import run_once_in_background, when_set
from napari_sff.widgets._insertion import unproxied_layers
from napari_sff.widgets._turns import Steps

#: What the first Run would otherwise import (torch, MONAI, scikit-image, the domain check): imported in the
#: background as soon as the widget is docked, torch included (imported on the GUI thread it froze docking for
#: 2.7 of its 3.5 s), without the garbage collections those imports trigger (:func:`import_quietly`), after
#: torch's largest native library is loaded without the GIL (:func:`open_torch_library`: its loading by the
#: import held the GIL 190-260 ms, the longest stall of docking).
PRELOAD_MODULES = ("torch", "napari_sff.models", "napari_sff.domain", "skimage.transform")
#: Set once :data:`PRELOAD_MODULES` are imported (or failed to: the run then imports and reports them itself).
PRELOADED = threading.Event()
#: The DDPM's part of the models, MONAI with it: preloaded only once the Model choice asks for the DDPM. It adds
#: 220,000 objects to the heap of a docked viewer (439,000 -> 659,000), which every full garbage collection
#: examines once the freeze has ended (napari runs one at each layer removal): 0.31-0.36 s a collection instead of
#: 0.21-0.26 s on a 2-core AMD EPYC (``bench_gui.py``, docs/bench_gui_cpu.json), for a model U-Net users never chose.
DDPM_MODULES = ("napari_sff.models.ddpm",)
#: Set once :data:`DDPM_MODULES` are imported (or failed to).
DDPM_PRELOADED = threading.Event()
#: The devices torch can use (:func:`napari_sff.inference.available_devices`), asked in the preload thread: the
#: first CUDA query initialises the driver, which would stall the GUI thread. Empty until then, or if it failed.
DEVICES: list[str] = []
#: What napari's colour bars draw: the tick labels of every map the widget shows (0-100 %, 0-20 pp, ±20 pp, the
#: SD's 0-5+, fractions) and the letters vispy measures each text's line height with (vispy.visuals.text).
COLORBAR_GLYPHS = " -.0123456789ÅÉÑŐgjpqy"


def _preload() -> None:
    open_torch_library()
    import_quietly(PRELOAD_MODULES)
    from napari_sff.inference import available_devices

    DEVICES[:] = available_devices()


def start_preload() -> None:
    """Import :data:`PRELOAD_MODULES` in a worker thread shortly after docking, once per process (an import error
    surfaces in the run)."""
    run_once_in_background(PRELOADED, _preload)


def start_ddpm_preload() -> None:
    """Import :data:`DDPM_MODULES` in a worker thread now, once per process; call it after :data:`PRELOADED` (the
    two imports would contend, and torch's library must be loaded first, see :func:`_preload`)."""
    run_once_in_background(DDPM_PRELOADED, lambda: import_quietly(DDPM_MODULES), delay_ms=0)


def when_preloaded(callback: Callable[[], None]) -> None:
    """Call ``callback`` on the GUI thread once :data:`PRELOADED` is set (now, if it is): for what needs torch,
    such as the list of devices."""
    when_set(PRELOADED, callback)


def canvas_font(viewer: Any) -> Any:
    """The font atlas napari's canvas texts (colour bars, layer titles) draw their glyphs from, or None where
    this napari keeps its font elsewhere (it is private; napari 0.9)."""
    try:
        with warnings.catch_warnings():  # napari warns plugins off its private Qt viewer (gone from 0.10 on)
            warnings.simplefilter("ignore", FutureWarning)
            info = viewer.window._qt_viewer.canvas.font_info()
            font = info.font_manager.get_font(info.face)
    except Exception:  # another napari: nothing to warm, nothing broken
        return None
    return getattr(font, "__wrapped__", font)  # a plugin gets a public-only proxy (its glyph cache is private)


def glyph_steps(font: Any, text: str) -> Iterator[None]:
    """Render the glyphs of ``text`` that ``font`` lacks, ``yield`` after each (about 12 ms each on a 2-core AMD
    EPYC): napari renders each glyph the first time a text needs it, in that text's first draw."""
    for char in dict.fromkeys(text):
        if char in getattr(font, "_glyphs", {}):  # vispy's cache of rendered glyphs
            continue
        try:
            font[char]  # renders and keeps the glyph
        except Exception:  # the canvas went away with its viewer
            return
        yield


def warm_canvas_text(viewer: Any, text: str, steps: Steps) -> bool:
    """Render the glyphs of ``text`` into the canvas's font atlas, one per step of ``steps``, while the user
    chooses settings: the glyphs of the first colour bar made its first draw 180-200 ms longer (309 ms in all,
    the longest stall of the first Run), and a grid cell's title drew in 154 ms with its glyphs (once measured).
    False where this napari keeps its font elsewhere: there each text pays for its glyphs itself."""
    font = canvas_font(viewer)
    if font is None:
        return False
    steps.start(glyph_steps(font, text))
    return True


def freeze_heap_until_a_removal(viewer: Any) -> Callable[[], None] | None:
    """After the preload: :func:`~napari_sff.imports.freeze_heap`, undone as soon as one of the viewer's layers
    of now is about to be removed, so that napari's collection at its removal frees it (its data and its GL
    resources, which napari collects then on purpose). Layers added later, the widget's maps and the comparison
    grid's T2w copies included, are young objects that every collection sees. Returns the function that undoes
    the freeze (the widget calls it when closed), or None when nothing was frozen."""
    if not freeze_heap():
        return None
    layers = unproxied_layers(viewer)
    kept = weakref.WeakSet(layers)
    removing = layers.events.removing

    def on_removing(event: Any) -> None:
        if layers[event.index] in kept:
            release()

    def release() -> None:
        try:
            removing.disconnect(on_removing)
        except (TypeError, ValueError, RuntimeError):  # disconnected already
            pass
        unfreeze_heap()

    removing.connect(on_removing)
    return release
