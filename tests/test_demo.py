"""`make demo` headless: the same build_demo path opens the sample and docks both widgets."""

from __future__ import annotations

from napari_sff.demo import DEMO_WIDGETS, build_demo
from napari_sff.widgets.predict import PredictWidget
from napari_sff.widgets.roi_stats import RoiStatsWidget


def test_demo_opens_sample_and_docks_widgets(make_napari_viewer):
    viewer = make_napari_viewer()
    predict, roi = build_demo(viewer, "thigh")
    assert DEMO_WIDGETS == ("Predict SFF", "ROI statistics")
    assert isinstance(predict, PredictWidget) and isinstance(roi, RoiStatsWidget)
    assert [layer.name for layer in viewer.layers] == ["synthetic_thigh_t2w", "synthetic_thigh_sff",
                                                       "synthetic_thigh_labels"]
    assert predict.image.value is viewer.layers["synthetic_thigh_t2w"]
    sff = viewer.layers["synthetic_thigh_sff"]  # the ground truth's colour bar reads percent
    assert sff.colorbar.visible and tuple(sff.contrast_limits) == (0.0, 100.0) and float(sff.data.max()) > 50
