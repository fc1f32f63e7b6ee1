"""Where each slice of a derived series lies: geometry from :attr:`Volume.affine` (RAS -> DICOM LPS), in the
source acquisition's own plane and slice order, so that a sagittal or oblique T2w gets a sagittal or oblique map."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_sff.io.dicom.errors import DicomWriteError

#: RAS+ <-> DICOM patient LPS+.
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


# ---------------------------------------------------------------------------------------------- geometry
class SliceGeometry:
    """Display-order (S, P, L) array <-> slices in the source acquisition's plane, with LPS positions.

    The DICOM reader reorients a series losslessly, so each display axis is parallel to one of the source's
    row, column and slice directions. Writing in that plane (rows and columns pointing as in the source, slices
    in display order) makes slice ``k`` of the map cover exactly the source instance ``k`` (the reader lists
    instances in display slice order). Without a usable source orientation the map is written as axial slices
    along display axis 0.
    """

    def __init__(self, affine: np.ndarray, shape: tuple[int, int, int], template: Any = None):
        lps = RAS_TO_LPS @ affine[:3, :3]
        origin = RAS_TO_LPS @ affine[:3, 3]
        spacing = np.linalg.norm(lps, axis=0)
        if np.any(spacing <= 0) or abs(np.linalg.det(lps)) < 1e-9 * np.prod(spacing):
            raise DicomWriteError("the map's affine is singular (a zero-length axis); it cannot be placed in DICOM")
        units = lps / spacing
        order, flips = (0, 1, 2), (False, False, False)
        iop = _orientation(template) if template is not None else None
        if iop is not None:
            found = _source_axes(units, np.asarray(iop[:3]), np.asarray(iop[3:]))
            if found is not None:
                order, flips = found
        self.order, self.flips = order, flips
        columns = lps[:, list(order)].copy()
        for axis, flip in enumerate(flips):
            if flip:
                origin = origin + (shape[order[axis]] - 1) * columns[:, axis]
                columns[:, axis] = -columns[:, axis]
        self.shape = tuple(shape[a] for a in order)
        self.origin, self.columns = origin, columns
        self.spacing = np.linalg.norm(columns, axis=0)  # slice, row, column
        self.row_direction = columns[:, 2] / self.spacing[2]  # along a row: increasing column index
        self.column_direction = columns[:, 1] / self.spacing[1]
        normal = np.cross(self.row_direction, self.column_direction)
        self.slice_step = float(columns[:, 0] @ normal)  # signed spacing between slices along the normal
        self.normal = normal

    def reorder(self, array: np.ndarray) -> np.ndarray:
        """The display-order array as (slice, row, column) in the written plane."""
        out = np.transpose(array, self.order)
        for axis, flip in enumerate(self.flips):
            if flip:
                out = np.flip(out, axis)
        return np.ascontiguousarray(out)

    def position(self, k: int) -> np.ndarray:
        """ImagePositionPatient (LPS mm) of the first transmitted pixel of slice ``k``."""
        return self.origin + k * self.columns[:, 0]

    @property
    def orientation(self) -> list[float]:
        return [*self.row_direction.tolist(), *self.column_direction.tolist()]

    @property
    def pixel_spacing(self) -> list[float]:
        return [float(self.spacing[1]), float(self.spacing[2])]  # [between rows, between columns]

    def source_slice_order(self, template: Any) -> int | None:
        """+1 if the template (first source instance) sits at slice 0, -1 if at the last slice, else None."""
        ipp = _floats(getattr(template, "ImagePositionPatient", None), 3) if template is not None else None
        if ipp is None:
            return None
        tolerance = 0.05 * float(min(self.spacing))
        if np.linalg.norm(np.asarray(ipp) - self.position(0)) < tolerance:
            return 1
        if np.linalg.norm(np.asarray(ipp) - self.position(self.shape[0] - 1)) < tolerance:
            return -1
        return None


def _orientation(template: Any) -> list[float] | None:
    """ImageOrientationPatient of a single-frame image, or of an enhanced one's (shared, else first) frame."""
    found = _floats(template.get("ImageOrientationPatient"), 6)
    for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        if found is not None:
            break
        try:
            found = _floats(template[group][0].PlaneOrientationSequence[0].ImageOrientationPatient, 6)
        except (KeyError, AttributeError, IndexError):
            continue
    return found


def _floats(value: Any, count: int) -> list[float] | None:
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return values if len(values) == count and np.all(np.isfinite(values)) else None


def _source_axes(units: np.ndarray, row: np.ndarray, column: np.ndarray) -> tuple[tuple, tuple] | None:
    """Display axes (slice, row, column) and flips that reproduce the source's row and column directions."""
    directions = {"row": row / np.linalg.norm(row), "column": column / np.linalg.norm(column)}
    picks = {}
    for key, direction in directions.items():
        dots = units.T @ direction
        axis = int(np.argmax(np.abs(dots)))
        if abs(dots[axis]) < 0.999:  # resampled, not reoriented: keep display order
            return None
        picks[key] = (axis, bool(dots[axis] < 0))
    if picks["row"][0] == picks["column"][0]:
        return None
    slice_axis = ({0, 1, 2} - {picks["row"][0], picks["column"][0]}).pop()
    return (slice_axis, picks["column"][0], picks["row"][0]), (False, picks["column"][1], picks["row"][1])
