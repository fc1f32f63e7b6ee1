"""The ROI statistics dock widget, driven through napari as a user would (make_napari_viewer + qtbot).

Every number is checked against :func:`napari_sff.stats.roi_table` or a hand-computed answer.
"""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from napari.utils.notifications import notification_manager
from napari.utils.theme import get_theme
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication

from napari_sff import io, stats
from napari_sff.widgets.roi_stats import COLUMN_KEYS, RoiStatsWidget, label_names

SCALE = (4.0, 0.5, 0.8)  # anisotropic voxels, mm
TRANSLATE = (10.0, -5.0, 3.0)


def dock(viewer) -> RoiStatsWidget:
    _, widget = viewer.window.add_plugin_dock_widget("napari-sff", "ROI statistics")
    assert isinstance(widget, RoiStatsWidget)
    return widget


def settle(qtbot, widget, timeout=10_000):
    """Wait for the debounced worker update (and any queued one) to land in ``widget.rows``."""
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)


def refreshed(qtbot, widget):
    widget.refresh()
    settle(qtbot, widget)
    return widget.rows


def by_key(rows):
    return {(row.label, row.source): row for row in rows}


def table_cells(widget):
    table = widget.table
    return [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]


@pytest.fixture
def sample(make_napari_viewer):
    """The thigh sample plus a prediction-like layer: ground truth + 2 pp, placed like the T2w (both layers
    hold percent, as napari-sff's SFF layers do)."""
    viewer = make_napari_viewer()
    viewer.open_sample("napari-sff", "thigh")
    t2w, truth = viewer.layers["synthetic_thigh_t2w"], viewer.layers["synthetic_thigh_sff"]
    prediction = viewer.add_image(truth.data + np.float32(2.0), name="SFF U-Net [synthetic_thigh_t2w]",
                                  metadata={"napari_sff": {"model": "unet"}, io.LAYER_SCALE_KEY: 100.0},
                                  scale=t2w.scale, translate=t2w.translate)
    return viewer, dock(viewer), truth, prediction


@pytest.fixture
def small(make_napari_viewer):
    """A hand-made anisotropic, translated 6x20x30 map with labels 1 (2 voxels) and 2 (10 voxels)."""
    viewer = make_napari_viewer()
    values = (np.arange(6 * 20 * 30, dtype=np.float32) / (6 * 20 * 30)).reshape(6, 20, 30)
    labels = np.zeros(values.shape, np.uint8)
    labels[1, 2, 2:4] = 1
    labels[2, 10, 10:20] = 2
    image = viewer.add_image(values, name="map_sff", scale=SCALE, translate=TRANSLATE)
    labels_layer = viewer.add_labels(labels, name="rois", scale=SCALE, translate=TRANSLATE)
    return viewer, dock(viewer), image, labels_layer


def test_sample_rows_match_roi_table_and_the_table_shows_them(sample, qtbot, tmp_path):
    viewer, widget, truth, prediction = sample
    labels = viewer.layers["synthetic_thigh_labels"]
    assert widget.reference.value is truth
    assert widget.labels_layer.value is labels
    assert set(widget.values.value) == {truth, prediction}  # ground truth and predictions chosen by default
    rows = refreshed(qtbot, widget)

    # the layers hold percent; the statistics are computed on fractions, as before layers held percent
    fractions = {truth.name: truth.data / np.float32(100), prediction.name: prediction.data / np.float32(100)}
    expected = stats.roi_table(fractions, labels.data, truth.scale[-3:], reference=truth.name,
                               label_names=label_names(labels))
    assert rows == expected
    quadriceps = labels.data == 1
    by_hand = truth.data[quadriceps].astype(np.float64).mean() / 100  # the mean fat fraction, by hand
    assert by_key(rows)[(1, truth.name)].mean == pytest.approx(by_hand, rel=1e-6)
    assert [row.name for row in rows[::2]] == ["quadriceps", "hamstrings", "adductors", "sartorius/gracilis"]
    voxel_ml = np.prod(truth.scale) / 1000
    for row in rows:
        assert row.volume_ml == pytest.approx(row.n_voxels * voxel_ml)
        if row.source == truth.name:
            assert row.diff_mean is None and row.mae is None
        else:
            assert row.diff_mean == pytest.approx(0.02, abs=1e-6)
            assert row.mae == pytest.approx(0.02, abs=1e-6)
    assert table_cells(widget) == stats.format_rows(rows)  # sorted by label, sources in order

    # Plots: one point per ROI per predicted source, identity line, bias and limits of agreement.
    scatter, agreement = widget.figure.axes
    assert len(scatter.collections) == 1 and len(scatter.collections[0].get_offsets()) == 4
    assert len(scatter.lines) == 1
    np.testing.assert_allclose(scatter.collections[0].get_offsets()[:, 1] - scatter.collections[0].get_offsets()[:, 0],
                               2.0, atol=1e-3)
    assert len(agreement.collections) == 1 and len(agreement.collections[0].get_offsets()) == 4
    assert len(agreement.lines) == 3
    bias = stats.bland_altman([100 * r.mean for r in rows[1::2]], [100 * r.mean for r in rows[::2]])["bias"]
    assert agreement.lines[0].get_ydata()[0] == pytest.approx(bias)

    # CSV export with units, and the clipboard gets the table as TSV.
    path = widget.export_csv(tmp_path / "roi.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    assert table[0] == stats.table_header()
    assert {"volume [mL]", "mean [%]", "Δ mean vs reference [pp]"} <= set(table[0])
    assert len(table) == 1 + len(rows) and table[2][table[0].index("Δ mean vs reference [pp]")] == "2.0"
    text = widget.copy_to_clipboard()
    assert QApplication.clipboard().text() == text
    lines = text.splitlines()
    assert lines[0].split("\t") == stats.table_header()
    assert [line.split("\t") for line in lines[1:]] == stats.format_rows(rows)

    # Selecting a row highlights that label and goes to a slice that holds it.
    widget.table.selectRow(6)
    row = widget.rows[widget.table.item(6, 0).data(Qt.ItemDataRole.UserRole)]
    assert row.label == 4
    assert labels.selected_label == 4 and labels.show_selected_label
    assert (labels.data[viewer.dims.current_step[0]] == 4).any()

    # Without a reference the plots say so instead of plotting.
    widget.reference.value = None
    widget.values.value = [prediction]
    rows = refreshed(qtbot, widget)
    assert {row.source for row in rows} == {prediction.name} and all(row.diff_mean is None for row in rows)
    scatter, _ = widget.figure.axes  # each picture is drawn anew (in a worker)
    assert not scatter.collections and "reference" in scatter.texts[0].get_text()


def test_leaving_the_roi_border_out_measures_each_muscle_s_core(sample, qtbot, monkeypatch, tmp_path):
    """The ROI border setting: the rows are roi_table's with exclude_rim, and a muscle's mean by hand over the
    voxels whose in-plane 4-neighbours all share its label (the sample's slice axis is 0, its thickest)."""
    viewer, widget, truth, prediction = sample
    labels = viewer.layers["synthetic_thigh_labels"]
    assert widget.exclude_rim.value == 0 and widget.exclude_rim.native.currentText() == "whole ROIs"
    whole = by_key(refreshed(qtbot, widget))
    widget.exclude_rim.value = 1
    rows = refreshed(qtbot, widget)
    assert "ROI border of 1 voxel left out" in widget.status.value
    fractions = {truth.name: truth.data / np.float32(100), prediction.name: prediction.data / np.float32(100)}
    assert rows == stats.roi_table(fractions, labels.data, truth.scale[-3:], reference=truth.name,
                                   label_names=label_names(labels), exclude_rim=1)
    data = labels.data
    core = data == 1
    core[:, 1:, :] &= data[:, :-1, :] == 1
    core[:, :-1, :] &= data[:, 1:, :] == 1
    core[:, :, 1:] &= data[:, :, :-1] == 1
    core[:, :, :-1] &= data[:, :, 1:] == 1
    row = by_key(rows)[(1, truth.name)]
    assert row.n_voxels == core.sum() < whole[(1, truth.name)].n_voxels
    assert row.mean == pytest.approx(truth.data[core].astype(np.float64).mean() / 100, rel=1e-6)
    viewer.dims.order = (1, 0, 2)  # viewed along axis 1 now: the border lies in that plane (recomputed by itself)
    settle(qtbot, widget)
    rows = widget.rows
    assert rows == stats.roi_table(fractions, labels.data, truth.scale[-3:], reference=truth.name,
                                   label_names=label_names(labels), exclude_rim=1, rim_axis=1)
    assert rows != stats.roi_table(fractions, labels.data, truth.scale[-3:], reference=truth.name,
                                   label_names=label_names(labels), exclude_rim=1)
    viewer.dims.order = (0, 1, 2)
    refreshed(qtbot, widget)
    from napari_sff import report  # the report says what its numbers are

    passed = {}
    monkeypatch.setattr(report, "write_report", lambda *a, **k: passed.update(k) or [])
    widget.export_report(tmp_path / "report.pdf")
    assert passed["scope"] == "whole volume; each ROI without its border of 1 voxel (voxels and volumes are the cores')"


def test_docking_imports_matplotlib_in_the_background_and_then_makes_the_plots(bench_gui):
    """Issue #11 (the viewer never freezes): importing matplotlib for the plots froze docking 1.1 s; now it is
    imported in the background and the plots take the place of a blank area once it is in."""
    result = bench_gui.measure_in_fresh_process("dock-roi")
    print(result)
    assert not result["plots_at_docking"] and result["plots_made"]
    assert result["matplotlib_imported_on_gui_thread"] == [False]


def test_the_plots_are_drawn_in_a_worker_and_shown_at_the_plot_area_s_size(sample, qtbot, monkeypatch):
    """Issue #11 (the viewer never freezes): an Agg draw of the plots took 50-160 ms, at every update of the
    statistics; it runs in a worker now and the GUI thread only shows its pixels."""
    import threading

    from napari_sff import report
    from napari_sff.widgets.roi_stats.plots import PLOT_HEIGHT

    viewer, widget, _, _ = sample
    threads = []
    render = report.render_agreement
    monkeypatch.setattr(report, "render_agreement",
                        lambda picture: threads.append(threading.current_thread()) or render(picture))
    widget.refresh()
    settle(qtbot, widget)
    assert threads and threading.main_thread() not in threads
    pixmap = widget.plot_view.pixmap()
    ratio = pixmap.devicePixelRatio()
    assert (round(pixmap.width() / ratio), round(pixmap.height() / ratio)) == (widget.plot_view.width(), PLOT_HEIGHT)
    assert (pixmap.width(), pixmap.height()) == tuple(widget.canvas.get_width_height())  # the figure's own pixels
    corner = pixmap.toImage().pixelColor(0, 0)
    expected = to_rgb(get_theme(viewer.theme).background.as_hex())
    assert (corner.redF(), corner.greenF(), corner.blueF()) == pytest.approx(expected, abs=1 / 255)
    assert len(widget.figure.axes[0].collections) == 1  # what the rows say (one predicted map)


def test_the_report_dialog_writes_in_a_worker_and_says_so(sample, qtbot, tmp_path):
    """*Export report…* gathers the content on the GUI thread and writes the file in a worker: the same report
    as export_report, a notification naming it, and a one-line error for a file type it cannot write."""
    from pdf_reader import pdf_texts

    viewer, widget, truth, prediction = sample
    refreshed(qtbot, widget)
    start = len(notification_manager.records)

    def said(count):  # the worker may be done before a signal could be waited for: wait for what it says
        qtbot.waitUntil(lambda: len(notification_manager.records) >= start + count, timeout=60_000)

    widget.export_report_in_background(tmp_path / "report.pdf")
    said(1)
    assert (tmp_path / "report.pdf").exists()
    widget.export_report(tmp_path / "direct.pdf")
    def undated(path):  # the creation time may differ by a minute
        return [text for text in pdf_texts(path) if not text.startswith("Report created")]

    assert undated(tmp_path / "report.pdf") == undated(tmp_path / "direct.pdf")
    messages = [str(n.message) for n in notification_manager.records[start:]]
    assert messages == [f"napari-sff: saved {tmp_path / 'report.pdf'}"]
    widget.export_report_in_background(tmp_path / "report.tiff")
    said(2)
    errors = [str(n.message) for n in notification_manager.records[start + 1:]]
    assert len(errors) == 1 and errors[0].startswith(f"napari-sff: could not save the report {tmp_path / 'report.tiff'}")
    assert "\n" not in errors[0] and not (tmp_path / "report.tiff").exists()


def test_shape_roi_on_an_anisotropic_translated_image(small, qtbot):
    viewer, widget, image, labels = small
    world = lambda k, r, c: np.array(TRANSLATE) + np.array(SCALE) * (k, r, c)  # noqa: E731
    # A rectangle drawn (in world coordinates, scale 1) on slice 3 around rows 4..9 and columns 5..12.
    corners = [world(3, r, c) for r, c in ((3.5, 4.5), (3.5, 12.5), (9.5, 12.5), (9.5, 4.5))]
    viewer.add_shapes([np.array(corners)], shape_type="rectangle", name="drawn")
    settle(qtbot, widget)
    rows = by_key(widget.rows)
    shape = rows[(11, "map_sff")]  # labels go up to 2, so shapes start after 10
    assert shape.name == "shape 1"
    assert shape.n_voxels == 6 * 8
    assert shape.mean == pytest.approx(float(image.data[3, 4:10, 5:13].astype(np.float64).mean()))
    assert shape.volume_ml == pytest.approx(48 * np.prod(SCALE) / 1000)
    assert rows[(2, "map_sff")].n_voxels == 10

    widget.scope.value = "Current slice"
    for k, expected in ((3, 48), (2, 0)):  # the ROI lies on slice 3 only
        viewer.dims.set_point(0, world(k, 0, 0)[0])
        settle(qtbot, widget)
        assert by_key(widget.rows)[(11, "map_sff")].n_voxels == expected
    assert by_key(widget.rows)[(2, "map_sff")].n_voxels == 10  # label 2 is on slice 2

    # The voxel column sorts numerically (10 before 2 in a string sort).
    column = COLUMN_KEYS.index("n_voxels")
    widget.scope.value = "Whole volume"
    settle(qtbot, widget)
    widget.table.sortByColumn(column, Qt.SortOrder.DescendingOrder)
    counts = [int(widget.table.item(r, column).text()) for r in range(widget.table.rowCount())]
    assert counts == [48, 10, 2]

    # Selecting the shape's row selects the shape.
    widget.table.selectRow(0)
    assert viewer.layers["drawn"].selected_data == {0}

    # A shape spanning slices has no 2-D outline to fill: the worker's error becomes a notification.
    start = len(notification_manager.records)
    tilted = np.array([world(2, 4, 5), world(3, 4, 12), world(3, 9, 12)])
    viewer.layers["drawn"].add([tilted], shape_type="polygon")
    settle(qtbot, widget)
    assert widget.rows == []
    assert any("single slice" in str(n.message) for n in notification_manager.records[start:])


def test_painting_updates_and_current_slice_changes_counts(small, qtbot):
    viewer, widget, image, labels = small
    settle(qtbot, widget)
    assert by_key(widget.rows)[(2, "map_sff")].n_voxels == 10

    before = widget.updates
    labels.brush_size = 1
    labels.paint((2, 15, 5), 2)  # one stroke, as the brush does
    qtbot.waitUntil(lambda: widget.updates > before and not widget.busy, timeout=10_000)
    assert by_key(widget.rows)[(2, "map_sff")].n_voxels == np.count_nonzero(labels.data == 2) > 10

    # Replacing the data: several quick edits give a single (debounced) update.
    before = widget.updates
    for k in range(5):
        data = np.zeros_like(labels.data)
        data[k, :3, :3] = 2
        labels.data = data
    settle(qtbot, widget)
    assert widget.updates == before + 1
    assert by_key(widget.rows)[(2, "map_sff")].n_voxels == 9

    widget.scope.value = "Current slice"
    viewer.dims.set_point(0, TRANSLATE[0] + 4 * SCALE[0])
    settle(qtbot, widget)
    assert by_key(widget.rows)[(2, "map_sff")].n_voxels == 9
    viewer.dims.set_point(0, TRANSLATE[0] + 3 * SCALE[0])
    settle(qtbot, widget)
    row = by_key(widget.rows)[(2, "map_sff")]
    assert row.n_voxels == 0 and np.isnan(row.mean)

    # A new prediction is picked up and compared with the reference; the plots follow napari's theme.
    viewer.add_image(image.data + np.float32(0.1), name="SFF DDPM [t2w]", metadata={"napari_sff": {"model": "ddpm"}},
                     scale=SCALE, translate=TRANSLATE)
    viewer.dims.set_point(0, TRANSLATE[0] + 4 * SCALE[0])
    settle(qtbot, widget)
    row = by_key(widget.rows)[(2, "SFF DDPM [t2w]")]
    assert row.n_voxels == 9 and row.diff_mean == pytest.approx(0.1, abs=1e-6)
    viewer.theme = "light"
    settle(qtbot, widget)  # the plots are drawn again, in a worker
    assert widget.figure.get_facecolor()[:3] == pytest.approx(to_rgb(get_theme("light").background.as_hex()))


def test_labels_on_another_grid_are_resampled_or_refused(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    values = np.arange(4 * 8 * 8, dtype=np.float32).reshape(4, 8, 8)
    image = viewer.add_image(values, name="fine_sff")
    coarse = np.zeros((2, 4, 4), np.uint8)
    coarse[0, 1, 1] = 1  # covers fine voxels [0:2, 2:4, 2:4]
    # Same world box (-0.5..7.5 mm on each axis) with 2 mm voxels.
    labels = viewer.add_labels(coarse, name="coarse", scale=(2, 2, 2), translate=(0.5, 0.5, 0.5))
    widget = dock(viewer)
    settle(qtbot, widget)
    (row,) = widget.rows
    assert row.n_voxels == 8
    assert row.mean == pytest.approx(values[0:2, 2:4, 2:4].mean())
    assert row.volume_ml == pytest.approx(8 / 1000)

    start = len(notification_manager.records)
    labels.translate = (50, 0, 0)  # now it lies elsewhere: no numbers, and the user is told
    settle(qtbot, widget)
    assert widget.rows == [] and widget.table.rowCount() == 0
    messages = [str(n.message) for n in notification_manager.records[start:] if "cover" in str(n.message)]
    assert len(messages) == 1 and "'coarse'" in messages[0] and "does not cover" in messages[0]
    assert "does not cover" in widget.status.value
    assert image.name in messages[0]

    labels.translate = (0.5, 0.5, 0.5)
    viewer.add_image(np.zeros((4, 8, 9), np.float32), name="SFF U-Net [other]",
                     metadata={"napari_sff": {"model": "unet"}})
    settle(qtbot, widget)  # a prediction over another region is left out, with a notification
    assert [row.source for row in widget.rows] == ["fine_sff"] and widget.rows[0].n_voxels == 8
    message = str(notification_manager.records[-1].message)
    assert "'SFF U-Net [other]'" in message and "does not cover the same region as 'fine_sff'" in message


def test_a_map_on_another_grid_of_the_same_region_is_resampled_onto_the_reference(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    fine = viewer.add_image(np.zeros((4, 8, 8), np.float32), name="SFF U-Net [t2w]",
                            metadata={"napari_sff": {"model": "unet"}})
    labels = np.zeros(fine.data.shape, np.uint8)
    labels[0:2, 2:4, 2:4] = 1  # inside coarse voxel (0, 1, 1)
    labels[2:4, 4:8, 0:2] = 2  # across coarse voxels (1, 2..3, 0)
    viewer.add_labels(labels, name="rois")
    # A Dixon-like map with 2 mm voxels over the same -0.5..7.5 mm box; its values rise along the last axis only.
    ramp = np.broadcast_to(np.array([0.1, 0.3, 0.5, 0.7], np.float32), (2, 4, 4)).copy()
    viewer.add_image(ramp, name="dixon_sff", scale=(2, 2, 2), translate=(0.5, 0.5, 0.5))
    widget = dock(viewer)
    widget.reference.value = None  # statistics on the grid of the first map: the prediction's
    widget.values.value = [fine, viewer.layers["dixon_sff"]]
    settle(qtbot, widget)
    rows = by_key(widget.rows)
    assert rows[1, "dixon_sff"].n_voxels == rows[1, "SFF U-Net [t2w]"].n_voxels == 8  # counted on the fine grid
    # Fine column c sits at coarse coordinate (c - 0.5) / 2: linear between the coarse centres, edges repeat.
    fine_columns = np.interp((np.arange(8) - 0.5) / 2, np.arange(4), [0.1, 0.3, 0.5, 0.7])
    assert rows[1, "dixon_sff"].mean == pytest.approx(fine_columns[2:4].mean(), abs=1e-6)
    assert rows[2, "dixon_sff"].mean == pytest.approx(fine_columns[0:2].mean(), abs=1e-6)
    assert "left out" not in widget.status.value


def test_newer_requests_supersede_older_results(small, qtbot):
    viewer, widget, image, labels = small
    settle(qtbot, widget)
    before = widget.updates
    widget.refresh()  # starts a worker on the current labels ...
    labels.data = np.ones_like(labels.data)  # ... whose result is stale before it arrives
    settle(qtbot, widget)
    assert widget.updates == before + 1  # the stale result was dropped, not shown
    assert [row.n_voxels for row in widget.rows] == [labels.data.size]


# ------------------------------------------------------------------------------------ reading view and report
#: What a DICOM reader keeps in layer metadata; none of it may reach the report.
PATIENT = {"PatientName": "DOE^JANE", "PatientID": "PID-4711", "PatientBirthDate": "19610203",
           "StudyDate": "20240102", "AccessionNumber": "ACC-0815"}


@pytest.fixture
def predicted(make_napari_viewer, tiny_weights, qtbot):
    """File > Open Sample > thigh, then Predict (both models, current slice) as a user would, then the ROI dock."""
    from napari_sff.widgets.predict import PredictWidget

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    viewer.open_sample("napari-sff", "thigh")
    predict_dock, predict = viewer.window.add_plugin_dock_widget("napari-sff", "Predict SFF")
    assert isinstance(predict, PredictWidget)
    predict.unet_weights.value = tiny_weights["unet"]
    predict.ddpm_weights.value = tiny_weights["ddpm"]
    predict.device.value = "cpu"
    predict.model.value = "Both (compare)"
    predict.ddim_steps.value = 2
    predict.samples.value = 1
    predict.scope.value = "Current slice"
    worker = predict.run()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    viewer.window.remove_dock_widget(predict_dock)
    for layer in viewer.layers:  # identifiers as a DICOM reader would keep them, also inside our own metadata
        layer.metadata["dicom"] = dict(PATIENT)
        if "napari_sff" in layer.metadata:
            layer.metadata["napari_sff"].update(PATIENT)
    dock_widget, widget = viewer.window.add_plugin_dock_widget("napari-sff", "ROI statistics")
    widget.scope.value = "Current slice"
    settle(qtbot, widget, timeout=30_000)
    return viewer, widget, dock_widget


def test_reading_view_summary_fits_the_dock_legend_off_the_data_and_report_export(predicted, qtbot, tmp_path,
                                                                                  monkeypatch):
    from pdf_reader import pdf_pages, pdf_texts

    from napari_sff import report

    viewer, widget, dock_widget = predicted
    truth, labels = viewer.layers["synthetic_thigh_sff"], viewer.layers["synthetic_thigh_labels"]
    unet = viewer.layers["SFF U-Net [synthetic_thigh_t2w]"]
    assert {layer.name for layer in widget.values.value} == {truth.name, unet.name, "SFF DDPM [synthetic_thigh_t2w]"}
    viewer.window._qt_window.resizeDocks([dock_widget], [380], Qt.Orientation.Horizontal)
    qtbot.waitUntil(lambda: 350 <= dock_widget.width() <= 420, timeout=5_000)
    QApplication.processEvents()
    settle(qtbot, widget)  # the plots drawn again at the dock's new width

    # One row per ROI, a column per map (short names), Δ in pp for each prediction: no sideways scrolling.
    summary = widget.summary
    assert widget.tabs.currentWidget() is summary and widget.tabs.indexOf(widget.table) == 1  # all columns: a tab
    lines = [line.split("\t") for line in widget.summary_text().splitlines()]
    assert lines[0] == ["ROI", "mL", "GT %", "U-Net %", "DDPM %", "Δ U-Net pp", "Δ DDPM pp"]
    assert [line[0] for line in lines[1:]] == ["quadriceps", "hamstrings", "adductors", "sartorius/gracilis"]
    assert summary.horizontalScrollBar().maximum() == 0
    header = summary.horizontalHeader()
    assert sum(header.sectionSize(c) for c in range(summary.columnCount())) <= summary.viewport().width()
    metrics = summary.fontMetrics()
    for c in range(1, summary.columnCount()):  # numbers are never cut: each column is as wide as its widest cell
        widest = max(metrics.horizontalAdvance(summary.item(r, c).text()) for r in range(summary.rowCount()))
        assert header.sectionSize(c) >= widest
    assert header.sectionSize(0) >= metrics.horizontalAdvance("hamstrings")

    # The numbers, by hand: means over the ROI's voxels on the current slice, Δ = U-Net mean - GT mean.
    index = viewer.dims.current_step[0]
    quadriceps = labels.data[index] == 1
    gt = float(truth.data[index][quadriceps].astype(np.float64).mean()) / 100  # fractions (layers: percent)
    prediction = float(unet.data[index][quadriceps].astype(np.float64).mean()) / 100
    assert by_key(widget.rows)[(1, truth.name)].mean == pytest.approx(gt, rel=1e-6)
    assert lines[1][1] == f"{quadriceps.sum() * np.prod(truth.scale) / 1000:.2f}"
    assert lines[1][2] == f"{100 * gt:.1f}" and lines[1][3] == f"{100 * prediction:.1f}"
    assert float(lines[1][5]) == pytest.approx(100 * (prediction - gt), abs=0.051)

    # Selecting a summary row highlights that ROI.
    row = [line[0] for line in lines[1:]].index("adductors")
    summary.selectRow(row)
    assert labels.selected_label == summary.item(row, 0).data(Qt.ItemDataRole.UserRole) == 3

    # The scatter legend sits above the axes, clear of every data point.
    scatter, _ = widget.figure.axes
    widget.canvas.draw()
    renderer = widget.canvas.get_renderer()
    legend = scatter.get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["U-Net", "DDPM"]
    box = legend.get_window_extent(renderer)
    assert box.y0 >= scatter.get_window_extent(renderer).y1 - 1
    points = np.vstack([c.get_offset_transform().transform(c.get_offsets()) for c in scatter.collections])
    assert len(points) == 8 and not any(box.contains(x, y) for x, y in points)

    # Export report: one PDF with the slice, the summary as shown, provenance, and no patient data.
    overlay = widget.overlay_layer()
    assert overlay.name in {"SFF U-Net [synthetic_thigh_t2w]", "SFF DDPM [synthetic_thigh_t2w]"} and overlay.visible
    passed = {}
    write_report = report.write_report
    monkeypatch.setattr(report, "write_report", lambda *a, **k: passed.update(k) or write_report(*a, **k))
    assert widget.export_report(tmp_path / "report.pdf") == [tmp_path / "report.pdf"]
    assert tuple(overlay.contrast_limits) == (0.0, 100.0)
    assert passed["contrast_limits"] == (0.0, 1.0)  # the report gets fractions, like the rows
    assert pdf_pages(tmp_path / "report.pdf") == 2  # slice, colour bar and table; then the plots
    texts = pdf_texts(tmp_path / "report.pdf")
    everything = "\n".join(texts)
    for line in widget.summary_text().splitlines()[1:]:  # the table as the widget shows it
        for cell in line.split("\t"):
            assert cell in texts
    for needle in ("model unet", "model ddpm", "weights unet.safetensors", "device cpu", "napari-sff 0.1.0",
                   f"SFF overlay: {overlay.name}", "SFF [%]", "100"):
        assert needle in everything
    assert "Research tool, not for diagnosis." in texts
    assert re.search(r"Report created \d{4}-\d\d-\d\d \d\d:\d\d", everything)
    raw = (tmp_path / "report.pdf").read_bytes()
    for value in PATIENT.values():
        assert value not in everything and value.encode() not in raw
    assert [p.name for p in tmp_path.iterdir()] == ["report.pdf"]  # written atomically: no temporary file left

    # PNG + the full table as CSV, next to each other.
    written = widget.export_report(tmp_path / "report.png")
    assert written == [tmp_path / "report.png", tmp_path / "report.csv"]
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "report.csv", newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    assert table[0] == stats.table_header() and len(table) == 1 + len(widget.rows) == 1 + 4 * 3


def test_is_predicted_sff_picks_the_prediction_not_its_derived_or_measured_maps():
    from napari.layers import Image, Labels

    from napari_sff.widgets._layers import is_predicted_sff

    data = np.zeros((4, 4), np.float32)

    def image(name, **info):
        return Image(data, name=name, metadata={"napari_sff": info} if info else {})

    assert is_predicted_sff(image("SFF U-Net [t2w]", model="unet", source_layer="t2w", kind="sff"))
    for kind in ("std", "error", "difference", "anatomy"):
        assert not is_predicted_sff(image("x", model="unet", source_layer="t2w", kind=kind))
    assert not is_predicted_sff(image("t2w"))  # not ours
    assert not is_predicted_sff(image("SFF Dixon", kind="dixon_sff"))  # measured, no model
    assert not is_predicted_sff(Labels(np.zeros((4, 4), np.int32), metadata={"napari_sff": {"model": "unet"}}))
    # A layer from before kinds were recorded: the name tells the map from its SD.
    assert is_predicted_sff(image("SFF U-Net [t2w]", model="unet", source_layer="t2w"))
    assert not is_predicted_sff(image("SFF SD U-Net [t2w]", model="unet", source_layer="t2w"))
