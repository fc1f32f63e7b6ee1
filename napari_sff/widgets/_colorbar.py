"""A colour bar shown a part per event-loop turn (issue #11: no GUI stall over 100 ms).

napari draws a layer's colour bar as one vispy node of four parts: the gradient (an image), its outline (a line),
the tick marks and the tick labels (an axis: lines and a text). The first draw of each part compiles its shader
programs, and the draw after the colour bar is turned on draws them all: 64-155 ms of the GUI thread on a 2-core
AMD EPYC, the longest stall left in the Predict widget's first Run. Drawn one part per turn, the parts took 21-34,
13-20, 13-15 and 31-44 ms (an ad-hoc probe, two fresh processes per way; ``benchmarks/bench_gui.py`` measures it
in the widget's first Run against the control ``NAPARI_SFF_COLORBAR_IN_PARTS=0``). Nothing is drawn in the turn
that turns the colour bar on, which is where napari builds it (60-90 ms) if it has not yet.

The parts are napari's private vispy visuals (``VispyCanvas._layer_overlay_to_visual``, napari 0.9's
``ColorBar`` node); where napari lays them out otherwise the colour bar is turned on whole, as napari does.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

from napari_sff.imports import switched_off

#: Set to 0 to turn colour bars on whole (the benchmark's control).
IN_PARTS_SWITCH = "NAPARI_SFF_COLORBAR_IN_PARTS"
#: The steps after the one that turns a colour bar on with nothing drawn: the part each draws.
PART_STEPS = ("colorbar gradient", "colorbar outline", "colorbar ticks", "colorbar labels")


def colorbar_parts(viewer: Any, layer: Any) -> list[Any] | None:
    """The vispy visuals of ``layer``'s colour bar in the order :func:`reveal_colorbar` shows them (gradient,
    outline, the axis with its tick marks, the tick labels), or None: no colour bar visual made yet, no Qt
    canvas, or a napari laid out otherwise."""
    try:
        from napari._vispy.visuals.colorbar import ColorBar
        from vispy.visuals import AxisVisual, ImageVisual, LineVisual, TextVisual
    except ImportError:
        return None
    viewer = getattr(viewer, "__wrapped__", viewer)  # a plugin's viewer is a public-only proxy
    layer = getattr(layer, "__wrapped__", layer)
    try:
        with warnings.catch_warnings():  # napari warns plugins off its private Qt viewer (gone from 0.10 on)
            warnings.simplefilter("ignore", FutureWarning)
            overlays = viewer.window._qt_viewer.canvas._layer_overlay_to_visual[layer]
        node = overlays[layer.colorbar].node
    except (AttributeError, KeyError, TypeError):
        return None
    if not isinstance(node, ColorBar):
        return None
    ticks = getattr(node, "ticks", None)
    parts = [getattr(node, "img", None), getattr(node, "box", None), ticks, getattr(ticks, "_text", None)]
    kinds = (ImageVisual, LineVisual, AxisVisual, TextVisual)
    if not all(isinstance(part, kind) for part, kind in zip(parts, kinds, strict=True)):
        return None
    return parts


def reveal_colorbar(viewer: Any, layer: Any) -> Iterator[None]:
    """Turn ``layer``'s colour bar on with none of its parts shown (napari builds its visuals now if it has not:
    60-90 ms), then ``yield`` and show the next part, one after each of :data:`PART_STEPS` (four yields; none
    where the parts cannot be reached or the switch is off). Closed early, it shows every part at once."""
    layer.colorbar.visible = True  # napari makes the colour bar's visual now if need be; drawn in the next turn
    parts = None if switched_off(IN_PARTS_SWITCH) else colorbar_parts(viewer, layer)
    if parts is None:
        return
    hidden = [part for part in parts if part.visible]
    for part in hidden:
        part.visible = False
    try:
        for part in hidden:
            yield
            part.visible = True
    finally:
        for part in hidden:
            part.visible = True


def shown_before_its_colorbar(viewer: Any, layer: Any, show: Callable[[], None]) -> Iterator[None]:
    """Call ``show`` (which shows ``layer``) with the parts of ``layer``'s colour bar, if it is on, hidden: the
    layer is drawn alone, then its colour bar a part per step; ``yield`` after each. For a map drawn anew with its
    colour bar, as when napari moves both into a grid cell or back out (78-127 ms in one draw)."""
    parts = reveal_colorbar(viewer, layer) if hasattr(layer, "colorbar") and layer.colorbar.visible else None
    if parts is not None:
        next(parts, None)  # on already: only its parts are hidden
    show()
    yield
    if parts is not None:
        yield from parts
        yield
