"""Predict SFF from the selected T2w layer with the U-Net, the DDPM or both, in a napari thread worker.

The widget only gathers settings, starts :func:`napari_sff.inference.predict_volume` in a worker, and turns its
:class:`~napari_sff.inference.Prediction` into layers placed exactly like the source. Everything it computes,
the CLI computes too.

The GUI thread never computes on a volume (issue #11: no stall over 100 ms on 512 x 512 x 100): percent
conversion, |error|, differences and slice merging run in the worker, which then hands the finished layers to
napari one step per event-loop turn; the heavy imports of the first Run happen in the background at docking.

Parts: :mod:`.widget` (controls, layout, signals: :class:`PredictWidget`), :mod:`.request` (the controls read
into a :class:`RunRequest`), :mod:`.runs` (a run's life on the GUI thread, live mode), :mod:`.worker` (what the
worker computes; no Qt), :mod:`.layers` (output layers: look, placement, styling), :mod:`.comparison` (the
comparison grid), :mod:`.readout` (warnings, device badge, cursor readout), :mod:`.export` (Save as DICOM),
:mod:`.preload` (the first Run's imports at docking). The manifest names ``napari_sff.widgets.predict:PredictWidget``.
"""

from __future__ import annotations

from napari_sff.widgets._layers import SCOPES, is_predicted_sff, output_name
from napari_sff.widgets.predict.comparison import ANATOMY_SUFFIX, COMPARISON_CELLS, GRID_SPACING
from napari_sff.widgets.predict.layers import (
    DIFFERENCE_COLORMAP,
    DIFFERENCE_LIMITS,
    ERROR_COLORMAP,
    ERROR_LIMITS,
    MIN_STD_LIMIT,
)
from napari_sff.widgets.predict.preload import DDPM_PRELOADED, PRELOAD_MODULES, PRELOADED, start_preload
from napari_sff.widgets.predict.readout import READOUT
from napari_sff.widgets.predict.request import MODEL_CHOICES
from napari_sff.widgets.predict.widget import PredictWidget
from napari_sff.widgets.predict.worker import LayerOutput, RunRequest

__all__ = ["ANATOMY_SUFFIX", "COMPARISON_CELLS", "DDPM_PRELOADED", "DIFFERENCE_COLORMAP", "DIFFERENCE_LIMITS",
           "ERROR_COLORMAP", "ERROR_LIMITS", "GRID_SPACING", "MIN_STD_LIMIT", "MODEL_CHOICES", "PRELOADED",
           "PRELOAD_MODULES", "READOUT", "SCOPES", "LayerOutput", "PredictWidget", "RunRequest",
           "is_predicted_sff", "output_name", "start_preload"]
