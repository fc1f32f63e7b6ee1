"""Adding a layer in parts (napari_sff.widgets._insertion): unselected, its layer controls built in a later turn
and always before napari's controls container needs them."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sff.widgets import _insertion
from napari_sff.widgets._insertion import DeferredControls


@pytest.fixture
def viewer_and_controls(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 8, 8), np.float32), name="t2w")
    return viewer, viewer.window._qt_viewer.controls  # napari's layer controls container


def add_deferred(viewer, deferred: DeferredControls, name: str):
    with deferred.inserting():
        return viewer.add_image(np.ones((4, 8, 8), np.float32), name=name, visible=False)


def test_controls_are_built_when_asked_not_when_added(viewer_and_controls):
    viewer, container = viewer_and_controls
    deferred = DeferredControls(viewer)
    before = viewer.layers.selection.active
    layer = add_deferred(viewer, deferred, "map")
    assert layer not in container.widgets and deferred.pending == [layer]
    assert viewer.layers.selection.active is before  # not selected either
    other = viewer.add_image(np.ones((4, 8, 8), np.float32), name="added as napari adds")
    assert other in container.widgets  # outside inserting(): napari's own way
    deferred.build(layer)
    assert layer in container.widgets and deferred.pending == []
    deferred.build(layer)  # again: nothing pending, nothing built twice
    assert sum(built is layer for built in container.widgets) == 1
    deferred.close()


def test_selecting_a_pending_layer_builds_its_controls_first(viewer_and_controls):
    """napari's container shows the selected layer's controls from its dict: without them it would fail."""
    viewer, container = viewer_and_controls
    deferred = DeferredControls(viewer)
    layer = add_deferred(viewer, deferred, "map")
    viewer.layers.selection.active = layer
    assert deferred.pending == []
    assert container.currentWidget() is container.widgets[layer]
    deferred.close()


def test_a_layer_napari_selects_as_it_adds_it_gets_its_controls_at_once(viewer_and_controls, monkeypatch):
    """A napari without the private flag of inserted_unselected selects each new layer inside the same add."""
    from contextlib import nullcontext

    viewer, container = viewer_and_controls
    monkeypatch.setattr(_insertion, "inserted_unselected", lambda viewer: nullcontext())
    deferred = DeferredControls(viewer)
    layer = add_deferred(viewer, deferred, "map")
    assert viewer.layers.selection.active is layer and deferred.pending == []
    assert container.currentWidget() is container.widgets[layer]
    deferred.close()


def test_removing_a_pending_layer_removes_its_controls(viewer_and_controls):
    viewer, container = viewer_and_controls
    deferred = DeferredControls(viewer)
    layer = add_deferred(viewer, deferred, "map")
    viewer.layers.remove(layer)
    assert deferred.pending == [] and layer not in container.widgets and "map" not in viewer.layers
    deferred.close()


def test_close_builds_what_is_pending_and_stops_watching(viewer_and_controls):
    viewer, container = viewer_and_controls
    deferred = DeferredControls(viewer)
    layer = add_deferred(viewer, deferred, "map")
    deferred.close()
    assert layer in container.widgets and deferred.pending == []
    for emitter in (viewer.layers.events.removing, viewer.layers.selection.events.changed):
        owners = [cb[0]() for cb in emitter.callbacks if isinstance(cb, tuple)]  # methods: (weakref, name)
        assert deferred not in owners


def test_the_switch_leaves_napari_alone(viewer_and_controls, monkeypatch):
    viewer, container = viewer_and_controls
    monkeypatch.setenv(_insertion.DEFER_CONTROLS_SWITCH, "0")
    deferred = DeferredControls(viewer)
    layer = add_deferred(viewer, deferred, "map")
    assert layer in container.widgets and deferred.pending == []
    deferred.close()
