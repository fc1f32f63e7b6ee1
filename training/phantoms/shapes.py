"""Signed distances (mm, negative inside) of the shapes the phantoms are built from: superellipses, polygons,
annuli, and their unions / intersections. Pure numpy on a grid of points; no randomness here."""

from __future__ import annotations

import numpy as np

#: Distance given to points a windowed shape does not reach (mm): far outside anything that matters.
FAR = 1.0e4


def superellipse(x: np.ndarray, y: np.ndarray, centre: tuple[float, float], axes: tuple[float, float],
                 exponent: float = 2.0, angle_deg: float = 0.0, reach: float | None = None) -> np.ndarray:
    """Approximate signed distance to ``|u/a|^n + |v/b|^n = 1`` (u, v rotated by ``angle_deg``).

    The distance is measured along the ray from the centre (exact for circles, close for gentle shapes), which
    is what a smooth union or a fat layer of given thickness needs. With ``reach`` (mm) and a grid from
    ``np.meshgrid(ys, xs, indexing="ij")`` only the box within ``reach`` of the shape is computed; elsewhere the
    value is :data:`FAR` (fast for the many small parts of a slice).
    """
    if reach is not None and x.ndim == 2:
        extent = max(axes) + reach
        cols = np.searchsorted(x[0], [centre[0] - extent, centre[0] + extent])
        rows = np.searchsorted(y[:, 0], [centre[1] - extent, centre[1] + extent])
        out = np.full(x.shape, FAR, x.dtype)
        box = (slice(rows[0], rows[1]), slice(cols[0], cols[1]))
        if x[box].size:
            out[box] = superellipse(x[box], y[box], centre, axes, exponent, angle_deg)
        return out
    theta = np.deg2rad(angle_deg)
    dx, dy = x - centre[0], y - centre[1]
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    level = (np.abs(u / axes[0]) ** exponent + np.abs(v / axes[1]) ** exponent) ** (1.0 / exponent)
    radius = np.hypot(u, v)
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = radius * (1.0 - 1.0 / level)
    return np.where(level > 1e-9, distance, -min(axes)).astype(x.dtype, copy=False)


def polygon(x: np.ndarray, y: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Exact signed distance to a closed polygon (vertices (V, 2) in mm, either winding)."""
    vertices = np.asarray(vertices, float)
    points = np.stack([x, y], axis=-1)
    best = np.full(x.shape, np.inf)
    inside = np.zeros(x.shape, bool)
    for start, end in zip(vertices, np.roll(vertices, -1, axis=0), strict=True):
        edge = end - start
        rel = points - start
        t = np.clip((rel @ edge) / max(float(edge @ edge), 1e-12), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(rel - t[..., None] * edge, axis=-1))
        crosses = (start[1] > y) != (end[1] > y)  # even-odd rule
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = start[0] + (y - start[1]) * edge[0] / (end[1] - start[1])
        inside ^= crosses & (x < x_cross)
    return np.where(inside, -best, best)


def union(*distances: np.ndarray) -> np.ndarray:
    return np.minimum.reduce(distances)


def smooth_union(a: np.ndarray, b: np.ndarray, radius: float) -> np.ndarray:
    """Polynomial smooth minimum (Quilez): a union whose crease is rounded over ``radius`` mm."""
    h = np.clip(0.5 + 0.5 * (b - a) / radius, 0.0, 1.0)
    return b * (1 - h) + a * h - radius * h * (1 - h)


def intersect(*distances: np.ndarray) -> np.ndarray:
    return np.maximum.reduce(distances)


def subtract(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a`` without ``b``."""
    return np.maximum(a, -b)


def shell(distance: np.ndarray, thickness: float) -> np.ndarray:
    """The band ``thickness`` mm thick just inside the boundary of ``distance``."""
    return intersect(distance, -(distance + thickness))


def half_plane(x: np.ndarray, y: np.ndarray, point: tuple[float, float], normal_deg: float) -> np.ndarray:
    """Signed distance to the line through ``point``: negative (inside) on the side the normal points to."""
    theta = np.deg2rad(normal_deg)
    return -((x - point[0]) * np.cos(theta) + (y - point[1]) * np.sin(theta))
