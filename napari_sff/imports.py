"""Importing heavy packages (torch, matplotlib) in a background thread without stopping the GUI thread.

Python code in a thread gives up the GIL every few milliseconds, but two parts of an import do not: Python's
garbage collections over the new objects (a full one took 160-290 ms, several per import of torch, measured with
gc.callbacks) and loading an extension module's native libraries, whose ``dlopen`` (with every C++ static
initialiser of the library) runs with the GIL held. :func:`import_quietly` imports without the collections;
:func:`open_native_library` loads a library through a ctypes foreign call, which releases the GIL, so that the
import that follows finds it already loaded. :func:`freeze_heap` keeps the imported modules' objects out of every
later full collection. Used by the widgets' preloads; nothing here imports Qt.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

#: The native library of torch whose loading held the GIL longest: libtorch_cpu (its operator registrations run
#: as static initialisers): 190-260 ms of the GUI thread's time when imported in a thread, on a 2-core AMD EPYC
#: (``benchmarks/bench_gui.py``, *dock*). Every build of torch has it; its own dependencies (c10, OpenMP) come
#: along. Libraries that call into Python while loading (libtorch_python) are left to the import.
TORCH_NATIVE_LIBRARY = "torch_cpu"
_SUFFIX = {"linux": ".so", "darwin": ".dylib"}


def import_quietly(modules: Sequence[str]) -> None:
    """Import ``modules`` with no automatic garbage collection during the imports and none after: freeze +
    unfreeze moves every object into the oldest generation without looking at any (O(1)), so the modules'
    objects are neither scanned by the next young collection nor bring the next full one forward."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        for name in modules:
            importlib.import_module(name)
    finally:
        if not gc.get_freeze_count():  # a freeze in force (freeze_heap's, anyone's) is not undone here
            gc.freeze()
            gc.unfreeze()
        if collecting:
            gc.enable()


#: Set to 0 to leave Python's garbage collector alone (no :func:`freeze_heap` after the Predict widget's preload).
GC_FREEZE_SWITCH = "NAPARI_SFF_GC_FREEZE"
_frozen_here = False


def switched_off(variable: str) -> bool:
    """The environment variable turns one of napari-sff's runtime adjustments off (0, false, no, off): the
    collector's freeze here, vispy's comment strip (napari_sff.widgets._shader_parsing)."""
    return os.environ.get(variable, "1").strip().lower() in ("0", "false", "no", "off")


def freeze_heap() -> bool:
    """Move every object alive now into the collector's permanent generation (``gc.freeze``): never examined
    again, so a full collection only looks at what comes after.

    Why: with torch, MONAI and scikit-image imported a full collection examines ~500,000 objects, 280-430 ms
    on a 2-core AMD EPYC (napari alone: 95 ms), and napari runs one at every layer removal, Python one whenever
    objects pile up (adding a few image layers was enough): each a freeze of the viewer. The price: a frozen
    object that becomes cyclic garbage is never freed, so whoever calls this must :func:`unfreeze_heap` before
    anything alive now is thrown away (the Predict widget watches the viewer's layers). False, and nothing
    done, where objects are frozen already (someone else's freeze is theirs to undo) or with
    ``NAPARI_SFF_GC_FREEZE=0``."""
    global _frozen_here
    if _frozen_here:
        return True
    if switched_off(GC_FREEZE_SWITCH) or gc.get_freeze_count():
        return False
    gc.freeze()
    _frozen_here = True
    return True


#: Collections of the middle generation that building a colour bar in napari made (1-2 of them, with ~15 young
#: ones, in an ad-hoc count on napari 0.9): any more and :func:`collect_if_due` collects ahead.
BUILD_MIDDLE_COLLECTIONS = 3


def full_collection_due(middle_collections: int = BUILD_MIDDLE_COLLECTIONS) -> bool:
    """Whether Python's collector may run a full collection within the next ``middle_collections`` collections
    of its middle generation: it runs one once their count since the last exceeds the oldest generation's
    threshold (CPython's generational collector; its second condition, on how many objects survived since the
    last full one, aside)."""
    threshold = gc.get_threshold()[2]
    return gc.isenabled() and threshold > 0 and gc.get_count()[2] + middle_collections > threshold


def collect_if_due(middle_collections: int = BUILD_MIDDLE_COLLECTIONS) -> bool:
    """A full collection now if :func:`full_collection_due`: called in an event-loop turn of its own before an
    allocation-heavy napari step, so that Python's own full collection (30-80 ms over the objects made since the
    freeze) does not land inside that step. napari building a colour bar (60-90 ms) ran one inside it in 1 of 6
    builds of an ad-hoc count (108 ms then) and in 3 of 3 first showings of the |error| map in
    ``benchmarks/bench_gui.py`` (122-135 ms). True when it collected."""
    if not full_collection_due(middle_collections):
        return False
    gc.collect()
    return True


def heap_frozen_here() -> bool:
    """Whether :func:`freeze_heap`'s freeze is in force (not someone else's)."""
    return _frozen_here


def unfreeze_heap() -> bool:
    """Undo :func:`freeze_heap` (``gc.unfreeze``: the objects go back to the oldest generation and are collected
    as before); False where it had frozen nothing."""
    global _frozen_here
    if not _frozen_here:
        return False
    _frozen_here = False
    gc.unfreeze()
    return True


def native_library_path(package: str, name: str) -> Path | None:
    """``package``'s bundled library ``lib<name>`` (in its ``lib`` folder, as torch's wheels have it) on Linux and
    macOS, found without importing ``package``; None where it is not there or on other systems."""
    suffix = _SUFFIX.get(sys.platform)
    spec = importlib.util.find_spec(package) if suffix else None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "lib" / f"lib{name}{suffix}"
    return path if path.is_file() else None


def open_native_library(path: str | os.PathLike) -> bool:
    """``dlopen`` the library at ``path`` (with its dependencies, RTLD_NOW and local symbols: as the extension
    module's own import would load it) through libc called by ctypes, which releases the GIL for the call.
    The handle is kept open for the life of the process. False where it could not be loaded: the import that
    follows then loads it itself and reports any error."""
    try:
        libc = ctypes.CDLL(None)
        dlopen = libc.dlopen
    except (OSError, AttributeError):  # no dlopen to call (not a POSIX system)
        return False
    dlopen.restype, dlopen.argtypes = ctypes.c_void_p, (ctypes.c_char_p, ctypes.c_int)
    return bool(dlopen(os.fsencode(path), os.RTLD_NOW | os.RTLD_LOCAL))


def open_torch_library() -> bool:
    """Load :data:`TORCH_NATIVE_LIBRARY` without holding the GIL, before ``import torch`` (which then finds it
    loaded); False where torch or the library is not found, or torch is imported already."""
    if "torch" in sys.modules:
        return False
    path = native_library_path("torch", TORCH_NATIVE_LIBRARY)
    return path is not None and open_native_library(path)
