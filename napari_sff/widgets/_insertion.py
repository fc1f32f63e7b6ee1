"""Adding a layer without napari's whole cost in one event-loop turn (issue #11: no GUI stall over 100 ms).

napari answers a new layer in the turn that adds it: on a 2-core AMD EPYC about 30 ms for its canvas visual,
20-35 ms for its layer controls (a panel of Qt widgets) and 20-30 ms for switching the controls to it as the
selected layer; with the canvas's redraw that was one stall of 95-140 ms. :func:`inserted_unselected` skips the
switch, and :class:`DeferredControls` builds the controls in a later turn of the caller's choosing.

Both lean on napari internals (a private flag of the layer list; the controls container's handler of
``layers.events.inserted``); with a napari that lacks them, layers are added as napari adds them.
``NAPARI_SFF_DEFER_CONTROLS=0`` turns the deferral off (the benchmark's control).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from napari_sff.imports import switched_off

#: Set to 0 to let napari build each new layer's controls in the turn that adds it.
DEFER_CONTROLS_SWITCH = "NAPARI_SFF_DEFER_CONTROLS"


def unproxied_layers(viewer: Any) -> Any:
    """The viewer's own layer list: the viewer napari hands a plugin is a public-only proxy, whose private
    attributes (a flag, an event's emitter kept for later) are refused or rebuilt at each lookup."""
    return getattr(viewer.layers, "__wrapped__", viewer.layers)


@contextmanager
def inserted_unselected(viewer: Any) -> Iterator[None]:
    """Layers inserted meanwhile are not made the selected one, as napari makes each new layer: switching the
    layer controls to it took 20-30 ms of the GUI thread on a 2-core AMD EPYC, in the same turn as napari's own
    ~60 ms of adding it. napari keeps the rule in a private flag of its layer list
    (``SelectableEventedList._activate_on_insert``); a napari without it selects as usual."""
    layers = unproxied_layers(viewer)
    if not isinstance(getattr(layers, "_activate_on_insert", None), bool):
        yield
        return
    before = layers._activate_on_insert
    layers._activate_on_insert = False
    try:
        yield
    finally:
        layers._activate_on_insert = before


def _controls_container(layers: Any) -> Any:
    """napari's layer controls container of this layer list (the Qt object whose ``_add`` answers
    ``layers.events.inserted``), or None: no Qt viewer, or a napari laid out otherwise."""
    try:
        from napari._qt.layer_controls.qt_layer_controls_container import QtLayerControlsContainer
    except ImportError:
        return None
    for callback in getattr(layers.events.inserted, "_callbacks", ()):
        if isinstance(callback, tuple) and callback[1] == "_add":
            owner = callback[0]()
            if isinstance(owner, QtLayerControlsContainer) and isinstance(getattr(owner, "widgets", None), dict):
                return owner
    return None


class DeferredControls:
    """Layers inserted inside :meth:`inserting` get their layer controls when :meth:`build` is called (a later
    turn), not as napari adds them. Nothing can see the difference meanwhile: the controls are built at once
    before the layer (or any layer) is selected or removed, which are what napari's controls container looks
    them up for; :meth:`close` builds what is left. One per widget and viewer."""

    def __init__(self, viewer: Any) -> None:
        self._viewer = viewer
        self._layers = unproxied_layers(viewer)
        self._container = None if switched_off(DEFER_CONTROLS_SWITCH) else _controls_container(self._layers)
        self._pending: list[Any] = []
        if self._container is not None:  # before napari's own handlers of the same events
            self._layers.selection.events.changed.connect(self._build_all, position="first")
            self._layers.events.removing.connect(self._build_all, position="first")

    @property
    def pending(self) -> list[Any]:
        """Layers inserted inside :meth:`inserting` whose controls are still to be built."""
        return list(self._pending)

    @contextmanager
    def inserting(self) -> Iterator[None]:
        """Layers inserted meanwhile are not selected (:func:`inserted_unselected`: selecting one would need
        its controls at once) and get no controls until :meth:`build`."""
        with inserted_unselected(self._viewer):
            if self._container is None:
                yield
                return
            emitter, handler = self._layers.events.inserted, self._container._add
            emitter.block(handler)
            emitter.connect(self._record)  # pending as soon as inserted: napari may select it in the same call
            try:
                yield
            finally:
                emitter.disconnect(self._record)
                emitter.unblock(handler)

    def _record(self, event: Any) -> None:
        self._pending.append(event.value)

    def build(self, layer: Any = None) -> None:
        """Build the controls of ``layer`` (by identity; a name or a proxy would not do), or of every layer
        pending when None. A layer not pending is left alone."""
        from napari.utils.events import Event

        for pending in list(self._pending):
            if layer is None or pending is layer or getattr(layer, "__wrapped__", None) is pending:
                self._pending.remove(pending)
                if self._container is not None and pending not in self._container.widgets:
                    self._container._add(Event("inserted", value=pending))

    def _build_all(self, _event: Any = None) -> None:
        if self._pending:
            self.build()

    def close(self) -> None:
        """Build what is pending and stop watching the viewer."""
        self._build_all()
        if self._container is not None:
            self._layers.selection.events.changed.disconnect(self._build_all)
            self._layers.events.removing.disconnect(self._build_all)
