"""The rim of each ROI: its voxels within a few voxels (in-plane) of another label or the background.

There a muscle's voxels mix its signal with the fat, fascia or bone beside it (partial volume), and a predicted
map blurs the boundary further: on the model card's phantoms a healthy muscle's mean read 3.9 pp too fatty over
the whole ROI and 2.4 pp without a one-voxel rim. Leaving the rim out (as when ROIs are drawn inside a muscle's
border, or an automatic segmentation is eroded before measuring) is :func:`roi_table`'s ``exclude_rim``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def thickest_axis(spacing: Sequence[float]) -> int:
    """The axis a rim is by default not measured along: the one with the largest spacing (a 2D acquisition's
    slice axis); the first of equals (0 for an isotropic grid, napari's slicing axis)."""
    spacing = np.asarray(spacing, dtype=np.float64)
    return int(np.argmax(spacing))


def in_plane_axes(ndim: int, slice_axis: int) -> tuple[int, ...]:
    """The axes a rim is measured along: both of a 2D image; the two of the last three axes that are not
    ``slice_axis`` otherwise (leading axes, e.g. time, never)."""
    if ndim < 2:
        raise ValueError(f"an ROI rim needs 2-D or higher labels, got {ndim}-D")
    if ndim == 2:
        return (0, 1)
    slice_axis %= ndim
    return tuple(axis for axis in range(ndim - 3, ndim) if axis != slice_axis)[-2:]


def roi_rim(labels: np.ndarray, width: int, slice_axis: int = 0) -> np.ndarray:
    """Boolean mask of the labelled voxels (label > 0) within ``width`` voxels, counted in 4-connected steps
    in-plane (:func:`in_plane_axes`), of a voxel with another label or none. The image's edge is no boundary
    (a field of view that cuts a muscle mixes nothing into it)."""
    labels = np.asarray(labels)
    width = int(width)
    if width < 0:
        raise ValueError(f"the rim width must be 0 or more voxels, got {width}")
    if width == 0:
        return np.zeros(labels.shape, dtype=bool)
    axes = in_plane_axes(labels.ndim, slice_axis)
    # Voxels with a 4-neighbour of another label (on both sides of every boundary) ...
    boundary = np.zeros(labels.shape, dtype=bool)
    for axis in axes:
        ahead = [slice(None)] * labels.ndim
        behind = [slice(None)] * labels.ndim
        ahead[axis], behind[axis] = slice(1, None), slice(None, -1)
        differs = labels[tuple(ahead)] != labels[tuple(behind)]
        boundary[tuple(ahead)] |= differs
        boundary[tuple(behind)] |= differs
    # ... and everything within width - 1 steps of one is within width steps of another label.
    if width > 1:
        from scipy import ndimage

        cross = np.zeros((3,) * labels.ndim, dtype=bool)
        centre = [1] * labels.ndim
        cross[tuple(centre)] = True
        for axis in axes:
            for offset in (0, 2):
                where = list(centre)
                where[axis] = offset
                cross[tuple(where)] = True
        boundary = ndimage.binary_dilation(boundary, structure=cross, iterations=width - 1)
    return boundary & (labels > 0)
