"""GUI steps one per event-loop turn (napari_sff.widgets._turns.Steps): queued generators run after the one
running, in order, and never two parts in the same call; cancel closes the running one and drops the queue."""

from __future__ import annotations

from napari_sff.widgets._turns import Steps


def recording(log: list[str], name: str, parts: int):
    try:
        for i in range(parts):
            log.append(f"{name}{i}")
            yield
    finally:
        log.append(f"{name} closed")


def test_queued_steps_run_after_the_running_ones_in_order(qtbot):
    log: list[str] = []
    steps = Steps()
    steps.queue(recording(log, "a", 2))  # nothing running: starts now
    assert log == ["a0"] and steps.busy
    steps.queue(recording(log, "b", 2))
    steps.queue(recording(log, "c", 1))
    assert log == ["a0"]  # queued ones wait their turn
    qtbot.waitUntil(lambda: not steps.busy)
    assert log == ["a0", "a1", "a closed", "b0", "b1", "b closed", "c0", "c closed"]


def test_each_part_gets_its_own_turn(qtbot):
    from qtpy.QtCore import QTimer

    log: list[str] = []
    steps = Steps()
    ticks = QTimer()  # a tick between parts shows the event loop ran in between
    ticks.setInterval(0)
    ticks.timeout.connect(lambda: log.append("turn") if log and log[-1] != "turn" else None)
    ticks.start()
    steps.queue(recording(log, "a", 1))
    steps.queue(recording(log, "b", 1))
    qtbot.waitUntil(lambda: not steps.busy)
    ticks.stop()
    parts = [entry for entry in log if entry in ("a0", "b0")]
    assert parts == ["a0", "b0"] and "turn" in log[log.index("a0"):log.index("b0")]


def test_cancel_closes_the_running_steps_and_drops_the_queue(qtbot):
    log: list[str] = []
    steps = Steps()
    steps.queue(recording(log, "a", 3))
    steps.queue(recording(log, "b", 1))
    steps.cancel()
    assert log == ["a0", "a closed"] and not steps.busy  # b never began: nothing of it ran
    qtbot.wait(20)
    assert log == ["a0", "a closed"]
    steps.start(recording(log, "c", 1))  # start closes what runs and what is queued, then runs its own
    steps.queue(recording(log, "d", 1))
    steps.start(recording(log, "e", 1))
    qtbot.waitUntil(lambda: not steps.busy)
    assert log[2:] == ["c0", "c closed", "e0", "e closed"]
