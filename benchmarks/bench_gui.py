"""How long the GUI thread stalls when the Predict widget is docked and on its first Run; writes JSON.

    xvfb-run -a python benchmarks/bench_gui.py [--repeats 3] [--out docs/bench_gui_cpu.json]

Each measurement runs in a fresh process (the first Run and the first docking are what a user meets), from a
10 ms QTimer's ticks: the gaps between ticks are the stalls. ``dock``: docking in a process without torch, until
the background imports are done (which thread imported torch, the device list before and after, the colour bar
glyphs warmed); ``dock-import-only``, the control: the same with torch's native library loaded by the import, GIL
held (napari_sff.imports). ``dock-roi``: docking the ROI widget until its plots are made (which thread imported
matplotlib). ``first-run``: the widget's first Run with the shipped U-Net on a 100 x 512 x 512 T2w (issue
#11's volume; the current slice, whole-volume output layers) and on 100 x 8 x 8, and the GUI-thread steps that
overlap the longest stall; ``first_run_big_vispy_as_is``, the control: the same with ``NAPARI_SFF_VISPY_SHIM=0``
(vispy's own quadratic comment strip when a colour bar is first drawn; napari_sff.widgets._shader_parsing),
``first_run_big_selecting`` with ``--select-on-insert`` (napari selecting each layer the run adds, and building
its controls at once), ``first_run_big_controls_at_once`` with ``NAPARI_SFF_DEFER_CONTROLS=0`` (each new
layer's controls built in the turn that adds it; napari_sff.widgets._insertion; with the grid too) and
``first_run_big_colorbar_at_once`` with ``NAPARI_SFF_COLORBAR_IN_PARTS=0`` (each colour bar drawn whole in
one turn; napari_sff.widgets._colorbar; with the grid). The first colour bar's draws (whole, or a draw per part)
and each layer's adding are timed on their own too: less noisy than the stalls. After the big
volume's first Run the comparison grid is turned on, off and on again (``--grid``; its control
``first_run_big_heap_as_is``: ``NAPARI_SFF_GC_FREEZE=0``, no garbage-collector freeze after the preload), or
the user shows the |error| map (``--show-error``, ``first_run_big_show_error``, beside its control with the
colour bar drawn whole).
``tests/test_predict_widget.py`` runs the same measurements (``--measure``) and asserts on them; the numbers in
the README come from this file's JSON. Compare within one run: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from napari_sff import io
from napari_sff.widgets._colorbar import PART_STEPS

#: The volume of issue #11's target: 100 slices of 512 x 512 (26 M voxels, 105 MB as float32).
BIG_SHAPE = (100, 512, 512)
TINY_SHAPE = (BIG_SHAPE[0], 8, 8)


def ticking_viewer(tick_s: float) -> tuple[Any, Any, list[float], Callable[[float], None]]:
    """A shown napari viewer, a QTimer appending its tick times to ``ticks`` every ``tick_s`` (keep the timer),
    and ``pump(seconds)``, which runs the event loop: the GUI thread's stalls are the gaps between ticks."""
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer()
    app = QApplication.instance()
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(round(1000 * tick_s))
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()

    def pump(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.001)

    return viewer, timer, ticks, pump


def measure_first_run(weights: dict, shape: tuple[int, ...] = BIG_SHAPE, tick_s: float = 0.010,
                      grid: bool = False, show_error: bool = False) -> dict:
    """In a fresh process (``python tests/test_predict_widget.py``): the GUI thread's longest stalls, from a 10 ms
    QTimer's ticks, while the widget's first Run predicts a ``shape`` T2w (the current slice: the output layers
    are whole volumes) and shows its SFF and |error| layers. The viewer is shown, so the canvas draws count too;
    the GUI thread's steps overlapping the longest stall are named (layer steps of the widget, canvas draws)."""
    viewer, _timer, ticks, pump = ticking_viewer(tick_s)

    def longest_gap(since: float) -> float:
        return float(np.diff([since, *[t for t in ticks if t >= since], time.perf_counter()]).max())

    # What the GUI thread did: napari's layer steps (our handler only calls napari) and the canvas's draws
    events: list[tuple[str, float, float]] = []
    from vispy.app.backends import _qt as vispy_qt

    draw = vispy_qt.CanvasBackendDesktop.paintGL

    def timed_draw(canvas):
        begun = time.perf_counter()
        draw(canvas)
        events.append(("draw", begun, time.perf_counter()))

    vispy_qt.CanvasBackendDesktop.paintGL = timed_draw
    import gc

    collecting: dict[int, float] = {}

    def timed_collection(phase: str, info: dict) -> None:  # Python's garbage collections, on whichever thread
        if phase == "start":
            collecting[info["generation"]] = time.perf_counter()
        elif info["generation"] in collecting:
            begun = collecting.pop(info["generation"])
            if time.perf_counter() - begun > 0.005:  # the young generations' sub-millisecond ones are not named
                events.append((f"gc gen{info['generation']}", begun, time.perf_counter()))

    gc.callbacks.append(timed_collection)

    def during_longest_gap(since: float) -> list[str]:
        stamps = [since, *[t for t in ticks if t >= since], time.perf_counter()]
        i = int(np.argmax(np.diff(stamps)))
        return [f"{what} {1000 * (end - begun):.0f} ms" for what, begun, end in events
                if begun < stamps[i + 1] and end > stamps[i]]

    from napari_sff.widgets import predict
    from napari_sff.widgets.predict import PredictWidget

    def timed(method, label):
        def wrapper(self, *args):
            begun = time.perf_counter()
            try:
                return method(self, *args)
            finally:  # a layer step only hands arrays to napari: its time is napari's
                name = f"napari {args[0][0]} {args[0][1].kind}" if label == "step" else label
                events.append((name, begun, time.perf_counter()))
        return wrapper

    for label, attribute in (("press", "run"), ("progress", "_on_progress"), ("step", "_on_yielded"),
                             ("returned", "_on_returned"), ("finished", "_on_finished")):
        setattr(PredictWidget, attribute, timed(getattr(PredictWidget, attribute), label))
    from napari_sff.widgets import _turns

    advance = _turns.Steps._advance

    def timed_advance(steps, generation):  # a step of a Steps generator: the grid's, a shown map's colour bar...
        running = steps._running
        begun = time.perf_counter()
        try:
            return advance(steps, generation)
        finally:
            if running is not None:  # None: cancelled, nothing ran
                events.append((f"napari step {step_name(running)}", begun, time.perf_counter()))

    def step_name(generator) -> str:
        """The generators a step stopped in, outermost first (``yield from`` chains), and the line of the innermost
        one's ``yield``: the step's last napari call is just above it."""
        names, line, outermost = [], None, generator
        while hasattr(generator, "gi_code"):
            names.append(generator.gi_code.co_qualname)
            line = generator.gi_frame.f_lineno if generator.gi_frame is not None else None
            generator = generator.gi_yieldfrom
        where = f" to line {line}" if line is not None else " (its last)"
        return " > ".join(names or [type(outermost).__name__]) + where

    _turns.Steps._advance = timed_advance
    rng = np.random.default_rng(0)
    result = {}
    started = time.perf_counter()
    _, widget = viewer.window.add_plugin_dock_widget("napari-sff", "Predict SFF")

    result["dock_s"] = time.perf_counter() - started
    while not predict.PRELOADED.is_set():  # the background imports that follow docking
        pump(0.02)
    while widget._text_warmup.busy:  # the glyphs' steps, while the user would choose settings
        pump(0.02)
    result["preload_s"], result["preload_longest_stall_s"] = time.perf_counter() - started, longest_gap(started)
    widget.unet_weights.value = weights["unet"]
    widget.device.value = "cpu"
    widget.scope.value = "Current slice"
    for name, size in (("first", shape),):
        scale = (3.0, 0.8 * BIG_SHAPE[1] / size[1], 0.8 * BIG_SHAPE[2] / size[2])  # the same field of view
        source = viewer.add_image(rng.uniform(0, 1000, size).astype(np.float32), name=f"{name}_t2w", scale=scale)
        truth = viewer.add_image(rng.uniform(0, 100, size).astype(np.float32), name=f"{name}_sff", scale=scale,
                                 metadata={io.LAYER_SCALE_KEY: io.SFF_LAYER_PERCENT})
        widget.image.value, widget.ground_truth.value = source, truth
        pump(0.5)  # the new layers drawn
        done: list[float] = []
        started = time.perf_counter()
        worker = widget.run()
        result[f"{name}_press_s"] = time.perf_counter() - started
        worker.finished.connect(lambda done=done: done.append(time.perf_counter()))
        while not done:
            pump(0.001)
        pump(0.5)  # the canvas draws what was added last
        result[f"{name}_run_s"] = done[0] - started
        result[f"{name}_longest_stall_s"] = longest_gap(started)
        result[f"{name}_longest_stall_is"] = during_longest_gap(started)
        ours = [(end - begun, what) for what, begun, end in events
                if begun >= started and not what.startswith(("napari", "draw"))]
        result[f"{name}_longest_own_step_s"], result[f"{name}_longest_own_step_is"] = max(ours)
        # napari's operations one by one (less noisy than the stalls, which add up to a tick and other events):
        # each layer step's time, and the first draw after the SFF map's colour bar was turned on
        steps = [(what, end - begun) for what, begun, end in events if begun >= started and what.startswith("napari")]
        result[f"{name}_napari_steps_s"] = {what: seconds for what, seconds in steps}
        # the colour bar a part per step (napari_sff.widgets._colorbar): the first draw after each part's step,
        # the one after "colorbar" being the colour bar's first draw (all of it, where it is drawn whole)
        part_draws = {}
        for step in ("colorbar", *PART_STEPS):
            shown = [end for what, begun, end in events if begun >= started and what == f"napari {step} sff"]
            draws = [end - begun for what, begun, end in events if what == "draw" and shown and begun >= shown[0]]
            if draws:
                part_draws[step] = draws[0]
        result[f"{name}_colorbar_first_draw_s"] = part_draws.get("colorbar")
        result[f"{name}_colorbar_part_draws_s"] = part_draws
        result[f"{name}_layers"] = [layer.name for layer in viewer.layers if layer.name.endswith(f"[{name}_t2w]")]
    if show_error:  # the user shows the run's |error| map (added hidden; its colour bar built when first shown)
        error = next(layer for layer in viewer.layers if layer.name.startswith("|error|"))
        started = time.perf_counter()
        error.visible = True
        while widget._shown_maps.busy:
            pump(0.005)
        pump(0.5)  # the last step's draw
        result["show_error_longest_stall_s"] = longest_gap(started)
        result["show_error_longest_stall_is"] = during_longest_gap(started)
        result["show_error_draws_s"] = [end - begun for what, begun, end in events if what == "draw" and begun >= started]
        error.visible = False
        pump(0.2)
    if grid:  # the comparison grid after the run (ground truth, U-Net, |error| on demand): on, off, on again
        import gc

        result["heap_frozen"] = gc.get_freeze_count() > 0
        for phase, on in (("grid_on", True), ("grid_off", False), ("grid_on_again", True)):
            started = time.perf_counter()
            widget.side_by_side.value = on
            while widget.arranging:
                pump(0.005)
            result[f"{phase}_arranged_s"] = time.perf_counter() - started
            pump(0.5)  # the last step's draw
            result[f"{phase}_longest_stall_s"] = longest_gap(started)
            result[f"{phase}_longest_stall_is"] = during_longest_gap(started)
            grid_steps: dict[str, float] = {}  # each step's longest time (by generator and the line it stopped at)
            for what, begun, end in events:
                if begun >= started and what.startswith("napari step "):
                    grid_steps[what] = max(grid_steps.get(what, 0.0), end - begun)
            result[f"{phase}_grid_steps_s"] = grid_steps
    from vispy.gloo import program

    from napari_sff.widgets._shader_parsing import LinearCommentStrip

    result["vispy_comment_strip_linear"] = isinstance(program.re, LinearCommentStrip)
    return result


def record_importers(package: str) -> set[bool]:
    """From now on, for each import statement of ``package`` or a submodule: was it on the GUI (main) thread?
    (importlib.import_module raises no audit event itself: the imports it runs do.)"""
    import threading

    assert package not in sys.modules, f"{package} was imported before docking: nothing to measure"
    importers: set[bool] = set()

    def audit(event: str, args: tuple) -> None:
        if event == "import" and str(args[0]).split(".")[0] == package:
            importers.add(threading.current_thread() is threading.main_thread())

    sys.addaudithook(audit)
    return importers


def measure_docking(tick_s: float = 0.010, load_torch_library_first: bool = True) -> dict:
    """In a fresh process without torch (``--measure dock``): which thread imports torch when the Predict widget
    is docked, the GUI thread's longest stall from docking until the background imports are done (from a 10 ms
    QTimer's ticks), the device choices then, and the glyphs napari renders when the first colour bar is drawn
    after the widget's warm-up. ``load_torch_library_first=False`` (``--measure dock-import-only``, the control):
    the preload leaves loading torch's native library to the import, which holds the GIL meanwhile."""
    importers = record_importers("torch")
    monai_importers = record_importers("monai")
    if not load_torch_library_first:
        from napari_sff.widgets.predict import preload

        preload.open_torch_library = lambda: False
    viewer, _timer, ticks, pump = ticking_viewer(tick_s)

    pump(0.5)
    result: dict = {"torch_before_docking": "torch" in sys.modules,
                    "torch_library_loaded_without_gil": load_torch_library_first}
    started = time.perf_counter()
    _, widget = viewer.window.add_plugin_dock_widget("napari-sff", "Predict SFF")
    result["dock_s"] = time.perf_counter() - started
    result["device_choices_at_docking"] = list(widget.device.choices)
    from napari_sff.widgets import predict

    while not predict.PRELOADED.is_set():
        pump(0.02)
    pump(0.5)  # the device list's poll
    while widget._text_warmup.busy:  # the glyphs' steps
        pump(0.02)
    result["preload_s"] = time.perf_counter() - started
    gaps = np.diff([started, *[t for t in ticks if t >= started]])
    result["longest_stall_s"] = float(gaps.max())
    result["stalls_over_100ms_s"] = [round(float(gap), 3) for gap in gaps if gap > 0.1]
    result["torch_imported_on_gui_thread"] = sorted(importers)
    result["device_choices"] = list(widget.device.choices)
    result["devices_found_by_preload"] = list(predict.preload.DEVICES)
    from napari_sff.inference import available_devices

    result["available_devices"] = available_devices()
    font = predict.preload.canvas_font(viewer)  # the atlas the widget warmed
    result["warmed_glyphs"] = "".join(sorted(font._glyphs))
    layer = viewer.add_image(np.linspace(0, 100, 4 * 32 * 32, dtype=np.float32).reshape(4, 32, 32),
                             name="SFF U-Net [x]", metadata={io.LAYER_SCALE_KEY: io.SFF_LAYER_PERCENT,
                                                             "napari_sff": {"kind": "sff", "model": "unet"}})
    pump(0.5)
    result["colorbar_shown"] = bool(layer.colorbar.visible)
    result["glyphs_after_colorbar"] = "".join(sorted(font._glyphs))
    # MONAI only once the DDPM is chosen; the collector's freeze renewed over it (preload.DDPM_MODULES)
    import gc

    from napari_sff import imports

    result["monai_after_preload"] = "monai" in sys.modules
    result["heap_objects_after_preload"] = gc.get_freeze_count() + len(gc.get_objects())
    result["heap_frozen_after_preload"] = imports.heap_frozen_here()
    result["full_collection_after_preload_s"] = full_collection_unfrozen()
    started = time.perf_counter()
    widget.model.value = "DDPM"
    while not predict.DDPM_PRELOADED.is_set():
        pump(0.02)
    pump(0.2)  # the poll that renews the freeze
    result["ddpm_preload_s"] = time.perf_counter() - started
    result["ddpm_preload_longest_stall_s"] = float(np.diff([started, *[t for t in ticks if t >= started]]).max())
    result["monai_imported_on_gui_thread"] = sorted(monai_importers)
    result["heap_objects_after_ddpm_preload"] = gc.get_freeze_count() + len(gc.get_objects())
    result["heap_frozen_after_ddpm_preload"] = imports.heap_frozen_here()
    result["young_objects_after_ddpm_preload"] = len(gc.get_objects())  # what a full collection would examine
    result["full_collection_after_ddpm_preload_s"] = full_collection_unfrozen()
    return result


def full_collection_unfrozen(repeats: int = 3) -> float:
    """The shortest of ``repeats`` full garbage collections of everything alive, frozen or not: what napari's
    collection at a layer removal costs once the widget's freeze has ended. The freeze is restored after."""
    import gc

    frozen = gc.get_freeze_count() > 0
    gc.unfreeze()
    try:
        times = []
        for _ in range(repeats):
            begun = time.perf_counter()
            gc.collect()
            times.append(time.perf_counter() - begun)
        return min(times)
    finally:
        if frozen:
            gc.freeze()


def measure_roi_docking(tick_s: float = 0.010) -> dict:
    """In a fresh process without matplotlib (``--measure dock-roi``): which thread imports matplotlib when the
    ROI widget is docked, the GUI thread's stalls until its plots are made, and whether they are."""
    importers = record_importers("matplotlib")
    viewer, _timer, ticks, pump = ticking_viewer(tick_s)
    pump(0.5)
    started = time.perf_counter()
    _, widget = viewer.window.add_plugin_dock_widget("napari-sff", "ROI statistics")
    result: dict = {"dock_s": time.perf_counter() - started, "plots_at_docking": widget.figure is not None}
    end = time.perf_counter() + 60
    while widget.figure is None and time.perf_counter() < end:
        pump(0.02)
    pump(0.5)  # the plots' first draw
    gaps = np.diff([started, *[t for t in ticks if t >= started]])
    result.update(plots_made_s=time.perf_counter() - started, plots_made=widget.figure is not None,
                  longest_stall_s=float(gaps.max()), stalls_over_100ms_s=[round(float(g), 3) for g in gaps if g > 0.1],
                  matplotlib_imported_on_gui_thread=sorted(importers))
    return result


def measure_in_fresh_process(what: str, weights: dict | None = None, shape: tuple[int, ...] | None = None,
                             timeout: float = 300, env: dict[str, str] | None = None,
                             options: tuple[str, ...] = ()) -> dict:
    """One measurement (``dock`` or ``first-run``) in a process of its own (``env`` added to its environment,
    ``options`` to its command line); its JSON result."""
    command = [sys.executable, __file__, "--measure", what, *options]
    if weights is not None:
        command += ["--weights", json.dumps({key: str(value) for key, value in weights.items()})]
    if shape is not None:
        command += ["--shape", json.dumps(list(shape))]
    out = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    if out.returncode != 0:
        raise RuntimeError(f"{what} measurement failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _spread(values: list[float]) -> dict:
    return {"min": float(np.min(values)), "median": float(np.median(values)), "max": float(np.max(values))}


def measured_cases() -> dict[str, tuple[str, dict[str, str], tuple[str, ...]]]:
    """Each measurement of a full run: name -> (``--measure``, environment, options); a control beside the
    change it measures. ``*_tiny`` runs on :data:`TINY_SHAPE`, every other first Run on :data:`BIG_SHAPE`."""
    from napari_sff.imports import GC_FREEZE_SWITCH
    from napari_sff.widgets._colorbar import IN_PARTS_SWITCH
    from napari_sff.widgets._insertion import DEFER_CONTROLS_SWITCH
    from napari_sff.widgets._shader_parsing import ENV_SWITCH

    return {"dock": ("dock", {}, ()),
            "dock_import_only": ("dock-import-only", {}, ()),
            "dock_roi": ("dock-roi", {}, ()),
            "first_run_big": ("first-run", {}, ("--grid",)),
            "first_run_tiny": ("first-run", {}, ()),
            # the control: vispy's own comment strip (napari_sff.widgets._shader_parsing switched off)
            "first_run_big_vispy_as_is": ("first-run", {ENV_SWITCH: "0"}, ()),
            # the grid's control: the garbage collector left alone (no freeze_heap after the preload)
            "first_run_big_heap_as_is": ("first-run", {GC_FREEZE_SWITCH: "0"}, ("--grid",)),
            # napari selects each layer as it adds it (napari_sff.widgets._insertion.inserted_unselected)
            "first_run_big_selecting": ("first-run", {}, ("--select-on-insert",)),
            # each new layer's controls built as napari adds it (napari_sff.widgets._insertion switched off)
            "first_run_big_controls_at_once": ("first-run", {DEFER_CONTROLS_SWITCH: "0"}, ("--grid",)),
            # each colour bar turned on whole, all its parts drawn at once (napari_sff.widgets._colorbar off)
            "first_run_big_colorbar_at_once": ("first-run", {IN_PARTS_SWITCH: "0"}, ("--grid",)),
            # then the user shows the |error| map: its first draw, then its colour bar in parts; the control whole
            "first_run_big_show_error": ("first-run", {}, ("--show-error",)),
            "first_run_big_show_error_colorbar_at_once": ("first-run", {IN_PARTS_SWITCH: "0"}, ("--show-error",))}


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Min / median / max of each number over the repeats, for the cases measured."""
    summary: dict[str, dict] = {}
    if "dock" in runs:
        summary |= {"dock_longest_stall_s": _spread([r["longest_stall_s"] for r in runs["dock"]]),
                    "dock_s": _spread([r["dock_s"] for r in runs["dock"]])}
        summary |= {f"dock_{key}": _spread([r[key] for r in runs["dock"]])
                    for key in ("heap_objects_after_preload", "heap_objects_after_ddpm_preload",
                                "full_collection_after_preload_s", "full_collection_after_ddpm_preload_s",
                                "ddpm_preload_longest_stall_s")}
    for name in ("dock_import_only", "dock_roi"):
        if name in runs:
            summary[f"{name}_longest_stall_s"] = _spread([r["longest_stall_s"] for r in runs[name]])
    first_runs = [name for name in runs if name.startswith("first_run")]
    for name in first_runs:
        summary[f"{name}_longest_stall_s"] = _spread([r["first_longest_stall_s"] for r in runs[name]])
    for name in first_runs:
        if all(r["first_colorbar_first_draw_s"] is not None for r in runs[name]):
            summary[f"{name}_colorbar_first_draw_s"] = _spread([r["first_colorbar_first_draw_s"] for r in runs[name]])
    for name in first_runs:  # the colour bar's slowest draw: of its parts, or whole (the control)
        summary[f"{name}_colorbar_slowest_draw_s"] = _spread([max(r["first_colorbar_part_draws_s"].values())
                                                              for r in runs[name]])
    for name in first_runs:
        for step in ("add", "controls"):
            for kind in ("sff", "error"):
                summary[f"{name}_{step}_{kind}_s"] = _spread([r["first_napari_steps_s"][f"napari {step} {kind}"]
                                                             for r in runs[name]])
    for name in first_runs:
        if all("show_error_longest_stall_s" in r for r in runs[name]):
            summary[f"{name}_show_error_longest_stall_s"] = _spread([r["show_error_longest_stall_s"]
                                                                    for r in runs[name]])
    for name in first_runs:
        for phase in ("grid_on", "grid_off", "grid_on_again"):
            if all(f"{phase}_longest_stall_s" in r for r in runs[name]):
                summary[f"{name}_{phase}_longest_stall_s"] = _spread([r[f"{phase}_longest_stall_s"]
                                                                     for r in runs[name]])
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per measurement")
    parser.add_argument("--out", default="docs/bench_gui_cpu.json")
    parser.add_argument("--measure", choices=("dock", "dock-import-only", "dock-roi", "first-run"),
                        help="one measurement in this process")
    parser.add_argument("--weights", help="first-run: JSON {\"unet\": path} (default: the shipped U-Net)")
    parser.add_argument("--shape", help="first-run: JSON volume shape (default: 100 x 512 x 512)")
    parser.add_argument("--grid", action="store_true",
                        help="first-run: then turn the comparison grid on, off and on again")
    parser.add_argument("--show-error", action="store_true",
                        help="first-run: then show the run's |error| map (its colour bar built then)")
    parser.add_argument("--select-on-insert", action="store_true",
                        help="first-run, the control: napari selects each layer the run adds, as by default")
    parser.add_argument("--cases", nargs="+", choices=tuple(measured_cases()),
                        help="only these measurements (default: all), e.g. a change and its control")
    args = parser.parse_args(argv)
    if args.measure in ("dock", "dock-import-only"):
        print(json.dumps(measure_docking(load_torch_library_first=args.measure == "dock")))
        return 0
    if args.measure == "dock-roi":
        print(json.dumps(measure_roi_docking()))
        return 0
    if args.measure == "first-run":
        import torch

        torch.set_num_threads(1)  # as the tests' conftest.one_torch_thread
        weights = json.loads(args.weights) if args.weights else {"unet": ""}
        if args.select_on_insert:
            from contextlib import nullcontext

            from napari_sff.widgets import _insertion

            _insertion.inserted_unselected = lambda viewer: nullcontext()
        print(json.dumps(measure_first_run(weights, tuple(json.loads(args.shape)) if args.shape else BIG_SHAPE,
                                           grid=args.grid, show_error=args.show_error)))
        return 0
    # The plugin's bytecode first, as an installed wheel has it: from a checkout with PYTHONDONTWRITEBYTECODE set
    # every measured process compiled the widget's modules while docking (36 ms of its stall here).
    import compileall

    import napari_sff

    compileall.compile_dir(os.path.dirname(napari_sff.__file__), quiet=1)
    cases = {name: case for name, case in measured_cases().items() if not args.cases or name in args.cases}
    runs: dict[str, list[dict]] = {name: [] for name in cases}
    for _ in range(args.repeats):  # interleaved: each pair measured under the same load
        for name, (what, env, options) in cases.items():
            shape = TINY_SHAPE if name.endswith("_tiny") else BIG_SHAPE if what == "first-run" else None
            runs[name].append(measure_in_fresh_process(what, shape=shape, env=env, options=options))
    summary = summarise(runs)
    import platform

    import napari
    import torch

    setup = {"napari": napari.__version__, "torch": torch.__version__, "machine": platform.platform(),
             "python": platform.python_version(), "repeats": args.repeats, "cases": list(cases),
             "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "big_shape": BIG_SHAPE, "tiny_shape": TINY_SHAPE,
             "plugin_bytecode_compiled": True}
    from _common import write_report

    write_report({"setup": setup, "summary": summary, "runs": runs}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
