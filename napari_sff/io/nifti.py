"""NIfTI-1/2 files <-> :class:`~napari_sff.io.volume.Volume`: lossless reorientation to display order on read,
the file's own voxel order, affine and header restored on write (atomically, never over the input).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_sff.io.atomic import atomic_write
from napari_sff.io.volume import DISPLAY_AXCODES, Volume, reorient_to_display

if TYPE_CHECKING:
    import nibabel as nib

NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: Set to 1 to let the napari writer replace the very file a layer was read from.
ALLOW_OVERWRITE_ENV = "NAPARI_SFF_ALLOW_OVERWRITE"


class NiftiError(ValueError):
    """A NIfTI file or layer that cannot be read or written; the message says what to do."""


def is_nifti_path(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: str | os.PathLike) -> str:
    """File name without .nii / .nii.gz."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_nifti(path: str | os.PathLike) -> Volume:
    """Read a NIfTI-1/2 file (any endianness, scaled or not, 2D to 4D) into a display-order :class:`Volume`."""
    import nibabel as nib

    path = Path(path)
    if not path.exists():
        raise NiftiError(f"{path}: no such file; check the path")
    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
    except Exception as exc:  # nibabel raises many types for damaged files
        raise NiftiError(f"{path}: not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise NiftiError(f"{path}: not a NIfTI image (nibabel read it as {type(image).__name__})")
    data = _scalar_voxels(data, path)
    file_shape = data.shape
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim > 4:
        raise NiftiError(f"{path}: {data.ndim}D images are not supported; split it into 3D or 4D files first")
    while data.ndim < 3:
        data = data[..., np.newaxis]

    affine = _usable_affine(image.affine, path)
    file_ornt = _file_orientation(affine)
    display, display_affine = reorient_to_display(data, affine, file_ornt)
    if display.ndim == 4:
        display = np.moveaxis(display, 3, 0)
    source = {
        "path": str(path.resolve()),
        "header": image.header.copy(),
        "affine": affine.copy(),
        "file_orientation": file_ornt,
        "display_affine": display_affine.copy(),
        "file_shape": file_shape,
        "display_shape": display.shape,
        "nifti_version": 2 if isinstance(image, nib.Nifti2Image) else 1,
    }
    return Volume(np.ascontiguousarray(display), display_affine, source)


def _scalar_voxels(data: np.ndarray, path: Path) -> np.ndarray:
    """One real number per voxel, in native byte order; what converters write in the wild otherwise.

    RGB(A) voxels (NIfTI RGB24 / RGBA32, e.g. a colour rendering or screenshot) are refused: a colour-mapped
    picture has no intensity a grey conversion could recover. Complex voxels (a reconstruction's raw output) are
    read as their magnitude, which is what a scanner's magnitude T2w image is, with a warning that says so.
    """
    if data.dtype.names is not None:
        kind = "RGBA" if len(data.dtype.names) == 4 else "RGB" if len(data.dtype.names) == 3 else "multi-channel"
        raise NiftiError(f"{path} is an {kind} image; napari-sff needs a grayscale T2w image or SFF map: convert it "
                         "to one channel first")
    if np.iscomplexobj(data):
        warnings.warn(f"{path} has complex voxels; using their magnitude |z| (a scanner's magnitude image)",
                      UserWarning, stacklevel=3)
        return np.abs(data).astype(np.float64 if data.dtype.itemsize > 8 else np.float32)
    return data.astype(data.dtype.newbyteorder("="), copy=False)


def _usable_affine(affine: np.ndarray, path: Path) -> np.ndarray:
    """The file's affine, with a zero-length voxel axis (pixdim 0 under a qform, a zero sform column) set to 1 mm.

    The missing axis is made perpendicular to the others (right-handed), and a warning says so. Non-finite
    entries or voxel axes that are parallel cannot be guessed and are a one-line error.
    """
    affine = np.asarray(affine, dtype=float)
    if not np.isfinite(affine).all():
        raise NiftiError(f"{path}: the affine (sform/qform) has non-finite entries; fix the header first")
    columns = affine[:3, :3]
    zero = [axis for axis in range(3) if np.linalg.norm(columns[:, axis]) < 1e-9]
    if not zero:
        if abs(np.linalg.det(columns)) < 1e-9 * np.prod(np.linalg.norm(columns, axis=0)):
            raise NiftiError(f"{path}: the affine (sform/qform) is singular, two voxel axes point the same way; fix "
                             "the header first")
        return affine
    kept = [axis for axis in range(3) if axis not in zero]
    if len(kept) == 2 and abs(np.linalg.det(np.c_[columns[:, kept], np.cross(*columns[:, kept].T)])) < 1e-9:
        raise NiftiError(f"{path}: the affine (sform/qform) is singular, two voxel axes point the same way; fix "
                         "the header first")
    fixed = affine.copy()
    if len(kept) == 2:  # the usual case: a slice axis of zero thickness
        (axis,) = zero
        first, second = columns[:, (axis + 1) % 3], columns[:, (axis + 2) % 3]
        normal = np.cross(first, second)
        fixed[:3, axis] = normal / np.linalg.norm(normal)
    else:  # one or no axis left: take world axes for the rest, in order, orthogonal to what there is
        basis = [columns[:, axis] / np.linalg.norm(columns[:, axis]) for axis in kept]
        for axis in zero:
            for candidate in np.eye(3):
                residue = candidate - sum(np.dot(candidate, b) * b for b in basis)
                if np.linalg.norm(residue) > 0.5:
                    break
            basis.append(residue / np.linalg.norm(residue))
            fixed[:3, axis] = basis[-1]
    names = f"voxel axis {zero[0]} has" if len(zero) == 1 else (
        f"voxel axes {', '.join(map(str, zero[:-1]))} and {zero[-1]} have")
    warnings.warn(f"{path}: {names} zero length in the affine (pixdim 0); assuming 1 mm, perpendicular to the "
                  "other axes", UserWarning, stacklevel=3)
    return fixed


def _file_orientation(affine: np.ndarray) -> np.ndarray:
    """nibabel orientation of the file's voxel axes; a degenerate affine keeps the stored order."""
    import nibabel as nib

    identity = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)
    try:
        file_ornt = nib.orientations.io_orientation(affine)
    except Exception:
        return identity
    return identity if np.isnan(file_ornt).any() else file_ornt


def write_nifti(
    volume: Volume, path: str | os.PathLike, *, overwrite: bool = False, overwrite_input: bool = False
) -> Path:
    """Write ``volume`` atomically; restore the source file's voxel order, affine and header when known.

    Refuses to replace an existing file unless ``overwrite``, and the file the volume (or the image it was
    derived from) was read from unless ``overwrite_input`` too.
    """
    path = Path(path)
    if not is_nifti_path(path):
        raise NiftiError(f"{path}: output must end in .nii or .nii.gz")
    if path.exists() and not overwrite:
        raise NiftiError(f"{path} exists; choose another name or pass overwrite=True")
    inputs = {volume.source.get("path"), volume.source.get("derived_from")} - {None}
    if path.resolve() in {Path(p) for p in inputs} and not overwrite_input:
        raise NiftiError(
            f"{path} is the input this image came from; save under another name (or set {ALLOW_OVERWRITE_ENV}=1)"
        )
    image = _to_nifti_image(volume)
    _atomic_save(image, path)
    return path


def _to_nifti_image(volume: Volume) -> nib.Nifti1Image:
    import nibabel as nib

    data = _storable(np.asarray(volume.array))
    source = volume.source
    restore = "file_orientation" in source and tuple(source.get("display_shape", ())) == data.shape
    if data.ndim == 4:
        data = np.moveaxis(data, 0, 3)
    if not restore:
        return nib.Nifti1Image(data, volume.affine)
    inverse = nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt(DISPLAY_AXCODES), source["file_orientation"]
    )
    data = nib.orientations.apply_orientation(data, inverse)
    file_shape = tuple(source["file_shape"])
    if int(np.prod(file_shape)) == data.size:
        data = data.reshape(file_shape)
    header = source["header"].copy()
    header.set_data_dtype(data.dtype)
    image_class = nib.Nifti2Image if source.get("nifti_version") == 2 else nib.Nifti1Image
    image = image_class(data, source["affine"], header=header)
    image.header.set_slope_inter(1.0, 0.0)  # values are stored as they are, never rescaled
    return image


def _storable(data: np.ndarray) -> np.ndarray:
    """NIfTI has no bool and nibabel refuses int64 without being told: pick the smallest fitting type."""
    if data.dtype == bool:
        return data.astype(np.uint8)
    if data.dtype in (np.int64, np.uint64):
        lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
        for candidate in (np.uint8, np.int16, np.uint16, np.int32):
            info = np.iinfo(candidate)
            if info.min <= lo and hi <= info.max:
                return data.astype(candidate)
        return data.astype(np.float64)
    if data.dtype == np.float16:
        return data.astype(np.float32)
    return data


def _atomic_save(image: nib.Nifti1Image, path: Path) -> None:
    """nibabel writes to a temporary file beside ``path`` that is then renamed: a crash never leaves half a file."""
    import nibabel as nib

    with atomic_write(path) as tmp:
        nib.save(image, tmp)
