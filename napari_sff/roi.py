"""Grids and ROI statistics without Qt: plan how one voxel grid maps onto another by world coordinates,
resample onto it, and compute the ROI table -- shared by the ROI widget, the Predict widget and scripts.

Geometry is plain: a grid is a voxel ``shape`` plus a homogeneous data -> world matrix (napari world, mm).
:func:`volume_to_world` gives it for an :class:`napari_sff.io.Volume`, :func:`layer_to_world` for a napari
layer (the thin helpers that take layers -- :func:`grid_plan`, :func:`data_to_data`, :func:`world_box` --
only read ``data_to_world``/``world_to_data``/``data.shape``/``ndim``/``name``; napari is never imported here).

A grid "covers the same region" as another when the outer edges of their voxel boxes agree within half of the
coarser voxel: a Dixon series with another matrix over the same field of view does; a shifted or cropped
series does not, and is refused rather than compared with misplaced voxels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from napari_sff import stats

Plan = Literal["same", "resample", "incompatible"]


# ------------------------------------------------------------------------------------------- plain geometry
def affine_of(point_map: Callable[[np.ndarray], Any], ndim: int) -> np.ndarray:
    """Homogeneous matrix of an affine point map (e.g. ``layer.data_to_world``), read off the origin and axes.

    Lets whole vertex arrays and resampling use napari's public per-point transforms.
    """
    matrix = np.eye(ndim + 1)
    origin = np.asarray(point_map(np.zeros(ndim)), dtype=float)
    matrix[:ndim, ndim] = origin
    for axis in range(ndim):
        matrix[:ndim, axis] = np.asarray(point_map(np.eye(ndim)[axis]), dtype=float) - origin
    return matrix


def volume_to_world(volume: Any) -> np.ndarray:
    """4 x 4 display-voxel -> napari-world (S, P, L mm) matrix of an :class:`io.Volume` (its spatial axes).

    The same placement :func:`napari_sff.io.layer_placement` gives the volume's layer, so the CLI and the
    widgets plan grids identically.
    """
    from napari_sff.io.volume import RAS_TO_WORLD

    matrix = np.eye(4)
    matrix[:3, :3] = RAS_TO_WORLD @ np.asarray(volume.affine, float)[:3, :3]
    matrix[:3, 3] = RAS_TO_WORLD @ np.asarray(volume.affine, float)[:3, 3]
    return matrix


def box_of(to_world: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """(2, ndim) world bounding box of a grid's voxels, outer edges included (voxel centres are integers)."""
    shape = np.asarray(shape, dtype=float)
    corners = np.array(np.meshgrid(*[(-0.5, s - 0.5) for s in shape], indexing="ij")).reshape(len(shape), -1)
    world = np.asarray(to_world, float) @ np.vstack([corners, np.ones(corners.shape[1])])
    return np.stack([world[:-1].min(axis=1), world[:-1].max(axis=1)])


def _format_box(box: np.ndarray) -> str:
    return " x ".join(f"{lo:.1f}..{hi:.1f}" for lo, hi in box.T)


def plan(source_to_world: np.ndarray, source_shape: Sequence[int], grid_to_world: np.ndarray,
         grid_shape: Sequence[int], source_name: str = "source", grid_name: str = "grid",
         ) -> tuple[Plan, np.ndarray | None, str]:
    """How to bring a source grid's voxels onto a target grid: ("same" | "resample" | "incompatible", the
    homogeneous grid-voxel -> source-voxel map for :func:`resample_to_grid` (None unless "resample"), reason).
    """
    source_to_world, grid_to_world = np.asarray(source_to_world, float), np.asarray(grid_to_world, float)
    n_source, n_grid = len(source_shape), len(grid_shape)
    if n_source != n_grid:
        return "incompatible", None, f"'{source_name}' is {n_source}-D but '{grid_name}' is {n_grid}-D"
    to_source = np.linalg.solve(source_to_world, grid_to_world)
    if tuple(source_shape) == tuple(grid_shape) and np.allclose(to_source, np.eye(n_grid + 1), atol=1e-6):
        return "same", None, ""
    voxel = [np.abs(m[:-1, :-1]).max(axis=1) for m in (source_to_world, grid_to_world)]
    tolerance = 0.5 * np.maximum(*voxel) + 1e-6
    box_source, box_grid = box_of(source_to_world, source_shape), box_of(grid_to_world, grid_shape)
    if np.all(np.abs(box_source - box_grid) <= tolerance):
        return "resample", to_source, ""
    return "incompatible", None, (f"'{source_name}' (world box {_format_box(box_source)} mm) does not cover the "
                                  f"same region as '{grid_name}' ({_format_box(box_grid)} mm); align or "
                                  "resample it first")


def resample_to_grid(array: np.ndarray, grid_to_array: np.ndarray, shape: Sequence[int], *,
                     labels: bool, outside: float | None = None) -> np.ndarray:
    """``array`` looked up at each grid voxel's world position: labels nearest neighbour (outside them: 0), maps
    linearly (float32; within half a voxel of their box the edge value repeats; beyond it ``outside`` when given,
    e.g. NaN to mark where a reference does not reach).

    Labels use "grid-constant", which treats voxels as boxes: a point within half a voxel of the edge still hits
    the edge voxel.
    """
    from scipy import ndimage

    n = len(shape)
    matrix, offset = grid_to_array[:n, :n], grid_to_array[:n, n]
    if labels:
        return ndimage.affine_transform(array, matrix, offset=offset, output_shape=tuple(shape), order=0,
                                        mode="grid-constant", cval=0, prefilter=False)
    values = ndimage.affine_transform(np.asarray(array, np.float32), matrix, offset=offset,
                                      output_shape=tuple(shape), order=1, mode="nearest")
    if outside is not None:
        inside = resample_to_grid(np.ones(np.shape(array), np.uint8), grid_to_array, shape, labels=True)
        values[inside == 0] = outside
    return values


class GridMismatchError(ValueError):
    """A map or ROI image does not cover the region of the grid it should be compared on."""


def onto_grid(array: np.ndarray, array_to_world: np.ndarray, grid_to_world: np.ndarray,
              grid_shape: Sequence[int], *, labels: bool = False, name: str = "source",
              grid_name: str = "grid") -> np.ndarray:
    """``array`` on the target grid: itself when the grids agree, resampled by world coordinates when it covers
    the same region on another grid; :class:`GridMismatchError` (one line, naming both) otherwise."""
    how, to_array, reason = plan(array_to_world, np.shape(array), grid_to_world, grid_shape, name, grid_name)
    if how == "incompatible":
        raise GridMismatchError(reason)
    if how == "same":
        return np.asarray(array)
    return resample_to_grid(np.asarray(array), to_array, grid_shape, labels=labels)


# ----------------------------------------------------------------------------- thin helpers on napari layers
def layer_to_world(layer: Any, ndim: int | None = None) -> np.ndarray:
    """Homogeneous data -> world matrix of a layer; with ``ndim``, of its trailing ``ndim`` (spatial) axes only."""
    matrix = affine_of(layer.data_to_world, layer.ndim)
    if ndim is None or ndim == layer.ndim:
        return matrix
    keep = list(range(layer.ndim - ndim, layer.ndim)) + [layer.ndim]
    return matrix[np.ix_(keep, keep)]


def data_to_data(source: Any, target: Any) -> np.ndarray:
    """Homogeneous map from ``source``'s data coordinates through world to ``target``'s data coordinates."""
    return affine_of(lambda p: target.world_to_data(source.data_to_world(p)), source.ndim)


def world_box(layer: Any) -> np.ndarray:
    """(2, ndim) world bounding box of the layer's voxels, outer edges included (voxel centres are integers)."""
    return box_of(layer_to_world(layer), layer.data.shape)


def grid_plan(roi_layer: Any, grid: Any) -> tuple[Plan, np.ndarray | None, str]:
    """How to bring ``roi_layer``'s voxels onto ``grid``'s: :func:`plan` on two layers."""
    if roi_layer.ndim != grid.ndim:
        return "incompatible", None, f"'{roi_layer.name}' is {roi_layer.ndim}-D but '{grid.name}' is {grid.ndim}-D"
    return plan(layer_to_world(roi_layer), roi_layer.data.shape, layer_to_world(grid), grid.data.shape,
                roi_layer.name, grid.name)


# ------------------------------------------------------------------------------------------ ROI statistics
def shape_label_base(max_label: int | None) -> int:
    """Offset of shape ids: the next power of ten above the labels (>= 10), so ids never collide and read well."""
    if max_label is None:
        return 0
    return 10 ** max(1, len(str(max(int(max_label), 0))))


@dataclass
class RoiRequest:
    """Arrays and settings of one computation, captured on the GUI thread so the worker touches no layer."""

    generation: int
    values: dict[str, np.ndarray]  # the first one is on the grid the statistics use
    spacing: tuple[float, ...]
    grid_to_values: dict[str, np.ndarray] = field(default_factory=dict)  # map on another grid: grid voxel -> its voxel
    reference: str | None = None
    labels: np.ndarray | None = None
    grid_to_labels: np.ndarray | None = None  # homogeneous map grid voxel -> labels voxel; None: same grid
    label_names: dict[int, str] = field(default_factory=dict)
    shapes: list[np.ndarray] = field(default_factory=list)  # vertices in grid voxel coordinates
    shape_types: list[str] = field(default_factory=list)
    slice_index: int | None = None
    slice_axis: int = 0
    exclude_rim: int = 0  # voxels of each ROI's border left out (stats.roi_rim)
    rim_axis: int | None = None  # measured in the plane across this axis (the viewed one); None: roi_table's rule


@dataclass
class RoiResult:
    generation: int
    rows: list[stats.RoiRow]
    shape_base: int | None = None  # ids above this are shapes (None: no shapes)
    reference: str | None = None
    exclude_rim: int = 0  # the rows' ROIs without this many voxels of their border


def compute(request: RoiRequest) -> RoiResult:
    """Align maps and ROIs with the grid, then :func:`stats.roi_table` for the labels and the shapes (no Qt: runs
    in the ROI widget's worker or a script, so scripts reproduce the widget's table)."""
    grid_shape = next(iter(request.values.values())).shape
    values = {name: resample_to_grid(np.asarray(array), request.grid_to_values[name], grid_shape, labels=False)
              if name in request.grid_to_values else np.asarray(array) for name, array in request.values.items()}
    common = {"values": values, "spacing": request.spacing, "reference": request.reference,
              "slice_index": request.slice_index, "slice_axis": request.slice_axis, "exclude_rim": request.exclude_rim,
              "rim_axis": request.rim_axis}
    rows: list[stats.RoiRow] = []
    max_label = None
    if request.labels is not None:
        labels = request.labels
        if request.grid_to_labels is not None:
            labels = resample_to_grid(labels, request.grid_to_labels, grid_shape, labels=True)
        rows += stats.roi_table(labels=labels, label_names=request.label_names, **common)
        max_label = int(request.labels.max()) if request.labels.size else 0
    shape_base = None
    if request.shapes:
        shape_base = shape_label_base(max_label)
        raster = stats.rasterize_shapes(request.shapes, request.shape_types, grid_shape).astype(np.int64)
        raster[raster > 0] += shape_base
        names = {shape_base + k: f"shape {k}" for k in range(1, len(request.shapes) + 1)}
        rows += stats.roi_table(labels=raster, label_names=names, **common)
    return RoiResult(request.generation, rows, shape_base, request.reference, request.exclude_rim)
