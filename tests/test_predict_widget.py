"""The prediction dock widget, driven through napari as a user would (make_napari_viewer + qtbot)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from napari.utils.notifications import notification_manager

from napari_sff import io
from napari_sff.inference import predict_volume
from napari_sff.widgets import _layers
from napari_sff.widgets.predict import PredictWidget, output_name


@pytest.fixture
def docked(make_napari_viewer, tiny_weights):
    """A viewer with the thigh sample and the widget docked through the plugin manifest."""
    viewer = make_napari_viewer()
    viewer.open_sample("napari-sff", "thigh")
    _, widget = viewer.window.add_plugin_dock_widget("napari-sff", "Predict SFF")
    assert isinstance(widget, PredictWidget)
    widget.unet_weights.value = tiny_weights["unet"]
    widget.ddpm_weights.value = tiny_weights["ddpm"]
    widget.device.value = "cpu"
    return viewer, widget


def wait_for(qtbot, worker, timeout=120_000):
    assert worker is not None, "the widget did not start a run"
    with qtbot.waitSignal(worker.finished, timeout=timeout):
        pass


def wait_arranged(qtbot, widget, timeout=30_000):
    """Until the comparison grid's set-up or take-down (a step per event-loop turn) is done."""
    qtbot.waitUntil(lambda: not widget.arranging, timeout=timeout)


def errors_since(start: int) -> list[str]:
    return [str(n.message) for n in notification_manager.records[start:]]


def assert_placed_like(layer, source):
    np.testing.assert_allclose(layer.scale, source.scale)
    np.testing.assert_allclose(layer.translate, source.translate)
    np.testing.assert_allclose(layer.rotate, source.rotate)
    np.testing.assert_allclose(layer.affine.affine_matrix, source.affine.affine_matrix)


def predicted_slices(viewer, tiny_weights, indices):
    """The tiny U-Net's SFF (fractions) of the sample's T2w at ``indices`` along axis 0 (the plain function)."""
    volume = _layers.layer_volume(viewer.layers["synthetic_thigh_t2w"])
    return predict_volume(volume.array, volume.spacing, "unet", weights=tiny_weights["unet"], device="cpu",
                          slice_axis=0, slice_indices=indices).sff


def test_unet_whole_volume_adds_a_placed_sff_layer(docked, qtbot, tmp_path):
    viewer, widget = docked
    source = viewer.layers["synthetic_thigh_t2w"]
    assert widget.image.value is source
    assert widget.ground_truth.value is viewer.layers["synthetic_thigh_sff"]  # found by name
    wait_for(qtbot, widget.run())
    layer = viewer.layers[output_name("sff", "unet", source.name)]
    assert layer.data.shape == source.data.shape
    assert_placed_like(layer, source)
    assert tuple(layer.contrast_limits) == (0.0, 100.0) and _layers.is_percent(layer)  # it holds percent
    assert layer.metadata["nifti"]["display_affine"] is not None
    error = viewer.layers[output_name("error", "unet", source.name)]
    truth = viewer.layers["synthetic_thigh_sff"]
    np.testing.assert_allclose(error.data, np.abs(layer.data - truth.data), atol=1e-4)  # both in percent: pp
    assert tuple(error.contrast_limits) == (0.0, 20.0) and _layers.is_percent(error)
    # File > Save writes a prediction as fractions, as before layers held percent
    state = {"metadata": layer.metadata, "scale": layer.scale, "translate": layer.translate, "rotate": layer.rotate}
    [path] = io.write_layer(str(tmp_path / "pred_sff.nii.gz"), layer.data, state)
    saved = io.read_nifti(path).array
    np.testing.assert_allclose(saved, layer.data / 100.0, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(_layers.fraction_data(layer), saved, rtol=1e-6, atol=1e-7)
    assert "ms" in widget.timing.value
    count = len(viewer.layers)
    wait_for(qtbot, widget.run())  # re-running updates the layers instead of adding copies
    assert len(viewer.layers) == count


def test_pixels_finer_than_trained_are_resampled_unless_unticked(docked, qtbot, tiny_configs, tmp_path):
    from napari_sff.models import build_model, save_checkpoint

    viewer, widget = docked
    widget.unet_weights.value = save_checkpoint(build_model("unet", tiny_configs["unet"]), tmp_path / "c.safetensors",
                                                metadata={"input_spacing_mm": [3.0, 4.0]})
    source = viewer.layers["synthetic_thigh_t2w"]
    wait_for(qtbot, widget.run())
    layer = viewer.layers[output_name("sff", "unet", source.name)]
    assert "at 3.00 × 3.00 mm" in widget.timing.value and layer.data.shape == source.data.shape
    assert layer.metadata["napari_sff"]["model_spacing_mm"] == (3.0, 3.0)
    widget.resample.value = False
    wait_for(qtbot, widget.run())
    assert " mm" not in widget.timing.value and layer.metadata["napari_sff"]["model_spacing_mm"] is None


def test_the_mirror_is_on_unless_unticked_and_the_map_says_which(docked, qtbot, tiny_weights):
    viewer, widget = docked
    source = viewer.layers["synthetic_thigh_t2w"]
    volume = _layers.layer_volume(source)
    for mirror in (True, False):
        widget.mirror.value = mirror
        wait_for(qtbot, widget.run())
        layer = viewer.layers[output_name("sff", "unet", source.name)]
        assert layer.metadata["napari_sff"]["mirrored"] is mirror and ("with mirror" in widget.timing.value) is mirror
        expected = predict_volume(volume.array, volume.spacing, "unet", weights=tiny_weights["unet"], device="cpu",
                                  mirror=mirror).sff
        np.testing.assert_allclose(layer.data, 100 * expected, atol=1e-4)
    widget.model.value = "DDPM"
    assert not widget.mirror.visible


def test_current_slice_fills_only_that_slice(docked, qtbot, tiny_weights):
    viewer, widget = docked
    source = viewer.layers["synthetic_thigh_t2w"]
    viewer.dims.set_current_step(0, 5)
    widget.scope.value = "Current slice"
    wait_for(qtbot, widget.run())
    data = viewer.layers[output_name("sff", "unet", source.name)].data
    filled = [k for k in range(data.shape[0]) if data[k].any()]
    assert filled == [5]
    viewer.dims.set_current_step(0, 9)
    wait_for(qtbot, widget.run())  # merged into the layer: both slices in percent, neither scaled twice
    expected = predicted_slices(viewer, tiny_weights, [5, 9])
    np.testing.assert_allclose(data[5], 100 * expected[5], atol=1e-4)
    data = viewer.layers[output_name("sff", "unet", source.name)].data
    np.testing.assert_allclose(data[[5, 9]], 100 * expected[[5, 9]], atol=1e-4)
    assert [k for k in range(data.shape[0]) if data[k].any()] == [5, 9]


def test_stop_cancels_and_leaves_no_layer(docked, qtbot):
    viewer, widget = docked
    widget.model.value = "DDPM"
    widget.ddim_steps.value = 200
    widget.batch_size.value = 1
    before = [layer.name for layer in viewer.layers]
    worker = widget.run()
    qtbot.waitUntil(lambda: widget.progress.value > 0, timeout=60_000)
    assert not widget.run_button.enabled and widget.stop_button.enabled  # controls locked while running
    widget.stop_button.clicked.emit()
    started = time.perf_counter()
    wait_for(qtbot, worker)
    assert time.perf_counter() - started < 30
    assert [layer.name for layer in viewer.layers] == before
    assert widget.run_button.enabled


def test_ddpm_with_samples_adds_mean_and_sd_and_comparison_adds_difference(docked, qtbot):
    viewer, widget = docked
    source = viewer.layers["synthetic_thigh_t2w"]
    widget.model.value = "Both (compare)"
    widget.ddim_steps.value = 2
    widget.samples.value = 2
    widget.scope.value = "Current slice"
    wait_for(qtbot, widget.run())
    for kind, arch in (("sff", "unet"), ("sff", "ddpm"), ("std", "ddpm"), ("difference", None)):
        layer = viewer.layers[output_name(kind, arch, source.name)]
        assert layer.data.shape == source.data.shape
        assert_placed_like(layer, source)
    unet = viewer.layers[output_name("sff", "unet", source.name)].data
    ddpm = viewer.layers[output_name("sff", "ddpm", source.name)].data
    difference = viewer.layers[output_name("difference", None, source.name)].data
    np.testing.assert_allclose(difference, ddpm - unet, atol=1e-6)
    assert "U-Net" in widget.timing.value and "DDPM" in widget.timing.value
    widget.side_by_side.value = True
    wait_arranged(qtbot, widget)
    assert viewer.grid.enabled


def test_gui_stays_responsive_during_a_run(docked, qtbot):
    from qtpy.QtCore import QTimer

    viewer, widget = docked
    widget.model.value = "DDPM"
    widget.scope.value = "Current slice"
    widget.ddim_steps.value = 40
    ticks = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    worker = widget.run()
    started = time.perf_counter()
    wait_for(qtbot, worker)
    elapsed = time.perf_counter() - started
    timer.stop()
    assert elapsed > 0.5, "run too short to measure responsiveness"
    rate = len([t for t in ticks if t >= started]) / elapsed
    gaps = np.diff(ticks)
    assert rate >= 10, f"GUI timer fired at {rate:.1f} Hz during the run"
    assert gaps.max() < 0.5, f"GUI froze for {gaps.max():.2f} s"


# ------------------------------------------------------------------------------ first run on a big volume
#: Any single GUI-thread step of the widget's own (pressing Run, a progress update, the step after the maps are
#: shown) stays under this; napari's own steps (adding a layer, building and first drawing its colour bar) are
#: compared with the same steps on a tiny volume instead (see the test below).
STALL_LIMIT_S = 0.100
#: The 100 x 512 x 512 run's longest stall against the 100 x 8 x 8 run's (each the first Run of a fresh process):
#: measured ratios 0.70-1.37 over four pairs while the two shared cores ran at load 4.5-8 (342/290, 681/612,
#: 429/615, 676/494 ms), the longest stall being napari's first colour bar each time.
SIZE_TOLERANCE = 1.5


def test_first_run_on_a_big_volume_stalls_the_gui_no_longer_than_on_a_tiny_one(tiny_weights, bench_gui):
    """Issue #11: pressing Run and showing 26 M-voxel maps must not freeze the viewer. Everything the widget
    computes runs in its worker (prediction, percent conversion, |error|, merging); the GUI thread only hands
    finished arrays to napari, one layer step per event-loop turn. What is left is napari's own cost of adding
    an image layer and drawing its colour bar, whatever its size: measured here on a 100 x 8 x 8 volume in the
    same process, and the 100 x 512 x 512 run may stall the GUI no longer than that (plus the limit, for the
    noise of this shared 2-core machine; see the report of issue #11 for measured distributions)."""
    bench = bench_gui
    results = {}
    for name, shape in (("big", bench.BIG_SHAPE), ("tiny", bench.TINY_SHAPE)):  # each the first Run of its process
        results[name] = result = bench.measure_in_fresh_process("first-run", tiny_weights, shape)
        print(name, {key: round(value, 3) if isinstance(value, float) else value for key, value in result.items()})
        assert result["first_layers"] == ["|error| U-Net [first_t2w]", "SFF U-Net [first_t2w]"]
        assert result["first_longest_own_step_s"] < STALL_LIMIT_S  # pressing Run, progress, the last step
    big, tiny = (results[name]["first_longest_stall_s"] for name in ("big", "tiny"))
    assert big < SIZE_TOLERANCE * tiny + STALL_LIMIT_S, f"{big:.3f} s on 26 M voxels against {tiny:.3f} s on 6400"


def test_a_new_map_is_revealed_in_steps_and_a_rerun_never_hides_it(docked, qtbot):
    """Issue #11: napari built a new map's colour bar (40-80 ms) and drew it for the first time (80-110 ms) in one
    stall. A new SFF map is added hidden and without its layer controls, which come next ("controls"), its colour
    bar built while hidden ("style"), the map shown ("show") and then its colour bar, its gradient ("colorbar")
    and then its outline, tick marks and tick labels a step each (the first draw of all four together took
    64-155 ms): each a stall of its own (``benchmarks/bench_gui.py``). A re-run updates the shown map in place:
    it stays visible through every step."""
    from napari_sff.widgets.predict.worker import LAYER_STEPS

    viewer, widget = docked
    widget.scope.value = "Current slice"
    name = output_name("sff", "unet", "synthetic_thigh_t2w")
    seen = []
    controls = viewer.window._qt_viewer.controls.widgets  # napari's layer controls, by layer
    with_controls = []
    drawn_parts = []  # napari's vispy colour bar: outline, tick marks (an axis), tick labels

    def record(step):
        PredictWidget._on_yielded(widget, step)
        what, output = step
        if output.name == name and name not in viewer.layers:  # before the first run adds it
            seen.append((what, None, None))
        elif output.name == name:
            layer = viewer.layers[name]
            seen.append((what, layer.visible, layer.colorbar.visible))
            with_controls.append(any(built.name == name for built in controls))
            visuals = viewer.window._qt_viewer.canvas._layer_overlay_to_visual[layer]
            node = visuals[layer.colorbar].node if layer.colorbar in visuals else None
            drawn_parts.append(None if node is None or not layer.colorbar.visible else
                               (node.img.visible, node.box.visible, node.ticks.visible, node.ticks._text.visible))

    widget._on_yielded = record  # what a run connects its worker's steps to
    toggled = []
    for run in range(2):
        seen.clear()
        drawn_parts.clear()
        wait_for(qtbot, widget.run())
        if run == 0:
            assert seen == [("collect", None, None), ("add", False, False), ("controls", False, False),
                            ("collect", False, False), ("style", False, False), ("show", True, False),
                            ("colorbar", True, True), ("colorbar gradient", True, True),
                            ("colorbar outline", True, True), ("colorbar ticks", True, True),
                            ("colorbar labels", True, True)]
            assert with_controls == [False, True, True, True, True, True, True, True, True, True]  # a step later
            assert drawn_parts == [None, None, None, None, None, (False, False, False, False),
                                   (True, False, False, False), (True, True, False, False), (True, True, True, False),
                                   (True, True, True, True)]
            assert not widget._colorbar_parts
            viewer.layers[name].events.visible.connect(lambda event: toggled.append(event.source.visible))
        else:
            assert seen == [(step, True, True) for step in LAYER_STEPS]
            assert drawn_parts == [(True,) * 4] * len(LAYER_STEPS)  # shown once, whole from then on
            assert toggled == []  # not even hidden and shown again when the run ends (_present)
    assert viewer.layers[name].visible and viewer.layers[name].colorbar.visible
    error = viewer.layers[output_name("error", "unet", "synthetic_thigh_t2w")]
    assert not error.visible and not error.colorbar.visible  # hidden maps stay hidden, their colour bar unbuilt
    assert error.colorbar not in viewer.window._qt_viewer.canvas._layer_overlay_to_visual[error]
    assert list(widget._style_pending) == [error.name]  # styled when first shown: one waiting after two runs
    error.visible = True
    assert not widget._style_pending and not error.colorbar.visible  # this turn: the map's own first draw
    parts = []
    while widget._shown_maps.busy:  # then its colour bar, a part per step
        qtbot.wait(5)
        overlay = viewer.window._qt_viewer.canvas._layer_overlay_to_visual[error].get(error.colorbar)
        if error.colorbar.visible and overlay is not None:
            node = overlay.node
            parts.append((node.img.visible, node.box.visible, node.ticks.visible, node.ticks._text.visible))
    expected = [(False,) * 4, (True, False, False, False), (True, True, False, False), (True, True, True, False),
                (True,) * 4]
    observed = list(dict.fromkeys(parts))  # polled: in the order expected, from the gradient alone to all
    assert observed[0] == expected[0] and observed == [state for state in expected if state in observed]
    assert error.colorbar.visible and parts[-1] == expected[-1] and error.colorbar.position == "bottom_right"


def test_a_runs_new_layers_are_added_without_selecting_each(docked, qtbot):
    """Issue #11: napari makes each layer it adds the selected one (switching the layer controls to it: 20-30
    ms, in the same stall as adding it). A run's layers are added unselected; the SFF map is selected once, at
    the end."""
    viewer, widget = docked
    widget.scope.value = "Current slice"
    source = "synthetic_thigh_t2w"
    before = viewer.layers.selection.active
    actives = []
    viewer.layers.selection.events.active.connect(lambda event: actives.append(getattr(event.value, "name", None)))
    wait_for(qtbot, widget.run())
    assert output_name("error", "unet", source) in viewer.layers  # two layers added
    assert before is None or before.name != output_name("sff", "unet", source)
    # napari's select_only empties the selection (None) and may announce the new active layer twice
    assert set(actives) - {None} == {output_name("sff", "unet", source)}, actives
    assert viewer.layers._activate_on_insert  # napari's rule is back for everyone else's layers


def test_after_the_preload_the_heap_is_frozen_until_a_layer_of_then_is_removed(docked, qtbot):
    """Issue #11: with torch and MONAI imported every full garbage collection took 280-430 ms, and napari runs
    one at each layer removal (the comparison grid's end removed three). After the preload the objects of then
    are frozen (imports.freeze_heap); a layer added later is freed while frozen, and a layer of then about to be
    removed ends the freeze first, so that napari's collection frees it (no layer is leaked)."""
    import gc
    import weakref

    from napari_sff.widgets.predict import PRELOADED

    viewer, widget = docked
    qtbot.waitUntil(PRELOADED.is_set, timeout=120_000)
    qtbot.waitUntil(lambda: widget._release_heap is not None, timeout=5_000)
    assert gc.get_freeze_count() > 0
    later = viewer.add_image(np.zeros((4, 8, 8), np.float32), name="added after the freeze")
    later_ref = weakref.ref(later)
    viewer.layers.remove(later)
    del later
    gc.collect()
    assert later_ref() is None and gc.get_freeze_count() > 0  # freed, and the freeze holds
    labels = viewer.layers["synthetic_thigh_labels"]  # there when the widget was docked
    labels_ref = weakref.ref(labels)
    viewer.layers.remove(labels)
    del labels
    assert gc.get_freeze_count() == 0  # ended before napari's collection at the removal
    gc.collect()
    assert labels_ref() is None


def test_choosing_the_ddpm_renews_the_freeze_over_the_layers_added_since(docked, qtbot, monkeypatch):
    """MONAI is imported only once the DDPM is chosen; the freeze of the preload is undone for that import and
    renewed after it over everything, the layers added meanwhile included: one of them about to be removed now
    ends the freeze (else it would stay frozen, and never be freed, until the widget closed)."""
    import gc
    import threading
    import weakref

    from napari_sff.imports import heap_frozen_here
    from napari_sff.widgets.predict import PRELOADED, preload
    from napari_sff.widgets.predict import widget as widget_module

    fresh = threading.Event()  # the DDPM's preload as in a new process, whatever earlier tests chose
    monkeypatch.setattr(preload, "DDPM_PRELOADED", fresh)
    monkeypatch.setattr(widget_module, "DDPM_PRELOADED", fresh)
    viewer, widget = docked
    qtbot.waitUntil(PRELOADED.is_set, timeout=120_000)
    qtbot.waitUntil(lambda: widget._release_heap is not None, timeout=5_000)
    first_release = widget._release_heap
    between = viewer.add_image(np.zeros((4, 8, 8), np.float32), name="added before the DDPM was chosen")
    widget.model.value = "DDPM"
    qtbot.waitUntil(fresh.is_set, timeout=120_000)
    qtbot.waitUntil(lambda: widget._release_heap not in (None, first_release), timeout=5_000)
    assert heap_frozen_here()
    between_ref = weakref.ref(between)
    viewer.layers.remove(between)
    del between
    assert not heap_frozen_here()  # ended before napari's collection at the removal
    gc.collect()
    assert between_ref() is None


def test_docking_imports_torch_in_the_background_and_warms_the_colour_bar_glyphs(bench_gui):
    """Issue #11: docking the widget froze the viewer 3.5 s, 2.7 s of it importing torch on the GUI thread (the
    device list asked torch). Now torch is imported by the background preload and the device list is filled in
    when it is done; the glyphs of napari's colour bars and of the grid's titles are rendered while the user
    chooses settings, so the first colour bar renders none (measured: ~190 ms of its 309 ms draw)."""
    from napari_sff.widgets.predict.comparison import TITLE_GLYPHS
    from napari_sff.widgets.predict.preload import COLORBAR_GLYPHS

    result = bench_gui.measure_in_fresh_process("dock")
    print({key: round(value, 3) if isinstance(value, float) else value for key, value in result.items()})
    assert not result["torch_before_docking"]
    assert result["torch_imported_on_gui_thread"] == [False]  # all of it by the preload thread
    assert result["device_choices_at_docking"] == ["auto", "cpu"]
    assert result["device_choices"] == ["auto", *result["available_devices"]]  # as the preload thread found them
    assert result["devices_found_by_preload"] == result["available_devices"]
    assert set(COLORBAR_GLYPHS + TITLE_GLYPHS) <= set(result["warmed_glyphs"])
    assert result["colorbar_shown"] and result["glyphs_after_colorbar"] == result["warmed_glyphs"]
    # MONAI waits for the DDPM to be chosen (the U-Net is the default), then comes in the background, and the
    # collector's freeze is renewed over it: a full collection examines only what was made since.
    assert not result["monai_after_preload"] and result["heap_frozen_after_preload"]
    assert result["monai_imported_on_gui_thread"] == [False]
    assert result["heap_objects_after_ddpm_preload"] > result["heap_objects_after_preload"] + 50_000
    assert result["heap_frozen_after_ddpm_preload"]
    assert result["young_objects_after_ddpm_preload"] < 50_000


def test_batch_size_auto_takes_the_cached_calibration_and_never_calibrates_in_a_run(docked, qtbot, monkeypatch):
    """The widget's batch size starts at *auto* (0): predict_volume gets no batch size and uses the calibration
    ``napari-sff predict`` cached for this device, else the device default, without timing candidates inside
    the Run (even where calibration is on); a number is passed as it is."""
    from napari_sff.inference import settings

    viewer, widget = docked
    assert widget.batch_size.value == 0 and widget.batch_size.native.currentText() == "auto"
    assert widget.make_request().batch_size is None
    monkeypatch.setenv("NAPARI_SFF_CALIBRATE", "1")
    chosen = []
    real = settings.run_settings
    monkeypatch.setattr(settings, "calibrate", lambda *a, **k: pytest.fail("calibrated inside a Run"))
    monkeypatch.setattr("napari_sff.inference.predict.run_settings",
                        lambda *a, **k: chosen.append(real(*a, **k)) or chosen[-1])
    widget.scope.value = "Current slice"
    wait_for(qtbot, widget.run())
    assert [s.source for s in chosen] == ["default"]
    widget.batch_size.value = 4
    assert widget.make_request().batch_size == 4
    wait_for(qtbot, widget.run())
    assert (chosen[-1].batch_size, chosen[-1].source) == (4, "caller")


def test_precision_auto_is_the_settings_and_a_chosen_precision_runs_and_is_shown(docked, qtbot):
    """*auto* leaves the precision to the calibration or the device (float32 on a CPU without bfloat16 units, as
    the tests' CPU is made to be); a chosen one reaches the network, the timing line and the layer's metadata."""
    viewer, widget = docked
    assert widget.precision.value == "" and widget.precision.native.currentText() == "auto"
    assert widget.make_request().precision is None
    widget.scope.value = "Current slice"
    wait_for(qtbot, widget.run())
    name = output_name("sff", "unet", widget.image.value.name)
    assert viewer.layers[name].metadata["napari_sff"]["precision"] == "float32"
    assert "float32" not in widget.timing.value  # the usual precision is not spelled out
    widget.precision.value = "bfloat16"
    wait_for(qtbot, widget.run())
    assert viewer.layers[name].metadata["napari_sff"]["precision"] == "bfloat16"
    assert ", bfloat16" in widget.timing.value


def test_empty_viewer_gives_a_notification(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-sff", "Predict SFF")
    start = len(notification_manager.records)
    assert widget.run() is None
    assert any("no T2w image" in message for message in errors_since(start))


def test_4d_layer_asks_which_volume(make_napari_viewer, tiny_weights, qtbot):
    viewer = make_napari_viewer()
    series = np.random.default_rng(0).uniform(0, 100, (3, 4, 24, 24)).astype(np.float32)
    source = viewer.add_image(series, name="dynamic", scale=(1, 5, 1.2, 1.2), translate=(0, 10, 20, 30))
    _, widget = viewer.window.add_plugin_dock_widget("napari-sff", "Predict SFF")
    widget.unet_weights.value = tiny_weights["unet"]
    assert not widget.time_point.native.isHidden() and widget.time_point.max == 2
    widget.time_point.value = 1
    start = len(notification_manager.records)
    wait_for(qtbot, widget.run())
    assert any("volume 1" in message for message in errors_since(start))
    layer = viewer.layers[output_name("sff", "unet", source.name)]
    assert layer.data.shape == series.shape[1:]
    np.testing.assert_allclose(layer.scale, source.scale[1:])
    np.testing.assert_allclose(layer.translate, source.translate[1:])


def test_corrupt_weights_give_a_notification(docked, qtbot, tmp_path):
    viewer, widget = docked
    corrupt = tmp_path / "broken.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    widget.unet_weights.value = corrupt
    start = len(notification_manager.records)
    before = len(viewer.layers)
    wait_for(qtbot, widget.run())
    assert any("broken.safetensors" in message for message in errors_since(start))
    assert len(viewer.layers) == before


def test_live_mode_predicts_the_viewed_slice(docked, qtbot, tiny_weights):
    viewer, widget = docked
    source = viewer.layers["synthetic_thigh_t2w"]
    viewer.dims.set_current_step(0, 3)
    widget.live.value = True
    name = output_name("sff", "unet", source.name)
    qtbot.waitUntil(lambda: name in viewer.layers and viewer.layers[name].data[3].any(), timeout=60_000)
    qtbot.waitUntil(lambda: widget._worker is None, timeout=60_000)
    viewer.dims.set_current_step(0, 7)
    qtbot.waitUntil(lambda: viewer.layers[name].data[7].any(), timeout=60_000)
    qtbot.waitUntil(lambda: widget._worker is None, timeout=60_000)
    filled = [k for k in range(source.data.shape[0]) if viewer.layers[name].data[k].any()]
    assert filled == [3, 7]
    expected = predicted_slices(viewer, tiny_weights, [3, 7])  # slice 3 was merged into again: still percent
    np.testing.assert_allclose(viewer.layers[name].data[[3, 7]], 100 * expected[[3, 7]], atol=1e-4)


def test_cursor_readout_in_percent(docked, qtbot):
    viewer, widget = docked
    truth = viewer.layers["synthetic_thigh_sff"]
    index = np.unravel_index(np.argmax(truth.data), truth.data.shape)
    viewer.cursor.position = truth.data_to_world(index)
    widget._on_mouse_move(viewer, None)
    expected = f"{float(truth.data[index]):.1f} %"  # the layer holds percent: read as it is, not x 100 again
    assert float(truth.data[index]) > 50 and expected in widget.readout.value and expected in viewer.help
    # napari's own status bar reads the (visible) layer's value on the slice on screen: percent too
    truth.visible = True
    viewer.dims.set_current_step(0, int(index[0]))
    assert truth.get_value(viewer.cursor.position, world=True) == pytest.approx(float(truth.data[index]))


def test_shipped_unet_on_the_sample(docked, qtbot):
    """The default (empty) weights field runs the shipped U-Net; its map tracks the sample's ground truth.

    Measured on this sample (voxels with SFF > 0, ``predict_volume`` with the shipped weights): r 0.904, MAE
    10.0 pp, against 0.817 / 11.7 pp for the identity baseline (an untrained network gives r ~0); the weights
    shipped before gave 0.879 / 9.1 pp. The bounds below separate a trained model from the identity. Much of the
    error is the case's edema, which T2w alone cannot tell from fat (see the README's model card).
    """
    viewer, widget = docked
    widget.unet_weights.value = ""
    source = viewer.layers["synthetic_thigh_t2w"]
    wait_for(qtbot, widget.run())
    predicted = viewer.layers[output_name("sff", "unet", source.name)]
    assert predicted.metadata["napari_sff"]["weights"] == "shipped"
    truth = viewer.layers["synthetic_thigh_sff"].data
    body = truth > 0
    assert np.corrcoef(predicted.data[body], truth[body])[0, 1] > 0.86
    assert np.abs(predicted.data[body] - truth[body]).mean() < 11.0  # both layers in percent


# ------------------------------------------------------------------------------------ ground truth on another grid
def coarse_ramp_truth(viewer, shift_voxels=(0, 0, 0), percent=False):
    """A fat-fraction ramp, linear in world position, on a 2x coarser grid over the sample's box (or shifted):
    a fraction map made elsewhere, or (``percent``) a layer marked as napari-sff's percent layers are."""
    source = viewer.layers["synthetic_thigh_t2w"]
    fine = np.asarray(source.scale, float)
    coarse_shape = tuple(n // 2 for n in source.data.shape)
    origin = np.asarray(source.translate, float) + 0.5 * fine + np.asarray(shift_voxels) * 2 * fine
    centres = np.indices(coarse_shape).reshape(3, -1) * (2 * fine)[:, None] + origin[:, None]
    data = ramp(centres).reshape(coarse_shape)
    if percent:
        return viewer.add_image(100 * data, name="dixon_sff_coarse", scale=2 * fine, translate=origin,
                                metadata={io.LAYER_SCALE_KEY: io.SFF_LAYER_PERCENT})
    return viewer.add_image(data, name="dixon_sff_coarse", scale=2 * fine, translate=origin)


def ramp(world):
    """0.1 .. 0.6 across the sample's box (about 76 x 296 x 296 mm)."""
    return (0.1 + 0.2 * world[0] / 76 + 0.15 * world[1] / 296 + 0.15 * world[2] / 296).astype(np.float32)


@pytest.mark.parametrize("percent", [False, True])
def test_ground_truth_on_a_coarser_grid_is_resampled_onto_the_prediction(docked, qtbot, percent):
    viewer, widget = docked
    source = viewer.layers["synthetic_thigh_t2w"]
    widget.ground_truth.value = coarse_ramp_truth(viewer, percent=percent)
    widget.scope.value = "Current slice"
    viewer.dims.set_current_step(0, 12)
    start = len(notification_manager.records)
    wait_for(qtbot, widget.run())
    assert not [m for m in errors_since(start) if "ground truth" in m]
    sff = viewer.layers[output_name("sff", "unet", source.name)].data
    error = viewer.layers[output_name("error", "unet", source.name)]
    assert error.data.shape == source.data.shape
    world = np.indices(source.data.shape).reshape(3, -1) * np.asarray(source.scale)[:, None]
    truth_on_fine = ramp(world).reshape(source.data.shape)  # linear: interpolation is exact between centres
    inside = (slice(1, -1),) * 3
    # in pp whatever the truth's unit: the map's percent minus the truth's fractions x 100
    np.testing.assert_allclose(error.data[inside], np.abs(sff - 100 * truth_on_fine)[inside], atol=1e-3)
    truth = widget.ground_truth.value  # the readout gives the truth in percent, whatever its unit
    centre = np.asarray(truth.data_to_world((3, 40, 50)), float)
    assert dict(widget.readout_values(centre))["GT"] == f"{100 * float(ramp(centre[:, None])[0]):.1f} %"


def test_ground_truth_over_another_region_is_refused_with_a_notification(docked, qtbot):
    viewer, widget = docked
    source = viewer.layers["synthetic_thigh_t2w"]
    widget.ground_truth.value = coarse_ramp_truth(viewer, shift_voxels=(0, 0, 10))
    widget.scope.value = "Current slice"
    start = len(notification_manager.records)
    wait_for(qtbot, widget.run())
    refused = [m for m in errors_since(start) if "does not cover the same region" in m]
    assert refused and "dixon_sff_coarse" in refused[0] and "no |error| layer" in refused[0]
    assert output_name("sff", "unet", source.name) in viewer.layers
    assert output_name("error", "unet", source.name) not in viewer.layers


# ------------------------------------------------------------------------------------------------ reading view
def test_after_a_run_the_sff_map_is_selected_on_top_with_a_colour_bar(docked, qtbot):
    viewer, widget = docked
    source = viewer.layers["synthetic_thigh_t2w"]
    labels, truth = viewer.layers["synthetic_thigh_labels"], viewer.layers["synthetic_thigh_sff"]
    assert labels.contour >= 1  # outlines: the labels do not tint the overlay
    assert truth.colorbar.visible  # a fat-fraction map read by io gets its colour bar too
    widget.scope.value = "Current slice"
    wait_for(qtbot, widget.run())
    layer = viewer.layers[output_name("sff", "unet", source.name)]
    assert viewer.layers.selection.active is layer and viewer.layers.selection == {layer}
    assert viewer.layers.index(layer) == len(viewer.layers) - 1
    assert layer.colorbar.visible and layer.visible
    assert not viewer.layers[output_name("error", "unet", source.name)].visible
    assert tuple(layer.contrast_limits) == tuple(truth.contrast_limits) == (0.0, 100.0)
    # what the canvas draws: the colour bar's tick axis spans 0-100 (percent), not 0-1
    qtbot.wait(50)
    colour_bar = viewer.window._qt_viewer.canvas._layer_overlay_to_visual[layer][layer.colorbar].node
    np.testing.assert_allclose(colour_bar.ticks.domain, (0.0, 100.0))
    viewer.layers.move(viewer.layers.index(layer), 0)
    wait_for(qtbot, widget.run())  # a re-run updates the layer in place and puts it back on top
    assert viewer.layers.index(layer) == len(viewer.layers) - 1


def test_labels_read_from_a_file_are_outlines(make_napari_viewer, tmp_path):
    from napari_sff import io

    volume = io.Volume.from_array(np.zeros((3, 8, 8), np.uint8), (3.0, 1.0, 1.0))
    volume.array[1, 2:5, 2:5] = 2
    path = tmp_path / "case_labels.nii.gz"
    io.write_nifti(volume, path)
    viewer = make_napari_viewer()
    viewer.window.add_plugin_dock_widget("napari-sff", "Predict SFF")
    (layer,) = viewer.open(str(path), plugin="napari-sff")
    assert type(layer).__name__ == "Labels" and layer.contour >= 1 and layer.opacity < 0.7


def test_comparison_grid_has_titled_cells_with_anatomy_colour_bars_and_a_full_readout(docked, qtbot):
    viewer, widget = docked
    source = viewer.layers["synthetic_thigh_t2w"]
    truth = viewer.layers["synthetic_thigh_sff"]
    widget.model.value = "Both (compare)"
    widget.ddim_steps.value = 2
    widget.scope.value = "Current slice"
    viewer.dims.set_current_step(0, 12)
    widget.side_by_side.value = True
    wait_for(qtbot, widget.run())
    assert widget.arranging  # the grid is set up a step per event-loop turn after the run
    wait_arranged(qtbot, widget)
    grid = viewer.grid
    assert grid.enabled and grid.stride == 2
    unet, ddpm = (viewer.layers[output_name("sff", a, source.name)] for a in ("unet", "ddpm"))
    difference = viewer.layers[output_name("difference", None, source.name)]
    layers = list(viewer.layers)
    cells = {position: [layers[i] for i in indices] for position, indices in grid.iter_viewboxes(layers)}
    expected = [("Ground truth SFF", truth), ("U-Net SFF", unet), ("DDPM SFF", ddpm), ("DDPM − U-Net", difference)]
    assert [[layer.name for layer in cells[p]] for p in sorted(cells)] == [[f"{t} on T2w", m.name] for t, m in expected]
    overlays = viewer.window._qt_viewer.canvas._layer_overlay_to_visual
    for anatomy, shown in cells.values():
        assert anatomy.data is source.data and anatomy.name_overlay.visible and anatomy.colormap.name == "gray"
        assert shown.colorbar.visible and shown.visible
        node = overlays[shown][shown.colorbar].node  # every part of the colour bar drawn (shown a part per step)
        assert (node.img.visible, node.box.visible, node.ticks.visible, node.ticks._text.visible) == (True,) * 4
    assert viewer.layers.selection.active is ddpm
    assert not viewer.text_overlay.visible  # the bars read percent: no note on how to read them
    assert tuple(truth.contrast_limits) == tuple(unet.contrast_limits) == (0.0, 100.0)  # one colour scale
    assert tuple(difference.contrast_limits) == (-20.0, 20.0)
    assert not source.visible and not viewer.layers["synthetic_thigh_labels"].visible  # not a cell of their own
    error = viewer.layers[output_name("error", "unet", source.name)]
    error.visible = True  # an |error| map on demand: its own cell, with its anatomy
    anatomy = viewer.layers[viewer.layers.index(error) - 1]
    assert anatomy.visible and anatomy.name == "|U-Net − ground truth| on T2w"

    index = (12, 128, 100)
    viewer.cursor.position = source.data_to_world(index)
    widget._on_mouse_move(viewer, None)
    values = dict(widget.readout_values(viewer.cursor.position))
    assert list(values) == ["GT", "U-Net", "DDPM", "DDPM − U-Net"]
    assert values["GT"] == f"{float(truth.data[index]):.1f} %"  # percent layers: read as they are
    assert values["U-Net"] == f"{float(unet.data[index]):.1f} %"
    assert values["DDPM − U-Net"] == f"{float(ddpm.data[index] - unet.data[index]):+.1f} pp"
    assert widget.readout.value.splitlines() == [f"{name}: {value}" for name, value in values.items()]
    assert all(f"{name} {value}" in viewer.help for name, value in values.items())

    widget.side_by_side.value = False  # back to one overlay: the copies go, the anatomy and labels return
    wait_arranged(qtbot, widget)
    assert not grid.enabled and source.visible and viewer.layers["synthetic_thigh_labels"].visible
    assert not [layer for layer in viewer.layers if layer.name.endswith(" on T2w")]
    assert ddpm.visible and not unet.visible and viewer.layers.index(ddpm) == len(viewer.layers) - 1


def test_predicting_on_labels_or_an_sff_map_warns(docked, qtbot):
    viewer, widget = docked
    labels = viewer.layers["synthetic_thigh_labels"]
    viewer.add_image(np.asarray(labels.data), name="muscles", scale=labels.scale)
    widget.scope.value = "Current slice"
    for name, words in (("synthetic_thigh_sff", "looks like a fat fraction map"), ("muscles", "segmentation")):
        widget.image.value = viewer.layers[name]
        start = len(notification_manager.records)
        wait_for(qtbot, widget.run())  # a warning (checked in the worker: 26 M voxels take 30-80 ms), no refusal
        warned = [m for m in errors_since(start) if "not a T2w image" in m]
        assert len(warned) == 1 and words in warned[0] and name in warned[0]
        assert output_name("sff", "unet", name) in viewer.layers
    widget.image.value = viewer.layers["synthetic_thigh_t2w"]
    start = len(notification_manager.records)
    wait_for(qtbot, widget.run())
    assert not [m for m in errors_since(start) if "not a T2w image" in m]


def test_input_kind_warning_known_inputs():
    from napari_sff.preprocess import input_kind_warning
    from napari_sff.simulate import simulate_case

    case = simulate_case("thigh", size=64, n_slices=3, seed=1)
    assert input_kind_warning(case.t2w) is None  # float, integer-valued scanner units, ~1700 levels
    assert input_kind_warning(case.t2w.astype(np.uint16)) is None  # as DICOM stores it
    assert input_kind_warning(case.sff * 100) is None  # percent SFF cannot be told from a T2w: no false alarm
    assert input_kind_warning(case.labels) == \
        "this looks like a segmentation (5 distinct integer values), not a T2w image"
    assert "segmentation (a binary mask)" in input_kind_warning(case.labels > 0)
    assert input_kind_warning(case.sff) == \
        "this looks like a fat fraction map (all values within [0, 1]), not a T2w image"
    assert input_kind_warning(np.zeros((2, 8, 8))) is None  # empty: nothing to say
    # A small T2w stored with ~100 grey levels (the simulator at 64² x 6) is an image: its neighbours differ.
    small = simulate_case("calf", size=64, n_slices=6, seed=2).t2w
    levels = np.round(small / small.max() * 104).astype(np.int16)
    assert np.unique(levels).size <= 128 and input_kind_warning(levels) is None


def test_a_scan_outside_the_training_data_gets_a_warning(docked, tiny_configs, tmp_path, qtbot):
    """The checkpoint's recorded ranges (napari_sff.domain) against the T2w: the widget says when it lies outside."""
    from napari_sff.domain import STATISTICS
    from napari_sff.models import build_model, save_checkpoint

    viewer, widget = docked
    narrow = save_checkpoint(build_model("unet", tiny_configs["unet"]), tmp_path / "narrow.safetensors",
                             metadata={"input_statistics": {name: [0.0, 0.001] for name in STATISTICS}})
    widget.unet_weights.value = narrow
    widget.scope.value = "Current slice"
    start = len(notification_manager.records)
    wait_for(qtbot, widget.run())
    warned = [m for m in errors_since(start) if "outside what the model was trained on" in m]
    assert len(warned) == 1 and "synthetic_thigh_t2w" in warned[0] and "read its SFF map with caution" in warned[0]
    start = len(notification_manager.records)
    wait_for(qtbot, widget.run())
    assert not [m for m in errors_since(start) if "outside what the model" in m]  # said once, not on every run


def test_the_readout_shows_how_unlike_its_training_slices_the_unet_finds_the_slice(docked, qtbot):
    """The shipped U-Net records its training slices' features: each predicted slice's distance from them is kept
    with the map (current-slice runs add theirs) and shown for the slice under the cursor."""
    viewer, widget = docked
    widget.unet_weights.value = ""  # the shipped weights: they carry feature statistics
    source = viewer.layers["synthetic_thigh_t2w"]
    widget.scope.value = "Current slice"
    for index in (5, 9):
        viewer.dims.set_current_step(0, index)
        wait_for(qtbot, widget.run())
    layer = viewer.layers[output_name("sff", "unet", source.name)]
    assert set(layer.metadata["napari_sff"]["feature_distance"]) == {5, 9}
    volume = _layers.layer_volume(source)
    expected = predict_volume(volume.array, volume.spacing, "unet", device="cpu", slice_axis=0,
                              slice_indices=[5])
    viewer.cursor.position = layer.data_to_world((5, 40, 40))
    title, text = widget.readout_values(viewer.cursor.position)[-1]
    assert title == "U-Net, slice 5" and text.startswith(f"feature distance {expected.feature_distance[0]:.2f} ")
    assert f"training ≤ {expected.feature_threshold:.2f}" in text
    viewer.cursor.position = layer.data_to_world((7, 40, 40))  # not predicted: no line
    assert not any(title.startswith("U-Net, slice") for title, _ in widget.readout_values(viewer.cursor.position))


def test_glyph_steps_render_each_missing_glyph_in_a_step_of_its_own():
    """A text's glyphs are rendered one per step (about 12 ms each), cached ones skipped without a step."""
    from napari_sff.widgets.predict.preload import glyph_steps

    class Font:  # vispy's TextureFont: indexing renders a glyph into ``_glyphs`` once
        def __init__(self):
            self._glyphs, self.rendered = {"a": object()}, []

        def __getitem__(self, char):
            if char not in self._glyphs:
                self.rendered.append(char)
                self._glyphs[char] = object()
            return self._glyphs[char]

    font = Font()
    steps = glyph_steps(font, "abca b")
    assert font.rendered == []  # nothing before the first step
    assert sum(1 for _ in steps) == 3 and font.rendered == ["b", "c", " "]
    assert list(glyph_steps(font, "cab")) == []  # all cached: no step at all


def test_a_hidden_maps_colour_bar_is_built_when_the_map_is_first_shown_a_step_after_it(docked, qtbot):
    """Issue #11: napari builds a colour bar in 60-90 ms as it is first turned on; with the map's first draw and
    the colour bar's, showing a hidden map (|error|) was one stall of 170-240 ms. The run leaves it unbuilt, the
    grid too (turned on for a hidden cell, napari built it as the grid went off: 65-130 ms for a map nobody
    shows); shown, the map draws first, its colour bar is built a step later and drawn a part per step."""
    viewer, widget = docked
    widget.scope.value = "Current slice"
    wait_for(qtbot, widget.run())
    error = viewer.layers[output_name("error", "unet", "synthetic_thigh_t2w")]
    visuals = viewer.window._qt_viewer.canvas._layer_overlay_to_visual  # napari's overlay visuals, by layer
    for _ in range(2):  # on and off, twice
        widget.side_by_side.value = True
        wait_arranged(qtbot, widget)
        assert not error.colorbar.visible and not error.visible  # a hidden cell
        widget.side_by_side.value = False
        wait_arranged(qtbot, widget)
        assert not viewer.grid.enabled and not error.visible
        assert error.colorbar not in visuals.get(error, {})  # napari never built it
        assert not error.colorbar.visible and error.name in widget._style_pending
    settings_while_on = []  # napari lays a shown colour bar out again at each setting: all are made before
    for setting in ("size", "font_size", "position"):
        getattr(error.colorbar.events, setting).connect(
            lambda event, setting=setting: settings_while_on.append((setting, error.colorbar.visible)))
    error.visible = True  # shown at last: its colour bar a step later
    assert not error.colorbar.visible and error.colorbar not in visuals[error]
    qtbot.waitUntil(lambda: not widget._shown_maps.busy)
    assert error.colorbar.visible and error.colorbar in visuals[error]
    assert error.colorbar.position == "bottom_right"  # below an SFF map's
    assert settings_while_on and not any(on for _, on in settings_while_on), settings_while_on


def test_a_grid_cells_map_is_drawn_before_its_colour_bars_parts(docked, qtbot):
    """Issue #11: a map's colour bar moves into the grid cell with it (and back out), and its parts were drawn
    anew with the map in one draw (the grid's longest stall, 78-127 ms); they are hidden as the map is shown,
    then shown a part per step."""
    viewer, widget = docked
    widget.scope.value = "Current slice"
    wait_for(qtbot, widget.run())
    unet = viewer.layers[output_name("sff", "unet", "synthetic_thigh_t2w")]
    assert unet.visible and unet.colorbar.visible
    node = viewer.window._qt_viewer.canvas._layer_overlay_to_visual[unet][unet.colorbar].node
    parts_when_shown = []
    unet.events.visible.connect(lambda event: parts_when_shown.append(
        (unet.visible, node.img.visible, node.box.visible, node.ticks.visible, node.ticks._text.visible)))
    widget.side_by_side.value = True
    wait_arranged(qtbot, widget)
    assert parts_when_shown == [(False, True, True, True, True),  # hidden before the grid goes on
                                (True, False, False, False, False)]  # shown in its cell, its colour bar's parts not
    assert (node.img.visible, node.box.visible, node.ticks.visible, node.ticks._text.visible) == (True,) * 4
    parts_when_shown.clear()
    widget.side_by_side.value = False  # back in the plain view: the same
    wait_arranged(qtbot, widget)
    assert parts_when_shown == [(False, True, True, True, True), (True, False, False, False, False)]
    assert (node.img.visible, node.box.visible, node.ticks.visible, node.ticks._text.visible) == (True,) * 4


def test_opening_a_hidden_cell_in_the_grid_shows_its_colour_bar_at_the_cells_top_right(docked, qtbot):
    viewer, widget = docked
    widget.scope.value = "Current slice"
    widget.side_by_side.value = True
    wait_for(qtbot, widget.run())
    wait_arranged(qtbot, widget)
    error = viewer.layers[output_name("error", "unet", "synthetic_thigh_t2w")]
    assert viewer.grid.enabled and not error.visible and not error.colorbar.visible
    error.visible = True  # the user opens the |error| cell
    qtbot.waitUntil(lambda: not widget._shown_maps.busy)
    assert error.colorbar.visible and error.colorbar.position == "top_right"
    node = viewer.window._qt_viewer.canvas._layer_overlay_to_visual[error][error.colorbar].node
    assert (node.img.visible, node.box.visible, node.ticks.visible, node.ticks._text.visible) == (True,) * 4
