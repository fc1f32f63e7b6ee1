"""GUI-thread work done one step per event-loop turn, so that the viewer never freezes for all the steps at once.

napari's operations on layers take tens of milliseconds each on a small CPU (adding an image layer 50-100 ms,
a colour bar's first draw 60-100 ms, each change of what is shown in a grid 10-20 ms): a handler that does several
freezes the viewer for their sum (the comparison grid froze it 2.5 s on a 100 x 512 x 512 volume). The widgets
write such work as a generator that yields between napari operations; :class:`Steps` runs it, one step each two
event-loop turns, so the timers, the input and the canvas's draw of each step's change come in between.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator


def after_turns(callback: Callable[[], None], turns: int = 2) -> None:
    """Call ``callback`` on the GUI thread ``turns`` event-loop turns from now. Two, not one: Qt handles events
    posted while it handles posted events in the same pass, so after one the callback would follow without the
    timers, input and the canvas's draw getting their turn in between."""
    from qtpy.QtCore import QTimer

    if turns <= 1:
        QTimer.singleShot(0, callback)
    else:
        QTimer.singleShot(0, lambda: after_turns(callback, turns - 1))


class Steps:
    """Runs one generator of GUI steps at a time: the code up to its first ``yield`` now, each next part two
    event-loop turns after the previous one. Starting another (or :meth:`cancel`) closes the one running and
    drops the queued ones; :meth:`queue` runs one after those before it."""

    def __init__(self) -> None:
        self._running: Iterator[None] | None = None
        self._queued: list[Iterator[None]] = []
        self._generation = 0

    @property
    def busy(self) -> bool:
        """Steps are still to come (tests and scripts wait for this to be False)."""
        return self._running is not None

    def start(self, steps: Iterator[None]) -> None:
        self.cancel()
        self._running = steps
        self._advance(self._generation)

    def queue(self, steps: Iterator[None]) -> None:
        """Run ``steps`` after the running and queued ones (now, if none): one thing per turn, in order."""
        if self._running is None:
            self.start(steps)
        else:
            self._queued.append(steps)

    def cancel(self) -> None:
        """Close the running generator (its ``finally`` blocks run now) and the queued ones; none of their
        remaining steps run."""
        self._generation += 1
        running, self._running = self._running, None
        queued, self._queued = self._queued, []
        for steps in [running, *queued] if running is not None else queued:
            close = getattr(steps, "close", None)
            if close is not None:
                close()

    def _advance(self, generation: int) -> None:
        if generation != self._generation or self._running is None:
            return  # cancelled, or another one started meanwhile
        try:
            next(self._running)
        except StopIteration:
            self._running = self._queued.pop(0) if self._queued else None
            if self._running is None:
                return
        except BaseException:
            self._running = None
            raise
        after_turns(lambda: self._advance(generation))
