"""NIfTI-1/2 files <-> :class:`~napari_sff.io.volume.Volume`: lossless reorientation to display order on read,
the file's own voxel order, affine and header restored on write (atomically, never over the input).
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from napari_sff.io.atomic import atomic_write
from napari_sff.io.volume import DISPLAY_AXCODES, Volume

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
    data = data.astype(data.dtype.newbyteorder("="), copy=False)
    file_shape = data.shape
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim > 4:
        raise NiftiError(f"{path}: {data.ndim}D images are not supported; split it into 3D or 4D files first")
    while data.ndim < 3:
        data = data[..., np.newaxis]

    affine = image.affine
    file_ornt = _file_orientation(affine)
    transform = nib.orientations.ornt_transform(file_ornt, nib.orientations.axcodes2ornt(DISPLAY_AXCODES))
    display = nib.orientations.apply_orientation(data, transform)
    display_affine = affine @ nib.orientations.inv_ornt_aff(transform, data.shape[:3])
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


def _file_orientation(affine: np.ndarray) -> np.ndarray:
    """nibabel orientation of the file's voxel axes; a degenerate affine keeps the stored order."""
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
    with atomic_write(path) as tmp:
        nib.save(image, tmp)
