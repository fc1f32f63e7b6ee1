"""The :class:`Volume` (array in display order + affine + source metadata) and the world convention.

Orientation convention (one rule, used everywhere in napari-sff: NIfTI and DICOM readers, writers, layers)
-----------------------------------------------------------------------------------------------------------
Arrays are held in *display order*: ``[t,] S, P, L`` — axis 0 runs inferior -> superior (the slice slider),
rows run anterior (top of the screen) -> posterior, columns run from the patient's right (left of the screen)
to the patient's left, i.e. the radiological view. Every reader reorients its file to this order with
nibabel's orientation tools (a lossless flip/transpose, no resampling); what is left of the file's affine is
an in-plane scale, a translation and, for oblique acquisitions, a small rotation.

napari's world axes are ``(S, P, L)`` in millimetres: world = W · RAS with W the fixed signed permutation
``S = z, P = -y, L = -x``. Each layer gets ``scale`` = voxel spacing, ``translate`` = position of voxel 0 and
``rotate`` = the residual rotation, so two files from the same scanner session overlay exactly. The original
affine, header and orientation transform travel in ``layer.metadata["nifti"]`` so the writer restores the file's
own voxel order, affine and header; layers without them (drawn or computed) get an affine from scale,
translate and rotate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DISPLAY_AXCODES = ("S", "P", "L")
#: RAS+ (NIfTI world) -> napari world (S, P, L).
RAS_TO_WORLD = np.array([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [-1.0, 0.0, 0.0]])


@dataclass
class Volume:
    """An image in display order with the geometry needed to place it in napari and to save it.

    ``affine`` maps display-order voxel indices of the last three axes to RAS+ millimetres (a valid NIfTI
    affine for ``array`` as it is). ``source`` holds what the writer needs to restore the original file layout.
    """

    array: np.ndarray
    affine: np.ndarray
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the three spatial display axes."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @classmethod
    def from_array(
        cls, array: np.ndarray, spacing: Sequence[float], origin: Sequence[float] = (0.0, 0.0, 0.0)
    ) -> Volume:
        """Wrap a display-order array with an axis-aligned affine (``origin`` in napari world mm)."""
        world_linear = np.diag(np.asarray(spacing, dtype=float))
        return cls(np.asarray(array), ras_affine(world_linear, np.asarray(origin, dtype=float)))

    def like(self, array: np.ndarray) -> Volume:
        """A derived volume (e.g. a prediction) on the same grid, saved with this volume's file geometry."""
        if array.shape != self.array.shape:
            raise ValueError(f"derived array has shape {array.shape}, expected {self.array.shape}")
        source = {k: v for k, v in self.source.items() if k != "path"}
        if self.source.get("path"):
            source["derived_from"] = self.source["path"]
        source.update(display_affine=self.affine.copy(), display_shape=array.shape)
        return Volume(array, self.affine.copy(), source)


def reorient_to_display(data: Any, affine: np.ndarray, file_ornt: np.ndarray) -> tuple[Any, np.ndarray]:
    """Losslessly flip/transpose the first three axes of ``data`` (file voxel order ``file_ornt``, a nibabel
    orientation) into display order (S, P, L); returns the array and its display-order affine.

    The one reorientation every reader uses (NIfTI, DICOM), so files of one visit overlay exactly. A numpy
    array goes through nibabel's ``apply_orientation``; a lazy (dask) array gets the same flips and transpose
    and stays lazy.
    """
    import nibabel as nib  # here: importing it costs 0.5 s (the plugin's widgets import this module)

    transform = nib.orientations.ornt_transform(file_ornt, nib.orientations.axcodes2ornt(DISPLAY_AXCODES))
    display_affine = affine @ nib.orientations.inv_ornt_aff(transform, data.shape[:3])
    if isinstance(data, np.ndarray):
        return nib.orientations.apply_orientation(data, transform), display_affine
    for axis, flip in enumerate(transform[:, 1]):
        if flip == -1:
            data = np.flip(data, axis=axis)
    order = list(range(data.ndim))
    order[:3] = np.argsort(transform[:, 0]).tolist()
    return data.transpose(order), display_affine


def is_lazy(array: Any) -> bool:
    """A dask-style array (the DICOM reader's large series): reading it all is work to do off the GUI thread."""
    return not isinstance(array, np.ndarray) and hasattr(array, "compute")


def ras_affine(world_linear: np.ndarray, world_origin: np.ndarray) -> np.ndarray:
    """NIfTI affine from a display-voxel -> napari-world linear map and origin."""
    affine = np.eye(4)
    affine[:3, :3] = RAS_TO_WORLD.T @ world_linear
    affine[:3, 3] = RAS_TO_WORLD.T @ world_origin
    return affine
