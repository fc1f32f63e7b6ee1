"""Shapes drawn on slices (polygons, rectangles, ellipses, paths, lines) -> an integer label image."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

# --------------------------------------------------------------------------------------------
# Shapes -> labels
# --------------------------------------------------------------------------------------------


_SHAPE_TYPES = ("polygon", "rectangle", "ellipse", "path", "line")


def rasterize_shapes(
    shape_vertices: Sequence[np.ndarray],
    shape_types: Sequence[str],
    image_shape: Sequence[int],
    *,
    data_to_grid: Callable[[np.ndarray], np.ndarray] | None = None,
    include_paths: bool = True,
) -> np.ndarray:
    """Burn napari-Shapes-style ROIs into an int32 label image (shape i -> label i + 1).

    Each shape's vertices are an ``(n, ndim)`` array in the image's data coordinates (or in
    coordinates that ``data_to_grid`` maps there).  In more than 2-D a shape lies on one slice:
    the axes whose vertex coordinates are all equal are the non-displayed ones and give the
    slice index (rounded); shapes off the grid are clipped, shapes on a slice outside it skipped.

    * ``"polygon"`` / ``"rectangle"``: filled; a pixel is included when its centre (integer
      coordinate) lies inside the outline or on it (``skimage.draw.polygon``).
    * ``"ellipse"``: the 4 bounding-box corners napari stores, possibly rotated, are turned into
      a polygon of >= 64 points (about one per pixel of perimeter) and filled the same way.
    * ``"path"`` / ``"line"``: a 1-pixel-wide line through the rounded vertices, so the ROI
      still exists (a profile); skipped when ``include_paths=False``.  The label number is
      reserved either way, so label i + 1 always means shape i.

    Later shapes overwrite earlier ones where they overlap.
    """
    from skimage.draw import polygon

    grid_shape = tuple(int(s) for s in image_shape)
    if len(grid_shape) < 2:
        raise ValueError(f"image_shape must have at least 2 axes, got {grid_shape}")
    if len(shape_vertices) != len(shape_types):
        raise ValueError(f"got {len(shape_vertices)} shapes but {len(shape_types)} shape types")
    out = np.zeros(grid_shape, dtype=np.int32)
    for i, (verts, kind) in enumerate(zip(shape_vertices, shape_types, strict=True)):
        kind = str(kind).lower()
        if kind not in _SHAPE_TYPES:
            raise ValueError(f"shape {i}: unsupported shape type {kind!r}, expected one of {_SHAPE_TYPES}")
        pts = np.asarray(verts, dtype=np.float64)
        if data_to_grid is not None:
            pts = np.asarray(data_to_grid(pts), dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != len(grid_shape) or len(pts) == 0:
            raise ValueError(f"shape {i}: vertices must be (n, {len(grid_shape)}), got {pts.shape}")
        where = _shape_plane(pts, grid_shape, i)
        if where is None:
            continue
        index, axes = where
        plane = out[index]
        yx = pts[:, axes]
        if kind in ("polygon", "rectangle"):
            rr, cc = polygon(yx[:, 0], yx[:, 1], shape=plane.shape)
        elif kind == "ellipse":
            rr, cc = polygon(*_ellipse_outline(yx, i).T, shape=plane.shape)
        elif include_paths:  # "path" / "line"
            rr, cc = _polyline(yx, plane.shape)
        else:
            continue
        plane[rr, cc] = i + 1
    return out


def _shape_plane(
    pts: np.ndarray, grid_shape: tuple[int, ...], i: int
) -> tuple[tuple[int | slice, ...], list[int]] | None:
    """Index of the 2-D plane a shape lies on and its two displayed axes (None if off-grid)."""
    ndim = len(grid_shape)
    if ndim == 2:
        return (slice(None), slice(None)), [0, 1]
    spread = np.ptp(pts, axis=0)
    flat_axes = np.flatnonzero(spread <= 1e-3)  # tolerate float noise from data_to_grid
    if flat_axes.size < ndim - 2:
        raise ValueError(
            f"shape {i} is not on a single slice (its vertices vary along axes "
            f"{np.flatnonzero(spread > 1e-3).tolist()}); draw it with 2 axes displayed"
        )
    fixed = flat_axes[: ndim - 2].tolist()  # degenerate shapes: leading axes are the sliced ones
    index: list[int | slice] = [slice(None)] * ndim
    for ax in fixed:
        pos = math.floor(pts[0, ax] + 0.5)
        if not 0 <= pos < grid_shape[ax]:
            return None
        index[ax] = pos
    return tuple(index), [ax for ax in range(ndim) if ax not in fixed]


def _ellipse_outline(corners: np.ndarray, i: int) -> np.ndarray:
    """Polygon approximating the ellipse inscribed in 4 consecutive box corners (any rotation)."""
    if len(corners) != 4:
        raise ValueError(f"shape {i}: an ellipse needs its 4 bounding-box corners, got {len(corners)}")
    center = corners.mean(axis=0)
    half1 = (corners[1] - corners[0]) / 2.0
    half2 = (corners[2] - corners[1]) / 2.0
    radius = max(np.hypot(*half1), np.hypot(*half2))
    n = max(64, math.ceil(2.0 * math.pi * radius))
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)[:, None]
    return center + np.cos(t) * half1 + np.sin(t) * half2


def _polyline(yx: np.ndarray, plane_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of a 1-pixel-wide polyline through the rounded vertices, clipped to the plane."""
    from skimage.draw import line

    ends = np.floor(yx + 0.5).astype(np.intp)
    if len(ends) == 1:
        rr, cc = ends[:, 0], ends[:, 1]
    else:
        parts = [line(*p, *q) for p, q in zip(ends[:-1].tolist(), ends[1:].tolist(), strict=True)]
        rr = np.concatenate([p[0] for p in parts])
        cc = np.concatenate([p[1] for p in parts])
    keep = (rr >= 0) & (rr < plane_shape[0]) & (cc >= 0) & (cc < plane_shape[1])
    return rr[keep], cc[keep]
