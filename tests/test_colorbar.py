"""A colour bar shown a part per step (napari_sff.widgets._colorbar): turned on with nothing drawn, then its
gradient, outline, tick marks and tick labels; whole where its parts cannot be reached, when closed early and with
the switch off."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sff.widgets import _colorbar
from napari_sff.widgets._colorbar import reveal_colorbar


@pytest.fixture
def viewer_and_map(make_napari_viewer):
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.linspace(0, 1, 4 * 8 * 8, dtype=np.float32).reshape(4, 8, 8), name="map")
    return viewer, layer


def node_of(viewer, layer):
    """napari's vispy colour bar of ``layer`` (napari 0.9), read here apart from the code under test."""
    return viewer.window._qt_viewer.canvas._layer_overlay_to_visual[layer][layer.colorbar].node


def shown_parts(node) -> tuple[bool, bool, bool, bool]:
    return node.img.visible, node.box.visible, node.ticks.visible, node.ticks._text.visible


def test_nothing_drawn_as_it_is_turned_on_then_a_part_per_step(viewer_and_map):
    viewer, layer = viewer_and_map
    steps = reveal_colorbar(viewer, layer)
    next(steps)
    node = node_of(viewer, layer)
    assert layer.colorbar.visible and node.visible
    seen = [shown_parts(node)]
    for _ in _colorbar.PART_STEPS[:-1]:
        next(steps)
        seen.append(shown_parts(node))
    with pytest.raises(StopIteration):  # the last part shown, nothing left
        next(steps)
    seen.append(shown_parts(node))
    assert seen == [(False, False, False, False), (True, False, False, False), (True, True, False, False),
                    (True, True, True, False), (True, True, True, True)]
    assert len(seen) == 1 + len(_colorbar.PART_STEPS)


def test_closed_early_every_part_is_shown(viewer_and_map):
    viewer, layer = viewer_and_map
    steps = reveal_colorbar(viewer, layer)
    next(steps)
    node = node_of(viewer, layer)
    assert shown_parts(node) == (False,) * 4
    steps.close()  # the widget closed, or the grid's steps were cancelled
    assert shown_parts(node) == (True,) * 4 and layer.colorbar.visible


def test_switched_off_the_colour_bar_is_turned_on_whole(viewer_and_map, monkeypatch):
    viewer, layer = viewer_and_map
    monkeypatch.setenv(_colorbar.IN_PARTS_SWITCH, "0")
    assert list(reveal_colorbar(viewer, layer)) == []  # no step of its own
    assert layer.colorbar.visible and shown_parts(node_of(viewer, layer)) == (True,) * 4


def test_without_napari_s_canvas_the_colour_bar_is_turned_on_whole():
    from napari.components import ViewerModel

    viewer = ViewerModel()  # no Qt window: no vispy visuals to reach
    layer = viewer.add_image(np.zeros((8, 8), np.float32))
    assert _colorbar.colorbar_parts(viewer, layer) is None
    assert list(reveal_colorbar(viewer, layer)) == [] and layer.colorbar.visible


def test_a_layer_shown_before_its_colour_bars_parts(viewer_and_map):
    viewer, layer = viewer_and_map
    layer.colorbar.visible = True
    node = node_of(viewer, layer)
    layer.visible = False
    seen = []
    steps = _colorbar.shown_before_its_colorbar(viewer, layer, lambda: setattr(layer, "visible", True))
    for _ in steps:
        seen.append((layer.visible, *shown_parts(node)))
    assert seen == [(True, False, False, False, False), (True, True, False, False, False),
                    (True, True, True, False, False), (True, True, True, True, False),
                    (True, True, True, True, True)]  # the last part drawn in a turn of its own too


def test_a_layer_without_its_colour_bar_on_is_only_shown(viewer_and_map):
    viewer, layer = viewer_and_map
    layer.visible = False
    shown = []
    steps = list(_colorbar.shown_before_its_colorbar(viewer, layer, lambda: shown.append(True)))
    assert shown == [True] and len(steps) == 1 and not layer.colorbar.visible
