"""ROI fat-fraction statistics: Labels/Shapes ROIs x SFF maps -> the numbers a radiologist reports, with plots.

Every number comes from :func:`napari_sff.stats.roi_table` (through :func:`napari_sff.roi.compute`). The widget only
gathers arrays on the GUI thread, lines the ROIs up with the maps' voxel grid, and computes in a napari thread
worker after a short debounce, so painting a label never blocks the GUI.

Grids
    Statistics are computed on the voxel grid of the reference map (the first selected map without one), with
    that map's ``scale`` as voxel size in mm. A map or a Labels layer on another grid that covers the same world
    box (within half a voxel) -- a Dixon series with another matrix, say -- is resampled onto it by world
    coordinates (maps linearly, labels nearest neighbour); anything else is refused with a notification rather
    than giving numbers for misplaced ROIs.

ROI ids
    Labels keep their own ids. Shape k of the Shapes layer (1-based, in the layer's order) is called "shape k" and
    gets id ``base + k``, where ``base`` is the smallest power of ten above the largest label id (at least 10; 0
    without a Labels layer): labels 1-4 and two shapes give ids 1-4, 11, 12. Shapes are rasterised apart from
    the labels, so a shape drawn inside a muscle and the muscle both count their shared voxels.

Parts: :mod:`.widget` (controls, layer choices, debounced updates in a worker), :mod:`.request` (the layers ->
a :class:`~napari_sff.roi.RoiRequest` on the GUI thread), :mod:`.table` (table, summary, highlighting an ROI),
:mod:`.export` (CSV and the reading report), :mod:`.plots` (agreement plots).
"""

from __future__ import annotations

from napari_sff.roi import (  # noqa: F401  (plain geometry and computation, shared; importable from here too)
    RoiRequest,
    RoiResult,
    affine_of,
    compute,
    data_to_data,
    grid_plan,
    resample_to_grid,
    shape_label_base,
    world_box,
)
from napari_sff.widgets.roi_stats.request import label_names
from napari_sff.widgets.roi_stats.table import COLUMN_KEYS
from napari_sff.widgets.roi_stats.widget import DEBOUNCE_MS, WATCHED_EVENTS, RoiStatsWidget

__all__ = ["COLUMN_KEYS", "DEBOUNCE_MS", "WATCHED_EVENTS", "RoiStatsWidget", "label_names"]
