"""A docked widget's heavy imports, done in a background thread without stopping the viewer, and a way back to
the GUI thread once they are in. Used by the Predict widget (torch, the models) and the ROI widget (matplotlib).
Also the widgets' file saving (a report, a DICOM series), written in a worker with a notification when done.

What runs in the thread and how it avoids holding the GIL is :mod:`napari_sff.imports` (no Qt there).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

#: How long after it is asked for (when a widget is docked) background work starts: napari first shows the dock,
#: a stall of its own, and the imports' own short stalls (native libraries other than torch's, see
#: napari_sff.imports) would add to it (measured when torch's library still held the GIL ~0.5 s: Predict widget's
#: longest stall 0.87-0.92 s at once, 0.48-0.52 s delayed; ROI widget 0.40-0.54 / 0.16-0.23 s).
AFTER_DOCKING_MS = 300
_started: set[int] = set()  # id() of the events whose work has been started (once per process)
_lock = threading.Lock()


def run_once_in_background(done: threading.Event, work: Callable[[], None], delay_ms: int = AFTER_DOCKING_MS) -> None:
    """Run ``work`` in a napari thread worker ``delay_ms`` from now, once per process for each ``done``, which is
    set when it ends (failed too: whoever needs the modules imports them and reports the error)."""
    with _lock:
        if id(done) in _started:
            return
        _started.add(id(done))
    from napari.qt.threading import create_worker
    from qtpy.QtCore import QTimer

    def run() -> None:
        try:
            work()
        finally:
            done.set()

    QTimer.singleShot(delay_ms, lambda: create_worker(run, _start_thread=True, _ignore_errors=True))


def when_set(done: threading.Event, callback: Callable[[], None], poll_ms: int = 50) -> None:
    """Call ``callback`` on the GUI thread once ``done`` is set (now, if it is). Polls rather than connecting to
    the worker, whose signals napari deletes when it is done."""
    if done.is_set():
        callback()
        return
    from qtpy.QtCore import QTimer

    QTimer.singleShot(poll_ms, lambda: when_set(done, callback, poll_ms))


def save_in_background(write: Callable[..., Any], *args: Any, saved: Callable[[Any], str],
                       failed: Callable[[BaseException], str], **kwargs: Any) -> Any:
    """``write(*args, **kwargs)`` in a napari thread worker (writing a file takes seconds), then one notification
    on the GUI thread: ``saved(result)``, or ``failed(error)``; returns the started worker."""
    from napari.qt.threading import create_worker
    from napari.utils.notifications import show_error, show_info

    worker = create_worker(write, *args, **kwargs, _ignore_errors=True, _start_thread=False)
    worker.returned.connect(lambda result: show_info(saved(result)))
    worker.errored.connect(lambda error: show_error(failed(error)))
    worker.start()
    return worker
